//! The Python tools the OpenAPI tests run: `openapi-spec-validator` and Schemathesis, at
//! the versions of `tests/openapi/requirements.txt`, installed into a virtualenv under the
//! target directory the first time they are needed. Only `python3` with its `venv` module
//! must be there (`apt-get install python3 python3-venv`); a missing tool fails the test.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The pinned tools, one requirement a line.
const REQUIREMENTS: &str = include_str!("../../openapi/requirements.txt");

/// The virtualenv's Python, with the tools installed; installs them on first use.
pub(crate) fn python() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(install).join("bin/python")
}

/// The virtualenv of [`REQUIREMENTS`]: named by their hash, so that a change of version
/// installs anew. It is built under a name of its own and renamed when complete, so that
/// test processes running side by side (nextest) never use a half-installed one. The
/// tools are run as `python -m`, which a renamed virtualenv still runs (its scripts'
/// shebangs would name the old path).
fn install() -> PathBuf {
    let mut hasher = DefaultHasher::new();
    REQUIREMENTS.hash(&mut hasher);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join(format!("openapi-venv-{:016x}", hasher.finish()));
    if venv.join("bin/python").exists() {
        return venv;
    }
    let building = root.join(format!("openapi-venv.{}.partial", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&building),
        "python3 with its venv module is needed: apt-get install python3 python3-venv",
    );
    let requirements = building.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).unwrap();
    run(
        Command::new(building.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("-r")
            .arg(&requirements),
        "pip could not install the OpenAPI test tools",
    );
    if let Err(e) = std::fs::rename(&building, &venv) {
        // Another test process finished first: use its virtualenv.
        let _ = std::fs::remove_dir_all(&building);
        assert!(
            venv.join("bin/python").exists(),
            "cannot rename the virtualenv: {e}"
        );
    }
    venv
}

/// Runs `command` to its end; panics with `why` and its output when it fails.
fn run(command: &mut Command, why: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{why} ({e}): {command:?}"));
    assert!(
        output.status.success(),
        "{why}: {command:?} ended with {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

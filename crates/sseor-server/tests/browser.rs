//! The demo page in a real browser: runs the Node.js scenarios of `tests/browser/`, which
//! drive Debian's headless Chromium through playwright-core against this crate's `sseor`
//! binary, with real redis-server processes and real HTTP.
//!
//! Needs `/usr/bin/chromium` (`apt-get install chromium`), Node.js 20.10 or newer with npm,
//! redis-server and curl. The npm packages are installed with `npm ci` when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Chromium the scenarios drive.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The oldest Node.js whose test runner has `--test-concurrency`.
const OLDEST_NODE: (u32, u32) = (20, 10);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What `program --version` prints; fails with how to install it when it cannot run.
fn version_of(program: &str, install: &str) -> String {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        Ok(output) => panic!(
            "`{program} --version` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!("cannot run {program} ({e}): {install}"),
    }
}

/// `(major, minor)` of a `vMAJOR.MINOR.PATCH` version.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.strip_prefix('v')?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Whether `node_modules` holds the playwright-core that `package.json` pins.
fn packages_installed(dir: &Path) -> bool {
    let pinned = read_json(&dir.join("package.json")).expect("tests/browser/package.json is JSON")
        ["devDependencies"]["playwright-core"]
        .clone();
    let installed = read_json(&dir.join("node_modules/playwright-core/package.json"))
        .map(|p| p["version"].clone());
    installed.is_some_and(|version| version == pinned)
}

#[test]
fn demo_page_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Chromium: apt-get install chromium"
    );
    let node = version_of(
        "node",
        "install Node.js (20.10 or newer) and npm: apt-get install nodejs npm",
    );
    assert!(
        major_minor(&node).is_some_and(|version| version >= OLDEST_NODE),
        "Node.js {node} is too old: the browser tests need Node.js {}.{} or newer",
        OLDEST_NODE.0,
        OLDEST_NODE.1
    );
    version_of("npm", "install npm: apt-get install npm");

    let dir = browser_dir();
    if !packages_installed(&dir) {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("cannot run npm");
        assert!(
            status.success(),
            "`npm ci` in {} failed: {status}",
            dir.display()
        );
    }

    // Node's output goes straight to the terminal, scenario by scenario.
    let status = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("SSEOR_BIN", env!("CARGO_BIN_EXE_sseor"))
        .status()
        .expect("cannot run npm");
    assert!(
        status.success(),
        "the browser tests failed ({status}); what they printed is above"
    );
}

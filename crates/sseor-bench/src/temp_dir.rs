//! Directories the bench writes servers' configurations, keys and logs into.

use std::path::{Path, PathBuf};

/// A directory of its own under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A new directory, named for the process, `what` and a counter.
    pub(crate) fn new(what: &str) -> Result<Self, String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sseor-bench-{}-{what}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self(path))
    }

    /// The directory itself.
    pub(crate) fn root(&self) -> &Path {
        &self.0
    }

    /// The path of `name` in this directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `template` (from the peers' folder) into this directory as `name`, with each
    /// `@KEY@` replaced.
    pub(crate) fn write(
        &self,
        template: &Path,
        name: &str,
        values: &[(&str, &str)],
    ) -> Result<(), String> {
        let mut text = std::fs::read_to_string(template)
            .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
        for (key, value) in values {
            text = text.replace(&format!("@{key}@"), value);
        }
        std::fs::write(self.0.join(name), text).map_err(|e| format!("{name}: {e}"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Kept to read the servers' logs with SSEOR_BENCH_KEEP_DIRS=1.
        if std::env::var_os("SSEOR_BENCH_KEEP_DIRS").is_some() {
            eprintln!("sseor-bench: kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! Private temporary directories, removed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// Where test servers keep their files; the system's temporary directory
/// when unset. Keep it short: a Unix socket path must fit in 107 bytes.
pub const BOTFLEET_TEST_TMPDIR: &str = "BOTFLEET_TEST_TMPDIR";

/// A private directory (mode 0700) that is deleted, with its content, when
/// dropped: for a test's files, such as an SQLite database.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `botfleet-<kind>-<pid>-<n>` with mode 0700.
    pub fn new(kind: &str) -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base =
            std::env::var_os(BOTFLEET_TEST_TMPDIR).map_or_else(std::env::temp_dir, PathBuf::from);
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("botfleet-{kind}-{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let dir = TempDir { path };
                    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700))
                        .map_err(|e| Error::io(format!("chmod {}", dir.path.display()), &e))?;
                    return Ok(dir);
                }
                // Left behind by an earlier process with the same pid.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::io(
                        format!(
                            "cannot create a directory in {} (set {BOTFLEET_TEST_TMPDIR} to another place)",
                            base.display()
                        ),
                        &e,
                    ));
                }
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

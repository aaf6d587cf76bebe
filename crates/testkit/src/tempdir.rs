//! Private temporary directories, removed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where test servers keep their files; the system's temporary directory
/// when unset. Keep it short: a Unix socket path must fit in 107 bytes.
pub const BOTFLEET_TEST_TMPDIR: &str = "BOTFLEET_TEST_TMPDIR";

/// A private directory (mode 0700) that is deleted, with its content, when
/// dropped: for a test's files, such as an SQLite database. The directory
/// itself comes from the `tempfile` crate; this type adds the one place
/// tests and benchmarks put it (`BOTFLEET_TEST_TMPDIR`) and the testkit's
/// error.
#[derive(Debug)]
pub struct TempDir {
    dir: tempfile::TempDir,
}

impl TempDir {
    /// Creates `botfleet-<kind>-<random>`, mode 0700.
    pub fn new(kind: &str) -> Result<TempDir> {
        let base =
            std::env::var_os(BOTFLEET_TEST_TMPDIR).map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix(&format!("botfleet-{kind}-"))
            .tempdir_in(&base)
            .map_err(|e| {
                Error::io(
                    format!(
                        "cannot create a directory in {} (set {BOTFLEET_TEST_TMPDIR} to another place)",
                        base.display()
                    ),
                    &e,
                )
            })?;
        // tempfile makes it 0700 already; say so where it matters.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("chmod {}", dir.path().display()), &e))?;
        Ok(TempDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

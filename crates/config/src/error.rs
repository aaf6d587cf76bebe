//! Errors of loading a `fleet.toml`.

use std::fmt;
use std::path::PathBuf;

use crate::source::Position;

/// One problem found in a configuration file, with where it is.
///
/// Displays as `FILE:LINE:COL: message`, the format of compilers, so editors
/// and terminals can jump to it. The message never contains a secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given by the caller (for example `fleet.toml`).
    pub file: String,
    /// Where the offending key or value starts.
    pub position: Position,
    /// The dotted path of the key, for example `bot[1].min_workers`; empty
    /// for problems of the file as a whole.
    pub key: String,
    /// What is wrong, and where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Position { line, column } = self.position;
        write!(f, "{}:{line}:{column}: ", self.file)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid fleet configuration. Every problem
    /// found is listed, in file order.
    #[error("{}", Invalid(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The problems found in the file, in file order (empty for read errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(diagnostics) => diagnostics,
            ConfigError::Read { .. } => &[],
        }
    }
}

struct Invalid<'a>(&'a [Diagnostic]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

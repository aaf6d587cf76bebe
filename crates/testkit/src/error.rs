//! Errors of the test servers. They are `Clone` so a failure to start the
//! shared server can be handed to every test that asks for it.

/// What went wrong with a test server.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program the testkit needs is not installed.
    #[error("{what} not found ({searched}): {install}")]
    MissingBinary {
        /// The program(s) looked for.
        what: String,
        /// Where they were looked for.
        searched: String,
        /// What to install.
        install: String,
    },
    /// A server did not start or come back; `detail` ends with its log.
    #[error("{server} did not start: {detail}")]
    Start {
        /// Which server.
        server: String,
        /// Why, with the tail of its log.
        detail: String,
    },
    /// A query or command against a server failed.
    #[error("{server}: {detail}")]
    Query {
        /// Which server (its URL, password redacted).
        server: String,
        /// The error the server or client reported.
        detail: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {detail}")]
    Io {
        /// What was being done.
        context: String,
        /// What the operating system said.
        detail: String,
    },
    /// The operation needs a server this process controls (faults cannot be
    /// injected into a server given by URL).
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, error: &std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            detail: error.to_string(),
        }
    }
}

/// The testkit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

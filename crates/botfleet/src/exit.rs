//! Exit codes, from BSD's `sysexits.h` where one fits.

use std::process::ExitCode;

use botfleet_config::ConfigError;

/// Success.
pub(crate) const OK: u8 = 0;
/// An error with no more specific code.
pub(crate) const FAILURE: u8 = 1;
/// `EX_USAGE`: bad command line or bad configuration.
pub(crate) const USAGE: u8 = 64;
/// `EX_NOINPUT`: an input file does not exist or cannot be read.
pub(crate) const NO_INPUT: u8 = 66;

/// The exit code for an error that reached `main`.
pub(crate) fn code_for(error: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(error) {
        // The reader went away (`botfleet config show | head`): not a failure.
        return ExitCode::from(OK);
    }
    for cause in error.chain() {
        match cause.downcast_ref::<ConfigError>() {
            Some(ConfigError::Read { .. }) => return ExitCode::from(NO_INPUT),
            Some(ConfigError::Invalid(_)) => return ExitCode::from(USAGE),
            _ => {}
        }
    }
    ExitCode::from(FAILURE)
}

pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

//! The `botfleet` command line: `main` only hands over to [`cli::run`].

mod cli;
mod commands;
mod exit;
mod logging;

fn main() -> std::process::ExitCode {
    cli::run()
}

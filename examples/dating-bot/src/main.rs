//! The dating bot as a program of its own: `botfleet run` starts it as the
//! `dating` bot's workers (see `examples/demo-fleet.toml`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match dating_bot::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            #[expect(
                clippy::print_stderr,
                reason = "the worker's one error line before it exits"
            )]
            {
                eprintln!("dating-bot: {e}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

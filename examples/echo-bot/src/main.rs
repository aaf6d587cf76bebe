//! The smallest botfleet worker: answers every text message with its echo.
//!
//! `botfleet run examples/echo-fleet.toml` starts it as the `echo` bot's
//! workers; see the README.

use botfleet_telegram::updates::UpdateContent;
use botfleet_worker::{Context, HandlerResult, Update};

async fn handle(update: Update, cx: Context) -> HandlerResult {
    if let UpdateContent::Message(message) = update.content()? {
        if let Some(text) = &message.text {
            cx.api()
                .send_message(message.chat.id, &format!("echo {text}"))
                .await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match botfleet_worker::run(handle).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            #[expect(
                clippy::print_stderr,
                reason = "the worker's one error line before it exits"
            )]
            {
                eprintln!("echo-bot: {e}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

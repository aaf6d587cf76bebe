//! Logging to stderr through `tracing`, filtered like `RUST_LOG`.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The log filter, in `RUST_LOG` syntax (`info,botfleet_runtime=debug`).
/// Falls back to `RUST_LOG` when unset.
pub(crate) const BOTFLEET_LOG: &str = "BOTFLEET_LOG";

/// Installs the global subscriber.
///
/// The level comes from `-v`/`-q` (warn by default; `-v` info, `-vv` debug,
/// `-vvv` trace; `-q` error, `-qq` off). `BOTFLEET_LOG` or `RUST_LOG` add
/// per-target directives, and their bare level, if any, wins over the flags.
/// Returns a warning to show when the variable could not be parsed.
pub(crate) fn init(verbose: u8, quiet: u8) -> Option<String> {
    let level = match (verbose, quiet) {
        (0, 0) => LevelFilter::WARN,
        (1, _) => LevelFilter::INFO,
        (2, _) => LevelFilter::DEBUG,
        (_, 0) => LevelFilter::TRACE,
        (_, 1) => LevelFilter::ERROR,
        _ => LevelFilter::OFF,
    };
    let (var, spec) = [BOTFLEET_LOG, "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().map(|spec| (*var, spec)))
        .unwrap_or((BOTFLEET_LOG, String::new()));
    let (targets, warning) = match Targets::from_str(&spec) {
        Ok(targets) if targets.default_level().is_some() => (targets, None),
        Ok(targets) => (targets.with_default(level), None),
        Err(error) => (
            Targets::new().with_default(level),
            Some(format!("ignoring {var}: {error}")),
        ),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    // A second init (tests calling `run` twice) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(targets)
        .try_init();
    warning
}

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
        .find_map(|var| {
            std::env::var(var)
                .ok()
                .filter(|spec| !spec.trim().is_empty())
                .map(|spec| (*var, spec))
        })
        .unwrap_or((BOTFLEET_LOG, String::new()));
    let (targets, warning) = filter(&spec, level).map_or_else(
        |error| {
            (
                Targets::new().with_default(level),
                Some(format!("ignoring {var}: {error}")),
            )
        },
        |targets| (targets, None),
    );
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

/// The filter of `spec` (`RUST_LOG` syntax) over the flags' `level`: its
/// per-target directives, and its bare level, when it has one, instead of
/// `level`. An empty spec is `level` alone (tracing reads `""` as ERROR).
fn filter(
    spec: &str,
    level: LevelFilter,
) -> Result<Targets, tracing_subscriber::filter::ParseError> {
    if spec.trim().is_empty() {
        return Ok(Targets::new().with_default(level));
    }
    let targets = Targets::from_str(spec)?;
    Ok(if targets.default_level().is_some() {
        targets
    } else {
        targets.with_default(level)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_level_holds_unless_the_spec_names_one() {
        assert_eq!(
            filter("", LevelFilter::WARN).unwrap().default_level(),
            Some(LevelFilter::WARN)
        );
        assert_eq!(
            filter("  ", LevelFilter::INFO).unwrap().default_level(),
            Some(LevelFilter::INFO)
        );
        let t = filter("botfleet_runtime=debug", LevelFilter::WARN).unwrap();
        assert_eq!(t.default_level(), Some(LevelFilter::WARN));
        assert!(t.would_enable("botfleet_runtime", &tracing::Level::DEBUG));
        assert_eq!(
            filter("error,botfleet_runtime=debug", LevelFilter::INFO)
                .unwrap()
                .default_level(),
            Some(LevelFilter::ERROR)
        );
        assert!(filter("botfleet_runtime=loud", LevelFilter::WARN).is_err());
    }
}

//! The one duration syntax of botfleet: the fleet file's values and every
//! command-line flag that takes a duration read it here.
//!
//! A duration is a number (`30`, `1.5`) and a unit: `ms`, `s`, `m` (or
//! `min`), `h` or `d`; without a unit the number is seconds (`30` is `30s`).
//! `0` is zero, which some settings take to mean "off".

use std::time::Duration;

/// How to write a duration, for error messages.
pub const SYNTAX: &str =
    "write a number and a unit, ms, s, m or h (\"250ms\", \"30s\", \"5m\"), or a number of seconds";

/// Parses a duration (module docs), or `None`.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Formats a duration the way [`parse`] reads it, in the largest unit that
/// keeps it whole (to the millisecond).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0".to_owned()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A command-line flag's duration, which must not be zero (a clap
/// `value_parser`).
pub fn positive_arg(text: &str) -> Result<Duration, String> {
    match parse(text) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err(format!("`{text}` is zero; give a positive duration")),
        None => Err(format!("`{text}` is not a duration: {SYNTAX}")),
    }
}

/// A command-line flag's duration, where zero turns something off (a clap
/// `value_parser`).
pub fn arg(text: &str) -> Result<Duration, String> {
    parse(text).ok_or_else(|| format!("`{text}` is not a duration: {SYNTAX}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_fleet_file_and_the_flags_took() {
        let cases = [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("5min", 300_000),
            ("1.5s", 1500),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("0", 0),
            ("0s", 0),
            ("30", 30_000),
            ("0.5", 500),
            (" 30 s ", 30_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text), Some(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "s", "5 parsecs", "-1s", "1e3s", "ms5", "1.2.3s", "."] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        for d in ["250ms", "30s", "5m", "2h", "0", "1500ms"] {
            assert_eq!(format(parse(d).unwrap()), d);
        }
    }

    #[test]
    fn flags_say_what_is_wrong() {
        assert_eq!(positive_arg("2m"), Ok(Duration::from_secs(120)));
        assert!(positive_arg("0s").unwrap_err().contains("zero"));
        assert!(arg("soon").unwrap_err().contains("not a duration"));
        assert_eq!(arg("0"), Ok(Duration::ZERO));
    }
}

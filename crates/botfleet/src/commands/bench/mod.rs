//! `botfleet bench <area>`: every performance promise as a command that
//! prints a table (progress on stderr) or exactly one JSON document
//! (`--json`). The contract is in docs/benchmarks.md.

pub(crate) mod cache;
pub(crate) mod chaos;
pub(crate) mod db;
pub(crate) mod fleet;
mod harness;
pub(crate) mod ipc;
mod machine;
mod peers;
pub(crate) mod scaling;
pub(crate) mod stats;
pub(crate) mod supervisor;
pub(crate) mod telegram;

pub(crate) use machine::Machine;

/// Writes `report` as one JSON document (`json`) or with `print`, to a
/// locked stdout.
pub(crate) fn output<R: serde::Serialize>(
    json: bool,
    report: &R,
    print: impl FnOnce(&mut std::io::StdoutLock<'static>, &R) -> std::io::Result<()>,
) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        print(&mut out, report)?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// A duration as benchmarks take it: `30s`, `2m`, `500ms` or plain seconds.
/// A duration as [`parse_duration`] reads it, or zero (`0`, `0s`), for
/// options where zero turns something off.
pub(crate) fn parse_duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let number = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if number.trim().parse::<f64>() == Ok(0.0) && ["", "ms", "s", "m"].contains(&&t[number.len()..])
    {
        return Ok(std::time::Duration::ZERO);
    }
    parse_duration(text)
}

pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| std::time::Duration::from_secs_f64(v * scale))
        .ok_or_else(|| {
            format!("`{text}` is not a duration: write 30s, 2m, 500ms or a number of seconds")
        })
}

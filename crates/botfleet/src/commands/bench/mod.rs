//! `botfleet bench <area>`: every performance promise as a command that
//! prints a table (progress on stderr) or exactly one JSON document
//! (`--json`). The contract is in docs/benchmarks.md.

pub(crate) mod cache;
pub(crate) mod db;
pub(crate) mod ipc;
mod machine;
mod peers;
mod stats;
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

//! Prometheus's tools: `promtool`, which checks what the monitor exposes.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use crate::process::command;
use crate::{Error, Result};

/// `promtool` on PATH, `/usr/bin` or `/usr/local/bin`.
pub fn promtool() -> Result<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingBinary {
            what: "promtool".into(),
            searched: "on PATH, /usr/bin and /usr/local/bin".into(),
            install: "install it with `apt-get install prometheus` (Debian, Ubuntu)".into(),
        })
}

/// `promtool check metrics` on `text` (Prometheus's exposition linter):
/// whether it passed, and what it said.
pub fn check_metrics(text: &str) -> Result<(bool, String)> {
    let mut child = command(promtool()?)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("promtool check metrics", &e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("promtool's stdin", &e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("promtool check metrics", &e))?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), said))
}

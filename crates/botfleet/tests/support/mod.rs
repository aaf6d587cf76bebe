//! What every integration test binary of `botfleet` shares: scratch
//! directories and running the real binary.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers"
)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// A valid token for tests (the format is right; the bot does not exist).
pub(crate) const TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";

/// A directory of its own for one test, under cargo's scratch directory.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `botfleet ARGS` in `dir` with exactly the environment `vars` (plus
/// PATH), so the test does not depend on the caller's variables.
pub(crate) fn botfleet(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    #[expect(
        clippy::disallowed_methods,
        reason = "integration tests run the real binary"
    )]
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet"));
    command.args(args).current_dir(dir).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(vars.iter().copied());
    command.output().unwrap()
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A `botfleet demo` running: its stdout line by line as it comes
/// (`lines`), and all of it when it ends (`reading`).
pub(crate) struct Demo {
    pub(crate) child: std::process::Child,
    pub(crate) lines: std::sync::mpsc::Receiver<String>,
    pub(crate) reading: std::thread::JoinHandle<String>,
}

/// Starts `botfleet ARGS` (a demo) in `dir`, its stdout read as it comes
/// and its stderr to `stderr`.
pub(crate) fn demo<S: AsRef<std::ffi::OsStr>>(
    dir: &Path,
    args: &[S],
    stderr: std::process::Stdio,
) -> Demo {
    use std::io::BufRead;
    #[expect(
        clippy::disallowed_methods,
        reason = "integration tests run the real binary"
    )]
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet"));
    let mut child = command
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let reading = std::thread::spawn(move || {
        let mut all = String::new();
        for line in reader.lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    Demo {
        child,
        lines,
        reading,
    }
}

/// The `--url` and `--token-file` that the demo's "from another terminal:
/// botfleet status|... --url URL --token-file FILE" line names, when
/// `line` is that line.
pub(crate) fn demo_reach(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("from another terminal: ")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let after = |flag: &str| {
        let at = words.iter().position(|w| *w == flag)?;
        words.get(at + 1).map(|w| (*w).to_owned())
    };
    Some((after("--url")?, after("--token-file")?))
}

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

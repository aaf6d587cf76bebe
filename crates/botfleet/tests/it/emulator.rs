//! `botfleet emulator` as a process.

use std::io::{Read, Write};
use std::time::Duration;

use crate::{TOKEN, botfleet, scratch, stderr};

/// `GET /bot<token>/getMe` on the emulator at `port`: the response body.
fn get_me(port: u16, token: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /bot{token}/getMe HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn tokens_can_come_from_a_file_or_the_environment_not_the_command_line() {
    const OTHER: &str = "110201544:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw2";
    let dir = scratch("emulator-bots");
    std::fs::write(
        dir.join("bots.txt"),
        format!("# the fleet's bots\n{TOKEN}=file_bot\n\n"),
    )
    .unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let bind = format!("127.0.0.1:{port}");
    #[expect(
        clippy::disallowed_methods,
        reason = "integration tests run the real binary"
    )]
    let mut emulator = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet"))
        .args(["emulator", "--bind", &bind, "--bots-file", "bots.txt"])
        .current_dir(&dir)
        .env_clear()
        .env("BOTFLEET_EMULATOR_BOTS", format!("{OTHER}=env_bot"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            answer = get_me(port, TOKEN);
            break;
        }
        #[expect(clippy::disallowed_methods, reason = "a sync test waits for a process")]
        std::thread::sleep(Duration::from_millis(25));
    }
    let other = get_me(port, OTHER);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", emulator.id())).unwrap();
    emulator.kill().unwrap();
    emulator.wait().unwrap();
    assert!(answer.contains("\"username\":\"file_bot\""), "{answer}");
    assert!(other.contains("\"username\":\"env_bot\""), "{other}");
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains("AAHdq"), "{cmdline}");
    // A bad line is named by its place, never quoted.
    std::fs::write(dir.join("bad.txt"), "secret-part-without-colon=x\n").unwrap();
    let output = botfleet(
        &dir,
        &["emulator", "--bind", &bind, "--bots-file", "bad.txt"],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("bad.txt:1: malformed token"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("secret-part"),
        "{}",
        stderr(&output)
    );
}

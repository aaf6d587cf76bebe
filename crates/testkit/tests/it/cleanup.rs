//! Servers are removed even when the process that started them is killed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn servers_of_a_killed_process_are_removed() {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test runs the testkit's own binary"
    )]
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_botfleet-test-servers"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut info = HashMap::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.starts_with("ready") {
            break;
        }
        let (key, value) = line.split_once('=').unwrap();
        info.insert(key.to_owned(), value.to_owned());
    }
    let pg_dir = Path::new(&info["postgres_dir"]).to_owned();
    let redis_dir = Path::new(&info["redis_dir"]).to_owned();
    let ports: Vec<u16> = ["postgres_port", "redis_port"]
        .iter()
        .map(|k| info[*k].parse().unwrap())
        .collect();
    assert!(pg_dir.is_dir() && redis_dir.is_dir());
    for port in &ports {
        assert!(std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
    }

    child.kill().unwrap(); // SIGKILL: no destructor runs.
    child.wait().unwrap();

    let mut gone = false;
    for _ in 0..200 {
        let ports_closed = ports
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err());
        if !pg_dir.exists() && !redis_dir.exists() && ports_closed {
            gone = true;
            break;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "sync test polling an external process"
        )]
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        gone,
        "servers of a killed process were not removed within 10 s"
    );
}

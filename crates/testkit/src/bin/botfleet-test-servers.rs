//! `botfleet-test-servers`: start a throwaway PostgreSQL and Redis, print how
//! to reach them, and remove both when standard input closes (Ctrl-D) or the
//! process is killed.
//!
//! ```text
//! cargo run -p botfleet-testkit --bin botfleet-test-servers
//! ```

use std::io::{Read, Write};
use std::process::ExitCode;

use botfleet_testkit::{PostgresServer, RedisServer};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let postgres = PostgresServer::start()?;
    let redis = RedisServer::start()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "postgres_url={}", postgres.url("postgres"))?;
    writeln!(out, "postgres_dir={}", postgres.dir().display())?;
    writeln!(out, "postgres_port={}", postgres.port())?;
    writeln!(out, "redis_url={}", redis.url())?;
    writeln!(out, "redis_dir={}", redis.dir().display())?;
    writeln!(out, "redis_port={}", redis.port())?;
    writeln!(
        out,
        "ready: close standard input (Ctrl-D) to stop both servers"
    )?;
    out.flush()?;
    drop(out);
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}

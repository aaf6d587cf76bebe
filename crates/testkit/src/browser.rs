//! A headless Chromium driven through WebDriver: Debian's `chromium` and
//! `chromium-driver`. The testkit starts `chromedriver` on a free loopback
//! port; a test speaks WebDriver's JSON to [`ChromeDriver::url`].

use crate::process::Watchdog;
use crate::prometheus::{Served, find, start_ready};
use crate::{Result, TempDir};

/// A `chromedriver` of this test process. Stopped on drop, and by a
/// watchdog if the test process dies first.
#[derive(Debug)]
pub struct ChromeDriver {
    served: Served,
}

/// Where Debian puts the browser, for the session's capabilities.
pub fn chromium() -> Result<std::path::PathBuf> {
    find("chromium", "chromium")
}

impl ChromeDriver {
    /// Starts one.
    pub fn start() -> Result<ChromeDriver> {
        let binary = find("chromedriver", "chromium-driver")?;
        chromium()?;
        let dir = TempDir::new("chromedriver")?;
        let pidfile = dir.path().join("chromedriver.pid");
        let watchdog = Watchdog::arm(&pidfile, "chromedriver", "TERM", dir.path())?;
        let (process, port) = start_ready(
            "/status",
            "ChromeDriver",
            &binary,
            dir.path(),
            &pidfile,
            |port| {
                vec![
                    format!("--port={port}"),
                    "--allowed-ips=127.0.0.1".to_owned(),
                ]
            },
        )?;
        Ok(ChromeDriver {
            served: Served {
                process,
                port,
                _watchdog: watchdog,
                _dir: dir,
            },
        })
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.served.log()
    }
}

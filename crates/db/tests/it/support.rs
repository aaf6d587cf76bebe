//! Shared helpers.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use botfleet_config::{DatabaseSettings, Environment};
use botfleet_db::Database;

/// A runtime for one test (the tests are plain `#[test]`s so the budget
/// test can re-run itself as a child process).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The prod preset with short timeouts for tests.
pub(crate) fn settings() -> DatabaseSettings {
    let mut s = Environment::Prod.preset().database;
    s.pool.acquire_timeout = Duration::from_secs(2);
    s.pool.connect_timeout = Duration::from_secs(2);
    s
}

pub(crate) async fn postgres() -> (botfleet_testkit::TestDatabase, Database) {
    let test_db = botfleet_testkit::database().expect("a test database");
    let db = Database::builder(test_db.url())
        .settings(settings())
        .pool_size(4)
        .application_name("botfleet/test/1")
        .bot("test")
        .connect()
        .await
        .expect("connect");
    (test_db, db)
}

pub(crate) async fn sqlite() -> (botfleet_testkit::TempDir, Database) {
    let dir = botfleet_testkit::TempDir::new("sqlite").expect("a temporary directory");
    let db = Database::embedded(&dir.path().join("fleet.db"))
        .settings(settings())
        .bot("test")
        .connect()
        .await
        .expect("connect");
    (dir, db)
}

/// Log lines written while it is alive, for assertions.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

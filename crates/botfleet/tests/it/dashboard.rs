//! The dashboard in a real browser: a headless Chromium (Debian's
//! `chromium` and `chromium-driver`, started by the testkit) driven over
//! WebDriver's JSON.

use std::time::Duration;

use botfleet_config::{BotFile, FleetFile};
use botfleet_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::{TOKEN, scratch};

/// A WebDriver session on a chromedriver.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn open(driver: &str) -> Browser {
        let http = reqwest::Client::new();
        let chromium = botfleet_testkit::chromium().unwrap();
        let body: Value = http
            .post(format!("{driver}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1400,1100"],
                },
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {body}"))
            .to_owned();
        Browser {
            http,
            session: format!("{driver}/session/{session}"),
        }
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let v: Value = self
            .http
            .post(format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("/url", json!({ "url": url })).await;
    }

    async fn run(&self, script: &str) -> Value {
        self.call("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Waits until `script` returns true (up to a minute: a loaded CI
    /// machine runs other tests beside the browser).
    async fn until(&self, script: &str, what: &str) {
        for _ in 0..300 {
            if self.run(script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let page = self.run("return document.body.innerText").await;
        panic!("{what}: never true: {script}\n{page}");
    }

    async fn screenshot(&self, name: &str) {
        let v: Value = self
            .http
            .get(format!("{}/screenshot", self.session))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let png = base64(v["value"].as_str().unwrap());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// Standard base64 to bytes (what WebDriver's screenshots are).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(value(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// A running fleet's dashboard, off loopback behind its token: the login
/// form, then live charts that fill and move, the workers' table, and an
/// alert that fires while the page is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_live_in_a_browser() {
    const MONITOR_TOKEN: &str = "a-dashboard-token-0123456789";
    let driver = tokio::task::spawn_blocking(|| botfleet_testkit::ChromeDriver::start().unwrap())
        .await
        .unwrap();
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "echo_bot").unwrap();
    for u in 1..=5 {
        e.add_user(u, "user");
    }
    let dir = scratch("dashboard");
    let worker = crate::run::python_worker();
    let file = FleetFile::new()
        .telegram_api(e.base_url())
        .set("monitor.bind", "0.0.0.0:0")
        .set("monitor.token", MONITOR_TOKEN)
        .bot(
            BotFile::new("echo", TOKEN)
                .workers(2, 2)
                .command("python3", [worker]),
        );
    let rules = r#"
[alerts]
interval = "1s"
[[alerts.groups]]
name = "test"
[[alerts.groups.rules]]
alert = "EchoBusy"
expr = "sum by (bot) (increase(botfleet_updates_acked_total[1m])) > 3"
annotations = { summary = "{{ $labels.bot }} is busy" }
"#;
    std::fs::write(dir.join("fleet.toml"), file.to_toml() + rules).unwrap();
    let mut supervisor = crate::run::start_with(&dir, &[]);
    let url_file = dir.join("data/monitor.url");
    for _ in 0..300 {
        if url_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Bound to 0.0.0.0, reached on loopback.
    let port = std::fs::read_to_string(&url_file)
        .unwrap()
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let base = format!("http://127.0.0.1:{port}");
    // Without the token: the API refuses, the page asks for it.
    let r = reqwest::get(format!("{base}/api/v1/fleet")).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::get(format!("{base}/api/v1/stream")).await.unwrap();
    assert_eq!(r.status(), 401);
    let browser = Browser::open(&driver.url()).await;
    browser.goto(&base).await;
    browser
        .until(
            "return !!document.querySelector('input[name=token]')",
            "the login form",
        )
        .await;
    browser
        .run(&format!(
            "document.querySelector('input[name=token]').value = '{}'; document.querySelector('form').submit(); return true",
            "wrong-token-0000000000"
        ))
        .await;
    browser
        .until(
            "return document.body.innerText.includes(\"not the monitor's token\")",
            "a wrong token refused",
        )
        .await;
    browser
        .run(&format!(
            "document.querySelector('input[name=token]').value = '{MONITOR_TOKEN}'; document.querySelector('form').submit(); return true"
        ))
        .await;
    // Live: ticks arrive, the workers' table lists both workers with pids.
    browser
        .until(
            "return Number(document.body.dataset.ticks || 0) >= 2",
            "live ticks",
        )
        .await;
    browser
        .until(
            "return document.querySelectorAll('tr.worker').length === 2 && [...document.querySelectorAll('tr.worker')].every(r => Number(r.dataset.pid) > 0)",
            "two workers with pids",
        )
        .await;
    // Traffic: the rate chart gets points and they change over time.
    for i in 0..8 {
        e.inject_message(TOKEN, 1 + i % 5, 1 + i % 5, &format!("m{i}"))
            .unwrap();
    }
    let points = "return Number(document.querySelector('canvas[data-chart=rate]').dataset.points)";
    browser.until(&format!("{points} > 0"), "rate points").await;
    let before = browser.run(points).await.as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = browser.run(points).await.as_u64().unwrap();
    assert!(
        after > before,
        "the chart did not move: {before} -> {after}"
    );
    // The alert the traffic set off appears on the open page.
    browser
        .until(
            "return !!document.querySelector('li.firing[data-alert=EchoBusy]')",
            "the EchoBusy alert firing",
        )
        .await;
    browser
        .until(
            "return !!document.querySelector('#alert-history li[data-change=\"EchoBusy:firing\"]')",
            "the change to firing in the history",
        )
        .await;
    let text = browser.run("return document.body.innerText").await;
    assert!(text.as_str().unwrap().contains("echo is busy"), "{text}");
    assert!(
        !text.as_str().unwrap().contains(TOKEN),
        "the bot's token on the page"
    );
    // Anomaly bands and forecast lines on the charts they concern.
    browser
        .until(
            "return document.querySelector('canvas[data-chart=memory]').dataset.forecast === '1'",
            "the memory chart's forecast",
        )
        .await;
    browser
        .until(
            "return document.querySelector('canvas[data-chart=p99]').dataset.band === '1' || document.querySelector('canvas[data-chart=rate]').dataset.band === '1'",
            "an anomaly band",
        )
        .await;
    browser.screenshot("dashboard.png").await;
    // A value PromQL could not give (a p99 over no traffic: 0/0) is a gap
    // in its line, not a scale of NaN that draws nothing.
    let scale = browser
        .run(
            "const chart = state.charts.find((c) => c.id === 'p99'); const now = Date.now() / 1000; \
             state.series.p99['bot=nan'] = { labels: { bot: 'nan' }, points: [[now - 9, NaN], [now - 6, 0.5], [now - 3, NaN]] }; \
             draw(chart); const scale = chart.canvas.dataset.scale; \
             delete state.series.p99['bot=nan']; draw(chart); return scale",
        )
        .await;
    let scale = scale.as_str().unwrap_or_default().to_owned();
    assert!(
        scale
            .split(' ')
            .all(|v| v.parse::<f64>().is_ok_and(f64::is_finite)),
        "the p99 chart's scale with a 0/0 point: {scale:?}"
    );
    // A bot's page: its own lines only.
    browser.goto(&format!("{base}/#bot=echo")).await;
    browser
        .until(
            "return document.getElementById('fleet-title').textContent.includes('echo')",
            "the bot's page",
        )
        .await;
    browser.close().await;
    crate::run::terminate(&supervisor);
    assert!(supervisor.wait().unwrap().success());
    drop(driver);
}

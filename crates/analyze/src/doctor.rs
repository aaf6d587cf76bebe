//! `botfleet doctor`'s report and its judgements: the readiness checks'
//! shape (`{ok, checks: [{name, ok, detail, fix}]}`), how they print, and
//! the rules that need no server to test (Redis's version, the descriptors
//! a fleet needs, the disk its journals need). The binary runs the probes.

use serde::Serialize;

/// One check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// What was checked: `telegram dating`, `postgres budget`...
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do, when it failed.
    pub fix: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A check that failed, with the fix.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check (the JSON of `botfleet doctor --json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Every check passed.
    pub ok: bool,
    /// In the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// The report of `checks`.
    pub fn of(checks: Vec<Check>) -> Report {
        Report {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// One line per check, ✓ or ✗, the fix under a failed one; then a
    /// verdict line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{} {}: {}\n",
                if c.ok { "✓" } else { "✗" },
                c.name,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("    fix: {fix}\n"));
            }
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            out.push_str(&format!("ready: all {} checks passed\n", self.checks.len()));
        } else {
            out.push_str(&format!(
                "not ready: {failed} of {} checks failed\n",
                self.checks.len()
            ));
        }
        out
    }
}

/// The oldest Redis the cache is built for.
pub const REDIS_MAJOR: u32 = 7;

/// `redis_version` from `INFO server`'s text: (major, minor, patch).
pub fn redis_version(info: &str) -> Option<(u32, u32, u32)> {
    let line = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = line.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    ))
}

/// A field of `INFO`'s text.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// Descriptors a fleet needs: the supervisor's own (logs, the monitor's
/// clients, the journal, its database and Redis connections), and per
/// worker its socket, its output pipes and its process handle, and per bot
/// its Bot API connections and journal files.
pub fn descriptors_needed(workers: u32, bots: u32) -> u64 {
    const BASE: u64 = 128;
    const PER_WORKER: u64 = 4;
    const PER_BOT: u64 = 24;
    BASE + PER_WORKER * u64::from(workers) + PER_BOT * u64::from(bots)
}

/// Bytes of free disk the journals of `bots` bots need: each holds up to
/// 10,000 updates (ingest waits there), a few KiB each, plus room for the
/// logs.
pub fn disk_needed(bots: u32) -> u64 {
    const PER_BOT: u64 = 10_000 * 8 * 1024;
    const MARGIN: u64 = 256 * 1024 * 1024;
    MARGIN + PER_BOT * u64::from(bots)
}

/// Bytes as people read them.
pub fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= 1024.0 * MIB {
        format!("{:.1} GiB", n as f64 / 1024.0 / MIB)
    } else {
        format!("{:.0} MiB", n as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_versions_are_read_from_info() {
        let info = "# Server\r\nredis_version:6.2.14\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info), Some((6, 2, 14)));
        assert!(redis_version(info).unwrap().0 < REDIS_MAJOR, "6 is too old");
        assert_eq!(redis_version("redis_version:7.0.15\n"), Some((7, 0, 15)));
        assert_eq!(redis_version("redis_version:8\n"), Some((8, 0, 0)));
        assert_eq!(redis_version("no version here"), None);
        assert_eq!(info_field(info, "redis_git_sha1"), Some("00000000"));
    }

    #[test]
    fn the_report_is_ok_only_when_every_check_passes() {
        let good = Report::of(vec![Check::pass("a", "fine"), Check::pass("b", "fine")]);
        assert!(good.ok);
        assert!(good.text().ends_with("ready: all 2 checks passed\n"));
        let bad = Report::of(vec![
            Check::pass("a", "fine"),
            Check::fail("b", "broken", "mend it"),
        ]);
        assert!(!bad.ok);
        let text = bad.text();
        assert!(
            text.contains("✓ a: fine\n✗ b: broken\n    fix: mend it\n"),
            "{text}"
        );
        assert!(text.ends_with("not ready: 1 of 2 checks failed\n"));
    }

    #[test]
    fn needs_grow_with_the_fleet() {
        assert!(descriptors_needed(40, 2) > descriptors_needed(4, 2));
        assert!(descriptors_needed(0, 1) >= 128);
        assert!(disk_needed(2) > disk_needed(1));
        assert_eq!(human_bytes(256 * 1024 * 1024), "256 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}

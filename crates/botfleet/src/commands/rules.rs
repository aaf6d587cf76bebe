//! `botfleet rules check|test|export`, and the rules `run` evaluates: the
//! built-in pack, the fleet file's `[[alerts.groups]]` and its
//! `rule_files`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use botfleet_config::{ConfigError, FleetConfig, ProcessEnv, RuleGroup};
use botfleet_monitor::alerts::{Engine, default_rules};
use clap::Subcommand;

use crate::cli::ConfigFile;
use crate::exit;

#[derive(Debug, Subcommand)]
pub(crate) enum RulesCommand {
    /// Check rules files (`[[groups]]` of `[[groups.rules]]`), or with no
    /// FILE the rules of the fleet file: every expression is PromQL botfleet
    /// evaluates, every template one it fills.
    Check {
        /// Rules files [default: the fleet file's rules].
        files: Vec<PathBuf>,
        /// The fleet file whose rules are meant when no FILE is given.
        #[arg(long = "config", value_name = "FLEET_FILE", env = crate::cli::BOTFLEET_CONFIG, default_value = botfleet_config::DEFAULT_CONFIG_FILE)]
        config: PathBuf,
    },
    /// Run rules unit tests: synthetic series in, the alerts expected at
    /// given times (promtool's `test rules`, in TOML; see docs/alerts.md).
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print rules in Prometheus's rule-file format (YAML), for
    /// `promtool check rules` or your own Prometheus.
    Export {
        /// Rules files [default: the fleet file's rules, built-in ones
        /// included].
        files: Vec<PathBuf>,
        /// The fleet file whose rules are meant when no FILE is given.
        #[arg(long = "config", value_name = "FLEET_FILE", env = crate::cli::BOTFLEET_CONFIG, default_value = botfleet_config::DEFAULT_CONFIG_FILE)]
        config: PathBuf,
    },
}

/// Prints `error`'s problems, `FILE:LINE:COL` each.
fn print_invalid(error: &ConfigError) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    for d in error.diagnostics() {
        writeln!(err, "{d}")?;
    }
    Ok(())
}

/// The rules of a rules file.
fn read_rules(path: &Path) -> anyhow::Result<Result<Vec<RuleGroup>, ConfigError>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the rules file {}", path.display()))?;
    Ok(botfleet_config::parse_rules(
        &text,
        &path.display().to_string(),
        &ProcessEnv,
    ))
}

/// Every rule `run` evaluates for `config`, read from `fleet_file`: the
/// built-in pack (unless `default_rules = false`), `[[alerts.groups]]`,
/// and each of `rule_files` (relative to the fleet file's folder). A
/// problem is an error that says what and where.
pub(crate) fn fleet_rules(
    config: &FleetConfig,
    fleet_file: &Path,
) -> anyhow::Result<Vec<RuleGroup>> {
    let mut groups = Vec::new();
    if config.alerts.default_rules {
        groups.push(default_rules());
    }
    groups.extend(config.alerts.groups.iter().cloned());
    let base = fleet_file.parent().unwrap_or(Path::new("."));
    for file in &config.alerts.rule_files {
        let path = base.join(file);
        match read_rules(&path)? {
            Ok(g) => groups.extend(g),
            Err(e) => {
                let lines: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
                anyhow::bail!("{}", lines.join("\n"));
            }
        }
    }
    Engine::new(&groups).map_err(anyhow::Error::msg)?;
    Ok(groups)
}

pub(crate) fn run(command: &RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check { files, config } => check(files, &fleet_file(config)),
        RulesCommand::Test { files } => test(files),
        RulesCommand::Export { files, config } => export(files, &fleet_file(config)),
    }
}

fn fleet_file(path: &Path) -> ConfigFile {
    ConfigFile {
        file: path.to_owned(),
    }
}

/// The groups of `files`, or of the fleet file; `None` when invalid (the
/// problems printed).
fn groups_of(
    files: &[PathBuf],
    config: &ConfigFile,
) -> anyhow::Result<Option<(String, Vec<RuleGroup>)>> {
    if files.is_empty() {
        let Some(fleet) = super::config::load(config)? else {
            return Ok(None);
        };
        return Ok(Some((
            config.file.display().to_string(),
            fleet_rules(&fleet, &config.file)?,
        )));
    }
    let mut groups = Vec::new();
    let mut bad = false;
    for file in files {
        match read_rules(file)? {
            Ok(g) => groups.extend(g),
            Err(e) => {
                print_invalid(&e)?;
                bad = true;
            }
        }
    }
    if bad {
        return Ok(None);
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Ok(Some((names.join(", "), groups)))
}

fn check(files: &[PathBuf], config: &ConfigFile) -> anyhow::Result<ExitCode> {
    let Some((what, groups)) = groups_of(files, config)? else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    if let Err(e) = Engine::new(&groups) {
        writeln!(std::io::stderr().lock(), "{e}")?;
        return Ok(ExitCode::from(exit::USAGE));
    }
    let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
    writeln!(
        std::io::stdout().lock(),
        "{what}: ok: {rules} rules in {} groups",
        groups.len()
    )?;
    Ok(ExitCode::from(exit::OK))
}

fn export(files: &[PathBuf], config: &ConfigFile) -> anyhow::Result<ExitCode> {
    let Some((_, groups)) = groups_of(files, config)? else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    std::io::stdout()
        .lock()
        .write_all(botfleet_monitor::rules::export(&groups).as_bytes())?;
    Ok(ExitCode::from(exit::OK))
}

fn test(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the rules test file {}", file.display()))?;
        let tests = match botfleet_config::parse_rule_tests(
            &text,
            &file.display().to_string(),
            &ProcessEnv,
        ) {
            Ok(t) => t,
            Err(e) => {
                print_invalid(&e)?;
                return Ok(ExitCode::from(exit::USAGE));
            }
        };
        let mut groups = Vec::new();
        if tests.default_rules {
            groups.push(default_rules());
        }
        let base = file.parent().unwrap_or(Path::new("."));
        for rules in &tests.rule_files {
            match read_rules(&base.join(rules))? {
                Ok(g) => groups.extend(g),
                Err(e) => {
                    print_invalid(&e)?;
                    return Ok(ExitCode::from(exit::USAGE));
                }
            }
        }
        let report = match botfleet_monitor::rules::run_tests(&tests, &groups) {
            Ok(r) => r,
            Err(e) => {
                writeln!(std::io::stderr().lock(), "{e}")?;
                return Ok(ExitCode::from(exit::USAGE));
            }
        };
        for f in &report.failures {
            writeln!(out, "FAILED {} ({}): {}", f.origin, f.test, f.message)?;
        }
        let verdict = if report.failures.is_empty() {
            "passed"
        } else {
            failed = true;
            "FAILED"
        };
        writeln!(
            out,
            "{}: {verdict}: {} tests, {} alert checks, {} failed",
            file.display(),
            report.tests,
            report.checks,
            report.failures.len()
        )?;
    }
    Ok(ExitCode::from(if failed {
        exit::FAILURE
    } else {
        exit::OK
    }))
}

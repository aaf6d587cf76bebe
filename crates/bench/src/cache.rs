//! `botfleet bench cache`: hit ratio on real traces against moka,
//! quick_cache, LRU and Bélády's OPT; L1 and L2 speed; stampede; cold start
//! with and without warming; invalidation delay between processes.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_cache::l1::{Cached, L1};
use botfleet_cache::policy::{Lru, WTinyLfu};
use botfleet_cache::sim::{self, Format, PolicySim, Request};
use botfleet_cache::{Redis, TieredCache};
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::peers::{MOKA_VERSION, Moka, QUICK_CACHE_VERSION, QuickCache};
use super::stats::quantile;

/// The traces directory, when `--traces` is not given.
pub(crate) const BOTFLEET_TRACES: &str = "BOTFLEET_TRACES";

/// The flags of `botfleet bench cache`.
#[derive(Debug, Args)]
pub struct CacheBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// The directory of the shared cache traces (docs/benchmarks.md says
    /// where they come from).
    #[arg(long, value_name = "DIR", env = BOTFLEET_TRACES)]
    traces: Option<PathBuf>,
    /// Replay this one trace file instead of the standard cells.
    #[arg(long, value_name = "PATH", requires_all = ["format", "capacity"])]
    trace: Option<PathBuf>,
    /// The format of `--trace`: lirs, arc, cache2k, scarab, corda or
    /// oracle-general.
    #[arg(long, value_parser = parse_format)]
    format: Option<Format>,
    /// The cache size for `--trace`: entries, or bytes for oracle-general.
    #[arg(long)]
    capacity: Option<u64>,
    /// The Redis for the L2 sections; without it one is started (the
    /// `redis-server` program must be installed).
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Run only the hit-ratio section (no Redis needed).
    #[arg(long)]
    hit_ratio_only: bool,
    /// Only the 12 named cells, not the sweep over every trace and
    /// capacity (quicker).
    #[arg(long)]
    named_only: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// The sketch seeds our policy is run with; its figure is their mean.
const SEEDS: [u64; 3] = [1, 2, 3];
/// moka's figure is the mean of this many runs: its maintenance runs on
/// timing-dependent triggers, so one replay differs from the next (by up to
/// 3.5 points on the weighted trace).
const MOKA_RUNS: usize = 5;

/// The standard hit-ratio cells: (file, format, capacities).
const CELLS: &[(&str, Format, &[u64])] = &[
    ("OLTP.lis.zst", Format::Arc, &[250, 1000, 2000]),
    ("multi3.trace.gz", Format::Lirs, &[1000]),
    ("gli.trace.gz", Format::Lirs, &[1000]),
    ("sprite.trace.gz", Format::Lirs, &[500]),
    ("scarab-recs.trace.xz", Format::Scarab, &[10_000, 50_000]),
    ("trace_vaultservice.gz", Format::Corda, &[1024]),
    ("orm-busy.trace.xz", Format::Cache2k, &[4096]),
    ("loop.trace.gz", Format::Lirs, &[512]),
    (
        "cloudPhysicsIO.oracleGeneral.bin",
        Format::OracleGeneral,
        &[256 << 20],
    ),
];

/// The sweep: every trace of the directory at every capacity its README
/// lists (../shared/traces/README.md); with the named cells, the cells
/// `bench cache` runs by default.
const SWEEP: &[(&str, Format, &[u64])] = &[
    ("2_pools.trace.gz", Format::Lirs, &[500, 1000, 2000]),
    ("cpp.trace.gz", Format::Lirs, &[100, 500]),
    ("cs.trace.gz", Format::Lirs, &[100, 500, 1000]),
    ("gli.trace.gz", Format::Lirs, &[250, 500, 1000, 1500, 2000]),
    ("loop.trace.gz", Format::Lirs, &[512, 1000]),
    ("multi1.trace.gz", Format::Lirs, &[500, 1000, 1500]),
    ("multi2.trace.gz", Format::Lirs, &[500, 1000, 2000, 3000]),
    ("multi3.trace.gz", Format::Lirs, &[500, 1000, 2000, 3000]),
    ("ps.trace.gz", Format::Lirs, &[500, 1000, 2000]),
    ("sprite.trace.gz", Format::Lirs, &[100, 500, 1000]),
    ("backf.trace.gz", Format::Lirs, &[100, 500]),
    ("scan.trace.gz", Format::Lirs, &[500, 1000, 1500]),
    ("zigzag.trace.gz", Format::Lirs, &[500, 1000, 1500]),
    ("OLTP.lis.zst", Format::Arc, &[250, 500, 1000, 2000, 8192]),
    ("orm-busy.trace.xz", Format::Cache2k, &[1024, 4096, 16384]),
    ("orm-night.trace.xz", Format::Cache2k, &[1024, 4096, 16384]),
    ("web07.trace.xz", Format::Cache2k, &[1024, 4096, 16384]),
    ("web12.trace.xz", Format::Cache2k, &[1024, 4096, 16384]),
    (
        "scarab-recs.trace.xz",
        Format::Scarab,
        &[1000, 10_000, 100_000],
    ),
    ("trace_vaultservice.gz", Format::Corda, &[1024]),
    (
        "cloudPhysicsIO.oracleGeneral.bin",
        Format::OracleGeneral,
        &[
            128 << 20,
            256 << 20,
            384 << 20,
            512 << 20,
            640 << 20,
            768 << 20,
            896 << 20,
            1024 << 20,
        ],
    ),
];

/// What the sweep says of each policy.
#[derive(Debug, Serialize)]
struct Sweep {
    /// Cells swept.
    cells: usize,
    /// The worst `botfleet − lru`, points, and its cell.
    worst_gap_to_lru: Gap,
    /// The worst `botfleet − max(moka, quick_cache)`, points, and its cell.
    worst_gap_to_best_peer: Gap,
    /// The mean hit ratio over the cells, per policy.
    mean: SweepMean,
    /// The run's time, seconds.
    took_s: f64,
}

#[derive(Debug, Serialize)]
struct Gap {
    points: f64,
    trace: String,
    capacity: u64,
}

#[derive(Debug, Serialize)]
struct SweepMean {
    botfleet: f64,
    moka: f64,
    quick_cache: f64,
    lru: f64,
    opt: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    peers: Peers,
    redis: Option<String>,
    hit_ratio: Vec<HitRatio>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep: Option<Sweep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<Speed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stampede: Option<Stampede>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cold_start: Option<ColdStart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalidation_ms: Option<Invalidation>,
}

#[derive(Debug, Serialize)]
struct Peers {
    moka: &'static str,
    quick_cache: &'static str,
}

#[derive(Debug, Serialize)]
struct HitRatio {
    trace: String,
    capacity: u64,
    policy: &'static str,
    hit_ratio: f64,
    requests: u64,
    /// The mean over `runs` (rounded down).
    hits: u64,
    /// Hits of each run: one per sketch seed for `botfleet`, `MOKA_RUNS`
    /// for moka, one for the deterministic others.
    runs: Vec<u64>,
}

impl HitRatio {
    fn range(&self) -> (f64, f64) {
        let ratio = |h: u64| 100.0 * h as f64 / self.requests.max(1) as f64;
        let min = self.runs.iter().copied().min().unwrap_or(0);
        let max = self.runs.iter().copied().max().unwrap_or(0);
        (ratio(min), ratio(max))
    }
}

#[derive(Debug, Serialize)]
struct Speed {
    l1_get_ns_raw: f64,
    l1_get_ns_tiered: f64,
    l1_get_ns_raw_2_threads: f64,
    l1_get_ns_tiered_2_threads: f64,
    l2_get_us_raw: f64,
    l2_get_us_tiered: f64,
    get_many_keys: usize,
    get_many_round_trips: u64,
    threads: usize,
}

#[derive(Debug, Serialize)]
struct Stampede {
    readers: usize,
    loader_calls: usize,
    processes: usize,
    loader_calls_across_processes: usize,
}

#[derive(Debug, Serialize)]
struct ColdStart {
    requests: usize,
    keys: u64,
    zipf: f64,
    loader_calls_cold: u64,
    loader_calls_warm: u64,
    l1_misses_cold: u64,
    l1_misses_warm: u64,
    warmed: u64,
}

#[derive(Debug, Serialize)]
struct Invalidation {
    p50: f64,
    p99: f64,
    max: f64,
    writes: usize,
}

struct Progress {
    quiet: bool,
}

impl Progress {
    fn say(&self, line: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// Runs `botfleet bench cache` (or its hidden worker role) and prints its report.
pub fn run(args: &CacheBench) -> anyhow::Result<std::process::ExitCode> {
    let progress = Progress { quiet: false };
    let cells: Vec<(PathBuf, String, Format, Vec<u64>)> = match (
        &args.trace,
        args.format,
        args.capacity,
    ) {
        (Some(path), Some(format), Some(capacity)) => {
            vec![(
                path.clone(),
                path.display().to_string(),
                format,
                vec![capacity],
            )]
        }
        _ => {
            let dir = args.traces.as_ref().with_context(|| {
                format!("the hit-ratio section needs the cache traces: pass --traces DIR or set {BOTFLEET_TRACES} (docs/benchmarks.md)")
            })?;
            // The named cells, and unless told not to every cell of the
            // sweep, each trace read once.
            let mut cells: Vec<(PathBuf, String, Format, Vec<u64>)> = CELLS
                .iter()
                .map(|(file, format, caps)| {
                    (dir.join(file), (*file).to_owned(), *format, caps.to_vec())
                })
                .collect();
            if !args.named_only {
                for (file, format, caps) in SWEEP {
                    match cells.iter_mut().find(|c| c.1 == *file) {
                        Some(cell) => {
                            for cap in *caps {
                                if !cell.3.contains(cap) {
                                    cell.3.push(*cap);
                                }
                            }
                            cell.3.sort_unstable();
                        }
                        None => {
                            cells.push((dir.join(file), (*file).to_owned(), *format, caps.to_vec()))
                        }
                    }
                }
            }
            cells
        }
    };
    let started = Instant::now();
    let mut hit_ratio = Vec::new();
    let total: usize = cells.iter().map(|c| c.3.len()).sum();
    let mut done = 0;
    for (path, name, format, capacities) in &cells {
        let trace = sim::read(path, *format)
            .with_context(|| format!("cannot read the trace {}", path.display()))?;
        for &capacity in capacities {
            done += 1;
            progress.say(&format!(
                "[hit ratio {done}/{total}] {name} at {capacity} ..."
            ));
            hit_ratio.extend(hit_ratio_cell(name, &trace, *format, capacity));
        }
    }

    let single_cell = args.trace.is_some();
    let sweep = (!single_cell && !args.named_only).then(|| sweep(&hit_ratio, started));
    let mut report = Report {
        machine: Machine::current(),
        peers: Peers {
            moka: MOKA_VERSION,
            quick_cache: QUICK_CACHE_VERSION,
        },
        redis: None,
        hit_ratio,
        sweep,
        speed: None,
        stampede: None,
        cold_start: None,
        invalidation_ms: None,
    };
    if !single_cell && !args.hit_ratio_only {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(l2_sections(args, &progress, &mut report))?;
    }

    super::output(args.json, &report, print_table)
}

/// The sweep's summary over `cells` (five policies per cell): the sweep's
/// cells and the named ones.
fn sweep(cells: &[HitRatio], started: Instant) -> Sweep {
    let get = |cell: &[HitRatio], p: &str| {
        cell.iter()
            .find(|c| c.policy == p)
            .map_or(0.0, |c| c.hit_ratio)
    };
    let swept: Vec<&[HitRatio]> = cells.chunks(5).collect();
    let n = swept.len().max(1) as f64;
    let mean = |p: &str| round2(swept.iter().map(|c| get(c, p)).sum::<f64>() / n);
    let worst = |gap: &dyn Fn(&[HitRatio]) -> f64| {
        swept
            .iter()
            .map(|c| (gap(c), *c))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(
                Gap {
                    points: 0.0,
                    trace: String::new(),
                    capacity: 0,
                },
                |(points, c)| Gap {
                    points: round2(points),
                    trace: c[0].trace.clone(),
                    capacity: c[0].capacity,
                },
            )
    };
    Sweep {
        cells: swept.len(),
        worst_gap_to_lru: worst(&|c| get(c, "botfleet") - get(c, "lru")),
        worst_gap_to_best_peer: worst(&|c| {
            get(c, "botfleet") - get(c, "moka").max(get(c, "quick_cache"))
        }),
        mean: SweepMean {
            botfleet: mean("botfleet"),
            moka: mean("moka"),
            quick_cache: mean("quick_cache"),
            lru: mean("lru"),
            opt: mean("opt"),
        },
        took_s: round2(started.elapsed().as_secs_f64()),
    }
}

fn hit_ratio_cell(name: &str, trace: &[Request], format: Format, capacity: u64) -> Vec<HitRatio> {
    let requests = trace.len() as u64;
    let expected = if format.is_weighted() {
        let mean = trace.iter().map(|r| r.weight).sum::<u64>() / requests.max(1);
        (capacity / mean.max(1)) as usize
    } else {
        capacity as usize
    };
    // Our policy seeds its sketch hashing and moka is not deterministic:
    // report the mean of several runs, never a lucky one, and keep each.
    let ours = SEEDS
        .iter()
        .map(|&seed| {
            sim::replay(
                &mut PolicySim::new(WTinyLfu::with_seed(capacity, expected, seed)),
                trace,
            )
        })
        .collect();
    let moka = (0..MOKA_RUNS)
        .map(|_| sim::replay(&mut Moka::new(capacity, format.is_weighted()), trace))
        .collect();
    let runs: Vec<(&'static str, Vec<u64>)> = vec![
        ("botfleet", ours),
        ("moka", moka),
        (
            "quick_cache",
            vec![sim::replay(&mut QuickCache::new(capacity, expected), trace)],
        ),
        (
            "lru",
            vec![sim::replay(&mut PolicySim::new(Lru::new(capacity)), trace)],
        ),
        ("opt", vec![sim::belady_hits(trace, capacity)]),
    ];
    runs.into_iter()
        .map(|(policy, runs)| {
            let hits = runs.iter().sum::<u64>() / runs.len() as u64;
            HitRatio {
                trace: name.to_owned(),
                capacity,
                policy,
                hit_ratio: round2(100.0 * hits as f64 / requests.max(1) as f64),
                requests,
                hits,
                runs,
            }
        })
        .collect()
}

async fn l2_sections(
    args: &CacheBench,
    progress: &Progress,
    report: &mut Report,
) -> anyhow::Result<()> {
    // Keep a started server alive for the whole run.
    let (url, _server) = match &args.redis_url {
        Some(url) => (url.clone(), None),
        None => {
            progress.say("[redis] starting a Redis server ...");
            let server = tokio::task::spawn_blocking(botfleet_testkit::RedisServer::start)
                .await?
                .context("cannot start Redis for the L2 benchmarks (or pass --redis-url)")?;
            (server.url(), Some(server))
        }
    };
    report.redis = Some(match &args.redis_url {
        Some(_) => botfleet_config::redact_url(&url),
        None => format!("started by botfleet-testkit ({url})"),
    });
    let namespace = format!("bench{}", std::process::id());
    progress.say("[speed] L1 and L2 gets ...");
    report.speed = Some(speed(&url, &namespace).await?);
    progress.say("[stampede] 1,000 readers of one cold key ...");
    report.stampede = Some(stampede(&url, &namespace).await?);
    progress.say("[cold start] Zipf(0.99) over 100,000 keys ...");
    report.cold_start = Some(cold_start(&url, &namespace).await?);
    progress.say("[invalidation] 1,000 writes between two processes ...");
    report.invalidation_ms = Some(invalidation(&url, &namespace).await?);
    Ok(())
}

fn redis(url: &str) -> anyhow::Result<Redis> {
    Redis::new(url).context("invalid Redis URL")
}

/// Nanoseconds per call of `get` over `keys`, repeated `rounds` times, on
/// `threads` threads at once (the mean of the threads).
fn ns_per_get(
    threads: usize,
    rounds: usize,
    keys: &Arc<Vec<u64>>,
    get: Arc<dyn Fn(u64) -> bool + Send + Sync>,
) -> f64 {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let keys = Arc::clone(keys);
            let get = Arc::clone(&get);
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut found = 0usize;
                for _ in 0..rounds {
                    for &k in keys.iter() {
                        found += usize::from(get(k));
                    }
                }
                let elapsed = started.elapsed();
                assert!(found > 0);
                elapsed.as_nanos() as f64 / (rounds * keys.len()) as f64
            })
        })
        .collect();
    let per: Vec<f64> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    per.iter().sum::<f64>() / per.len().max(1) as f64
}

async fn speed(url: &str, namespace: &str) -> anyhow::Result<Speed> {
    // L1: the raw store and the tiered API over it, same keys, same size.
    let keys: Arc<Vec<u64>> = Arc::new(
        (0..10_000u64)
            .map(|i| i.wrapping_mul(2_654_435_761) % 10_000)
            .collect(),
    );
    let raw: Arc<L1<u64, u64>> = Arc::new(L1::new(20_000, None));
    let until = Instant::now() + Duration::from_secs(3600);
    for k in 0..10_000u64 {
        raw.insert(k, Cached::Value(k), until);
    }
    let tiered: TieredCache<u64, u64> = TieredCache::builder("speed").capacity(20_000).build();
    for k in 0..10_000u64 {
        tiered.set(k, k).await?;
    }
    let raw_get: Arc<dyn Fn(u64) -> bool + Send + Sync> = {
        let raw = Arc::clone(&raw);
        Arc::new(move |k| raw.get(&k, Instant::now()).is_some())
    };
    let tiered_get: Arc<dyn Fn(u64) -> bool + Send + Sync> = {
        let tiered = tiered.clone();
        Arc::new(move |k| tiered.get(&k).is_some())
    };
    let rounds = 100;
    // Alternate, so drift of a shared machine hits both sides alike.
    let (mut raw1, mut tiered1, mut raw2, mut tiered2) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        raw1.push(ns_per_get(1, rounds, &keys, Arc::clone(&raw_get)));
        tiered1.push(ns_per_get(1, rounds, &keys, Arc::clone(&tiered_get)));
        raw2.push(ns_per_get(2, rounds, &keys, Arc::clone(&raw_get)));
        tiered2.push(ns_per_get(2, rounds, &keys, Arc::clone(&tiered_get)));
    }

    // L2: a raw GET against the tiered read of a value only Redis has.
    let handle = redis(url)?;
    let l2: TieredCache<u64, String> = TieredCache::builder(format!("{namespace}-l2"))
        .redis(handle.clone())
        .capacity(1)
        .build();
    let value = "x".repeat(100);
    for k in 0..1000u64 {
        l2.set(k, value.clone()).await?;
    }
    let client = redis::Client::open(url).context("invalid Redis URL")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let (mut raw_us, mut tiered_us) = (Vec::new(), Vec::new());
    let never = || async { Ok::<Option<String>, std::io::Error>(None) };
    for i in 0..2000u64 {
        let k = (i * 7919) % 1000;
        let started = Instant::now();
        let _: Option<Vec<u8>> = redis::cmd("GET")
            .arg(l2.redis_key(&k))
            .query_async(&mut conn)
            .await?;
        raw_us.push(started.elapsed().as_secs_f64() * 1e6);
        let k2 = (k + 500) % 1000;
        let started = Instant::now();
        let got = l2.get_or_load(&k2, never).await?;
        tiered_us.push(started.elapsed().as_secs_f64() * 1e6);
        if got.is_none() {
            bail!("the L2 benchmark read a key Redis did not have");
        }
    }
    let many: Vec<u64> = (0..100).collect();
    let cold: TieredCache<u64, String> = TieredCache::builder(format!("{namespace}-l2"))
        .redis(handle.clone())
        .build();
    let before = handle.round_trips();
    cold.get_many(&many, |_| async {
        Ok::<_, std::io::Error>(std::collections::HashMap::new())
    })
    .await?;
    let get_many_round_trips = handle.round_trips() - before;
    Ok(Speed {
        l1_get_ns_raw: round2(quantile(&raw1, 0.5)),
        l1_get_ns_tiered: round2(quantile(&tiered1, 0.5)),
        l1_get_ns_raw_2_threads: round2(quantile(&raw2, 0.5)),
        l1_get_ns_tiered_2_threads: round2(quantile(&tiered2, 0.5)),
        l2_get_us_raw: round2(quantile(&raw_us, 0.5)),
        l2_get_us_tiered: round2(quantile(&tiered_us, 0.5)),
        get_many_keys: many.len(),
        get_many_round_trips,
        threads: 2,
    })
}

async fn stampede(url: &str, namespace: &str) -> anyhow::Result<Stampede> {
    let readers = 1000;
    let calls = Arc::new(AtomicUsize::new(0));
    let cache: TieredCache<u64, u64> =
        TieredCache::builder(format!("{namespace}-stampede")).build();
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (cache, calls) = (cache.clone(), Arc::clone(&calls));
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&1, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(Some(1))
                })
                .await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let loader_calls = calls.load(Ordering::SeqCst);

    let processes = 4;
    let across = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..processes {
        let cache: TieredCache<u64, u64> = TieredCache::builder(format!("{namespace}-stampede"))
            .redis(redis(url)?)
            .lease(Duration::from_secs(5))
            .build();
        for _ in 0..readers / processes {
            let (cache, across) = (cache.clone(), Arc::clone(&across));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(&2, || async move {
                        across.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, std::io::Error>(Some(2))
                    })
                    .await
            }));
        }
    }
    for task in tasks {
        task.await??;
    }
    Ok(Stampede {
        readers,
        loader_calls,
        processes,
        loader_calls_across_processes: across.load(Ordering::SeqCst),
    })
}

/// Zipf(s) over 1..=n by inversion of the exact CDF.
struct Zipf {
    cdf: Vec<f64>,
    rng: fastrand::Rng,
}

impl Zipf {
    fn new(n: u64, s: f64, seed: u64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf {
            cdf,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn next(&mut self) -> u64 {
        let u = self.rng.f64();
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

async fn cold_start(url: &str, namespace: &str) -> anyhow::Result<ColdStart> {
    let keys = 100_000;
    let requests = 10_000;
    let build = |redis: Redis, ns: &str| -> TieredCache<u64, u64> {
        TieredCache::builder(ns.to_owned())
            .redis(redis)
            .capacity(10_000)
            .warming(5_000)
            .build()
    };
    let load = |k: u64| async move { Ok::<_, std::io::Error>(Some(k)) };
    // Two identical histories in two namespaces, so both restarts begin
    // from the same Redis: a worker ran 100,000 requests and saved its hot
    // set.
    let (cold_ns, warm_ns) = (format!("{namespace}-cold"), format!("{namespace}-warm"));
    for ns in [&cold_ns, &warm_ns] {
        let before = build(redis(url)?, ns);
        let mut zipf = Zipf::new(keys, 0.99, 7);
        for _ in 0..100_000 {
            let k = zipf.next();
            before.get_or_load(&k, || load(k)).await?;
        }
        before.persist_hot_set().await;
    }
    // Restarted: the same next 10,000 requests, without and with warming.
    let mut results = Vec::new();
    for (ns, warm) in [(&cold_ns, false), (&warm_ns, true)] {
        let cache = build(redis(url)?, ns);
        let warmed = if warm { cache.warm().await as u64 } else { 0 };
        let mut zipf = Zipf::new(keys, 0.99, 11);
        for _ in 0..requests {
            let k = zipf.next();
            cache.get_or_load(&k, || load(k)).await?;
        }
        results.push((cache.stats(), warmed));
    }
    let (cold, _) = results[0];
    let (warm, warmed) = results[1];
    Ok(ColdStart {
        requests,
        keys,
        zipf: 0.99,
        loader_calls_cold: cold.loads,
        loader_calls_warm: warm.loads,
        l1_misses_cold: cold.l1_misses,
        l1_misses_warm: warm.l1_misses,
        warmed,
    })
}

async fn invalidation(url: &str, namespace: &str) -> anyhow::Result<Invalidation> {
    let ns = format!("{namespace}-inv");
    let (redis_a, redis_b) = (redis(url)?, redis(url)?);
    let a: TieredCache<u64, u64> = TieredCache::builder(ns.clone())
        .redis(redis_a.clone())
        .build();
    let b: TieredCache<u64, u64> = TieredCache::builder(ns).redis(redis_b.clone()).build();
    if !redis_b.wait_subscribed(Duration::from_secs(10)).await {
        bail!("the invalidation subscriber did not connect to Redis within 10 s");
    }
    let writes = 1000;
    let mut delays = Vec::with_capacity(writes);
    let load_none = || async { Ok::<Option<u64>, std::io::Error>(None) };
    a.set(0, 0).await?;
    for i in 1..=writes as u64 {
        // B holds the old value in L1.
        b.get_or_load(&0, load_none).await?;
        let started = Instant::now();
        a.set(0, i).await?;
        let deadline = started + Duration::from_secs(5);
        while b.get(&0) == Some(Some(i - 1)) {
            if Instant::now() > deadline {
                bail!("process B still served the old value 5 s after the write");
            }
            tokio::task::yield_now().await;
        }
        delays.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Invalidation {
        p50: round3(quantile(&delays, 0.5)),
        p99: round3(quantile(&delays, 0.99)),
        max: round3(quantile(&delays, 1.0)),
        writes,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn print_table(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; peers: moka {}, quick_cache {}",
        r.machine.cores, r.machine.memory_mib, r.peers.moka, r.peers.quick_cache
    )?;
    writeln!(out, "\nhit ratio (%)")?;
    writeln!(
        out,
        "{:<34} {:>10} {:>9} {:>9} {:>11} {:>9} {:>9}",
        "trace", "capacity", "botfleet", "moka", "quick_cache", "lru", "opt"
    )?;
    for cell in r.hit_ratio.chunks(5) {
        let get = |p: &str| {
            cell.iter()
                .find(|c| c.policy == p)
                .map_or(0.0, |c| c.hit_ratio)
        };
        writeln!(
            out,
            "{:<34} {:>10} {:>9.2} {:>9.2} {:>11.2} {:>9.2} {:>9.2}",
            cell[0].trace,
            cell[0].capacity,
            get("botfleet"),
            get("moka"),
            get("quick_cache"),
            get("lru"),
            get("opt")
        )?;
    }
    writeln!(
        out,
        "botfleet: mean of {} sketch seeds; moka: mean of {MOKA_RUNS} runs (not deterministic)",
        SEEDS.len()
    )?;
    if let Some(sw) = &r.sweep {
        writeln!(
            out,
            "sweep over {} cells ({:.0} s): mean botfleet {:.2}, moka {:.2}, quick_cache {:.2}, lru {:.2}, opt {:.2}",
            sw.cells,
            sw.took_s,
            sw.mean.botfleet,
            sw.mean.moka,
            sw.mean.quick_cache,
            sw.mean.lru,
            sw.mean.opt
        )?;
        writeln!(
            out,
            "  worst against LRU: {:+.2} points ({} at {}); worst against the best peer: {:+.2} points ({} at {})",
            sw.worst_gap_to_lru.points,
            sw.worst_gap_to_lru.trace,
            sw.worst_gap_to_lru.capacity,
            sw.worst_gap_to_best_peer.points,
            sw.worst_gap_to_best_peer.trace,
            sw.worst_gap_to_best_peer.capacity
        )?;
    }
    for c in r.hit_ratio.iter().filter(|c| c.runs.len() > 1) {
        let (min, max) = c.range();
        if max - min >= 0.1 {
            writeln!(
                out,
                "  {} runs on {} at {}: {min:.2} to {max:.2}",
                c.policy, c.trace, c.capacity
            )?;
        }
    }
    if let Some(s) = &r.speed {
        writeln!(out, "\nspeed (median of alternating runs)")?;
        writeln!(
            out,
            "  L1 get, 1 thread:   raw {:.1} ns, tiered {:.1} ns",
            s.l1_get_ns_raw, s.l1_get_ns_tiered
        )?;
        writeln!(
            out,
            "  L1 get, 2 threads:  raw {:.1} ns, tiered {:.1} ns",
            s.l1_get_ns_raw_2_threads, s.l1_get_ns_tiered_2_threads
        )?;
        writeln!(
            out,
            "  L2 get:             raw GET {:.1} us, tiered {:.1} us",
            s.l2_get_us_raw, s.l2_get_us_tiered
        )?;
        writeln!(
            out,
            "  get_many of {} keys: {} round trip(s)",
            s.get_many_keys, s.get_many_round_trips
        )?;
    }
    if let Some(s) = &r.stampede {
        writeln!(
            out,
            "\nstampede: {} readers of one cold key -> {} loader call(s); {} processes with the lease -> {}",
            s.readers, s.loader_calls, s.processes, s.loader_calls_across_processes
        )?;
    }
    if let Some(c) = &r.cold_start {
        writeln!(
            out,
            "\ncold start: first {} requests of Zipf({}) over {} keys after a restart",
            c.requests, c.zipf, c.keys
        )?;
        writeln!(
            out,
            "  without warming: {} loader calls, {} L1 misses",
            c.loader_calls_cold, c.l1_misses_cold
        )?;
        writeln!(
            out,
            "  with warming ({} keys): {} loader calls, {} L1 misses",
            c.warmed, c.loader_calls_warm, c.l1_misses_warm
        )?;
    }
    if let Some(i) = &r.invalidation_ms {
        writeln!(
            out,
            "\ninvalidation delay over {} writes: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            i.writes, i.p50, i.p99, i.max
        )?;
    }
    if let Some(redis) = &r.redis {
        writeln!(out, "\nRedis: {redis}")?;
    }
    Ok(())
}

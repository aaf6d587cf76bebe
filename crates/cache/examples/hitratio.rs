//! Scratch driver: hit ratios of our policy, LRU, OPT, moka and quick_cache.
//! `cargo run --release -p botfleet-cache --features sim --example hitratio -- TRACES_DIR`

use std::io::Write;
use std::path::Path;

use botfleet_cache::policy::{Lru, WTinyLfu};
use botfleet_cache::sim::{Format, PolicySim, Request, Simulated, belady_hits, read, replay};

/// A peer library as a read-through cache: a lookup, and an insert on miss.
trait ReadThrough {
    fn get(&mut self, key: u64) -> bool;
    fn insert(&mut self, key: u64, weight: u64);
}

struct Peer<C>(C);

impl<C: ReadThrough> Simulated for Peer<C> {
    fn access(&mut self, r: Request) -> bool {
        let hit = self.0.get(r.key);
        if !hit {
            self.0.insert(r.key, r.weight);
        }
        hit
    }
}

impl ReadThrough for moka::sync::Cache<u64, u32> {
    fn get(&mut self, key: u64) -> bool {
        moka::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&mut self, key: u64, weight: u64) {
        moka::sync::Cache::insert(self, key, weight as u32);
    }
}

#[derive(Clone)]
struct W;
impl quick_cache::Weighter<u64, u64> for W {
    fn weight(&self, _k: &u64, w: &u64) -> u64 {
        *w
    }
}

impl ReadThrough for quick_cache::unsync::Cache<u64, u64, W> {
    fn get(&mut self, key: u64) -> bool {
        quick_cache::unsync::Cache::get(self, &key).is_some()
    }
    fn insert(&mut self, key: u64, weight: u64) {
        quick_cache::unsync::Cache::insert(self, key, weight);
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("traces dir");
    let cells: &[(&str, Format, &[u64])] = &[
        ("OLTP.lis.zst", Format::Arc, &[250, 1000, 2000]),
        ("multi3.trace.gz", Format::Lirs, &[1000]),
        ("gli.trace.gz", Format::Lirs, &[1000]),
        ("sprite.trace.gz", Format::Lirs, &[500]),
        ("scarab-recs.trace.xz", Format::Scarab, &[10000, 50000]),
        ("trace_vaultservice.gz", Format::Corda, &[1024]),
        ("orm-busy.trace.xz", Format::Cache2k, &[4096]),
        ("loop.trace.gz", Format::Lirs, &[512]),
        (
            "cloudPhysicsIO.oracleGeneral.bin",
            Format::OracleGeneral,
            &[128 << 20, 256 << 20],
        ),
    ];
    let only = std::env::args().nth(2);
    let mut out = std::io::stdout().lock();
    for (file, format, caps) in cells {
        if only.as_deref().is_some_and(|o| !file.contains(o)) {
            continue;
        }
        let trace = read(&Path::new(&dir).join(file), *format).unwrap();
        for &cap in *caps {
            let n = trace.len() as f64;
            let pct = |h: u64| 100.0 * h as f64 / n;
            // Weighted traces: size the sketch by the mean object size.
            let mean = trace.iter().map(|r| r.weight).sum::<u64>() / trace.len().max(1) as u64;
            let expected = (cap / mean.max(1)) as usize;
            let mut sim = PolicySim::new(WTinyLfu::with_seed(cap, expected, 1));
            let ours = pct(replay(&mut sim, &trace));
            let window = sim.policy().window_capacity();
            let lru = pct(replay(&mut PolicySim::new(Lru::new(cap)), &trace));
            let opt = pct(belady_hits(&trace, cap));
            let moka = pct(replay(
                &mut Peer(
                    moka::sync::Cache::builder()
                        .max_capacity(cap)
                        .weigher(|_k: &u64, w: &u32| *w)
                        .build(),
                ),
                &trace,
            ));
            let qc = pct(replay(
                &mut Peer(quick_cache::unsync::Cache::with_weighter(expected, cap, W)),
                &trace,
            ));
            writeln!(
                out,
                "{file:<24} {cap:>6}  w {window:>6} ours {ours:6.2}  moka {moka:6.2}  qc {qc:6.2}  lru {lru:6.2}  opt {opt:6.2}"
            )
            .unwrap();
        }
    }
}

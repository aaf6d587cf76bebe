//! The read-through API in one process: loads, TTL, negative caching,
//! single-flight, bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use botfleet_cache::{Error, TieredCache};

type Cache = TieredCache<u64, String>;

fn cache() -> Cache {
    TieredCache::builder("profiles")
        .ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(5))
        .jitter(0.0)
        .build()
}

/// A loader that counts its calls and answers `name-<key>`, or nothing for
/// keys above 1000.
fn counting(
    calls: &Arc<AtomicUsize>,
    key: u64,
) -> impl Future<Output = Result<Option<String>, std::io::Error>> + use<> {
    let calls = Arc::clone(calls);
    async move {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok((key <= 1000).then(|| format!("name-{key}")))
    }
}

#[tokio::test(start_paused = true)]
async fn read_through_loads_once_then_serves_from_memory() {
    let cache = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let v = cache.get_or_load(&1, || counting(&calls, 1)).await.unwrap();
        assert_eq!(v.as_deref(), Some("name-1"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.l1_hits, stats.l1_misses), (1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn values_expire_after_their_ttl() {
    let cache = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    cache.get_or_load(&1, || counting(&calls, 1)).await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    cache.get_or_load(&1, || counting(&calls, 1)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "still fresh at 59 s");
    tokio::time::advance(Duration::from_secs(2)).await;
    cache.get_or_load(&1, || counting(&calls, 1)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "reloaded after 61 s");
    assert_eq!(cache.stats().expirations, 1);

    cache
        .set_with_ttl(2, "short".into(), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(cache.get(&2), Some(Some("short".into())));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(cache.get(&2), None);
}

#[tokio::test(start_paused = true)]
async fn not_found_is_remembered_for_the_negative_ttl() {
    let cache = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        assert_eq!(
            cache
                .get_or_load(&5000, || counting(&calls, 5000))
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().negative_hits, 2);
    tokio::time::advance(Duration::from_secs(6)).await;
    cache
        .get_or_load(&5000, || counting(&calls, 5000))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "absence forgotten after 5 s"
    );

    let no_negative: Cache = TieredCache::builder("x")
        .negative_ttl(Duration::ZERO)
        .build();
    no_negative
        .get_or_load(&5000, || counting(&calls, 5000))
        .await
        .unwrap();
    no_negative
        .get_or_load(&5000, || counting(&calls, 5000))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_misses_call_the_loader_once() {
    let cache = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let cache = cache.clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&7, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, std::io::Error>(Some("seven".to_owned()))
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().as_deref(), Some("seven"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().single_flight_waits, 999);
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_reaches_every_waiter_and_is_not_cached() {
    let cache = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let cache = cache.clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(&3, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err::<Option<String>, _>(std::io::Error::other("database is down"))
                })
                .await
        }));
    }
    for task in tasks {
        let error = task.await.unwrap().unwrap_err();
        assert!(matches!(error, Error::Load { .. }));
        assert_eq!(
            error.to_string(),
            "loading profiles:3 failed: database is down"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().load_errors, 1);
    // Not cached: the next call loads again, and succeeds.
    let v = cache.get_or_load(&3, || counting(&calls, 3)).await.unwrap();
    assert_eq!(v.as_deref(), Some("name-3"));
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_expiry_of_a_batch() {
    let cache: Cache = TieredCache::builder("batch")
        .ttl(Duration::from_secs(100))
        .jitter(0.2)
        .build();
    for k in 0..1000 {
        cache.set(k, "v".into()).await.unwrap();
    }
    // Jitter takes up to 20 s off each TTL: at 90 s about half are gone,
    // none expire before 80 s and all are gone at 100 s.
    tokio::time::advance(Duration::from_millis(79_900)).await;
    assert_eq!((0..1000).filter(|k| cache.get(k).is_some()).count(), 1000);
    tokio::time::advance(Duration::from_secs(10)).await;
    let alive = (0..1000).filter(|k| cache.get(k).is_some()).count();
    assert!((300..700).contains(&alive), "{alive} of 1000 alive at 90 s");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!((0..1000).filter(|k| cache.get(k).is_some()).count(), 0);
}

#[tokio::test(start_paused = true)]
async fn set_invalidate_and_bounds() {
    let cache: Cache = TieredCache::builder("bounded").capacity(100).build();
    for k in 0..10_000 {
        cache.set(k, format!("{k}")).await.unwrap();
    }
    let stats = cache.stats();
    assert!(stats.l1_entries <= 100, "{stats:?}");
    assert!(stats.evictions > 0);
    cache.set(1, "one".into()).await.unwrap();
    cache.set(2, "two".into()).await.unwrap();
    cache.invalidate(&1).await;
    cache.invalidate_many(&[2]).await;
    assert_eq!((cache.get(&1), cache.get(&2)), (None, None));

    let by_bytes: Cache = TieredCache::builder("bytes")
        .capacity(1000)
        .weigher(|_, v: &String| v.len() as u64)
        .build();
    for k in 0..100 {
        by_bytes.set(k, "x".repeat(50)).await.unwrap();
    }
    assert!(by_bytes.stats().l1_entries <= 20);
}

#[tokio::test(start_paused = true)]
async fn tags_work_without_redis_too() {
    let cache: TieredCache<u64, String> = TieredCache::builder("local")
        .tags(|_, v: &String| vec![format!("owner:{}", v.split(':').next().unwrap_or(""))])
        .build();
    cache.set(1, "ann:bio".into()).await.unwrap();
    cache.set(2, "ann:photo".into()).await.unwrap();
    cache.set(3, "bob:bio".into()).await.unwrap();
    let loaded = cache
        .get_many(&[4], |_| async {
            Ok::<_, std::io::Error>([(4, "ann:city".to_owned())].into())
        })
        .await
        .unwrap();
    assert_eq!(loaded, vec![Some("ann:city".to_owned())]);
    cache.invalidate_tag("owner:ann").await;
    assert_eq!(
        (cache.get(&1), cache.get(&2), cache.get(&4)),
        (None, None, None)
    );
    assert_eq!(cache.get(&3), Some(Some("bob:bio".into())));
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_keeps_hot_keys_from_expiring_under_readers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cache = TieredCache::<u64, String>::builder("hot")
        .ttl(Duration::from_secs(100))
        .jitter(0.0)
        .refresh_ahead(0.2)
        .build()
        .with_loader(move |key| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(Some(format!("{key} v{n}"))) }
        });
    assert_eq!(cache.get(&1).await.unwrap().as_deref(), Some("1 v0"));
    // Before the last 20 % of the TTL: a plain hit.
    tokio::time::advance(Duration::from_secs(70)).await;
    assert_eq!(cache.get(&1).await.unwrap().as_deref(), Some("1 v0"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // In the last 20 %: the old value at once, a reload in the background.
    tokio::time::advance(Duration::from_secs(15)).await;
    assert_eq!(cache.get(&1).await.unwrap().as_deref(), Some("1 v0"));
    assert_eq!(
        cache.get(&1).await.unwrap().as_deref(),
        Some("1 v0"),
        "one refresh at a time"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().refreshes, 1);
    // Past the original expiry (100 s), readers never waited on a load.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(cache.get(&1).await.unwrap().as_deref(), Some("1 v1"));
    assert_eq!(
        cache.stats().loads,
        1,
        "only the first read loaded in the foreground"
    );

    let many = cache.get_many(&[1, 2, 3]).await.unwrap();
    assert_eq!(many[0].as_deref(), Some("1 v1"));
    assert!(many[1].is_some() && many[2].is_some());
}

#[tokio::test(start_paused = true)]
async fn counters_reach_the_metrics_recorder_with_bounded_labels() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let cache: Cache = TieredCache::builder("profiles").bot("dating").build();
    let calls = Arc::new(AtomicUsize::new(0));
    cache.get_or_load(&1, || counting(&calls, 1)).await.unwrap();
    cache.get_or_load(&1, || counting(&calls, 1)).await.unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || cache.report_metrics());
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, tier: Option<&str>| {
        snapshot.iter().find_map(|(key, _, _, value)| {
            let k = key.key();
            let labels: Vec<(String, String)> = k
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let tier_ok = tier.is_none_or(|t| labels.contains(&("tier".into(), t.into())));
            (k.name() == name && tier_ok).then(|| format!("{value:?}"))
        })
    };
    let one = Some(format!("{:?}", DebugValue::Counter(1)));
    assert_eq!(value("botfleet_cache_hits_total", Some("l1")), one);
    assert_eq!(value("botfleet_cache_misses_total", Some("l1")), one);
    assert_eq!(value("botfleet_cache_loads_total", None), one);
    for (key, _, _, _) in &snapshot {
        let k = key.key();
        assert!(k.name().starts_with("botfleet_cache_"), "{}", k.name());
        for label in k.labels() {
            assert!(
                ["bot", "namespace", "tier"].contains(&label.key()),
                "label {}",
                label.key()
            );
        }
    }
}

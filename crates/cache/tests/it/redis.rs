//! The Redis tier against a real Redis from the testkit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use botfleet_cache::{Error, Redis, TieredCache};
use botfleet_testkit::{RedisServer, TestRedis};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

type Cache = TieredCache<u64, Profile>;

fn profile(id: u64) -> Profile {
    Profile {
        id,
        name: format!("user-{id}"),
    }
}

fn cache(redis: &Redis, bot: &str) -> Cache {
    TieredCache::builder("profiles")
        .bot(bot)
        .redis(redis.clone())
        .ttl(Duration::from_secs(60))
        .build()
}

async fn isolated() -> TestRedis {
    tokio::task::spawn_blocking(|| botfleet_testkit::redis().unwrap())
        .await
        .unwrap()
}

/// Loads counted per call.
async fn load(calls: &AtomicUsize, id: u64) -> Result<Option<Profile>, std::io::Error> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(Some(profile(id)))
}

#[tokio::test]
async fn a_value_loaded_by_one_process_is_found_by_another() {
    let server = isolated().await;
    let redis = Redis::new(server.url()).unwrap();
    // Two caches with their own L1, as two worker processes would have.
    let a = cache(&redis, server.prefix());
    let b = cache(&Redis::new(server.url()).unwrap(), server.prefix());
    let calls = AtomicUsize::new(0);
    assert_eq!(
        a.get_or_load(&1, || load(&calls, 1)).await.unwrap(),
        Some(profile(1))
    );
    assert_eq!(
        b.get_or_load(&1, || load(&calls, 1)).await.unwrap(),
        Some(profile(1))
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second process read L2"
    );
    assert_eq!((a.stats().l2_misses, b.stats().l2_hits), (1, 1));

    // The key in Redis is prefixed and expires with the TTL.
    let mut conn = server.connect().unwrap();
    let key = a.redis_key(&1);
    assert_eq!(key, format!("bf:{}:profiles:1", server.prefix()));
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    assert!((50_000..=60_000).contains(&pttl), "PTTL {pttl}");

    // Absences are shared too.
    let none = || async { Ok::<_, std::io::Error>(None) };
    assert_eq!(a.get_or_load(&99, none).await.unwrap(), None);
    let from_redis = b
        .get_or_load(&99, || async {
            panic!("must come from Redis");
            #[allow(unreachable_code, reason = "gives the loader its type")]
            Ok::<_, std::io::Error>(None)
        })
        .await;
    assert_eq!(from_redis.unwrap(), None);

    // Invalidation removes it from Redis.
    a.invalidate(&1).await;
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(&key)
            .query::<i64>(&mut conn)
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn corrupt_bytes_in_redis_are_a_counted_miss_and_get_overwritten() {
    let server = isolated().await;
    let redis = Redis::new(server.url()).unwrap();
    let cache = cache(&redis, server.prefix());
    let mut conn = server.connect().unwrap();
    let key = cache.redis_key(&5);
    for garbage in ["not ours", "\u{bf}\u{1}", ""] {
        redis::cmd("SET")
            .arg(&key)
            .arg(garbage)
            .query::<()>(&mut conn)
            .unwrap();
        let calls = AtomicUsize::new(0);
        let fresh = TieredCache::builder("profiles")
            .bot(server.prefix())
            .redis(redis.clone())
            .build();
        assert_eq!(
            fresh.get_or_load(&5, || load(&calls, 5)).await.unwrap(),
            Some(profile(5))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(fresh.stats().l2_corrupt, 1, "{garbage:?}");
        let stored: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_ne!(stored.as_deref(), Some(garbage.as_bytes()), "overwritten");
    }
    // The overwritten value is now served from Redis.
    let again: Cache = TieredCache::builder("profiles")
        .bot(server.prefix())
        .redis(redis)
        .build();
    let calls = AtomicUsize::new(0);
    again.get_or_load(&5, || load(&calls, 5)).await.unwrap();
    assert_eq!(
        (calls.load(Ordering::SeqCst), again.stats().l2_hits),
        (0, 1)
    );
}

#[tokio::test]
async fn values_over_the_maximum_are_refused_with_a_clear_error() {
    let server = isolated().await;
    let cache: TieredCache<u64, String> = TieredCache::builder("bios")
        .bot(server.prefix())
        .redis(Redis::new(server.url()).unwrap())
        .max_value_bytes(100)
        .build();
    let error = cache.set(1, "x".repeat(200)).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::TooLarge {
                size: 204,
                max: 100,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "bios:1: value of 204 bytes is larger than the maximum of 100 bytes (raise `max_value_bytes` or cache less)"
    );
    let loaded = cache
        .get_or_load(&2, || async {
            Ok::<_, std::io::Error>(Some("y".repeat(500)))
        })
        .await;
    assert!(matches!(loaded, Err(Error::TooLarge { .. })));
    assert_eq!(cache.get(&1), None, "nothing cached");
    cache.set(3, "small".into()).await.unwrap();
}

#[tokio::test]
async fn a_dead_redis_degrades_and_recovery_clears_l1() {
    let server = tokio::task::spawn_blocking(|| RedisServer::start().unwrap())
        .await
        .unwrap();
    let server = Arc::new(server);
    let redis = Redis::with_options(
        &server.url(),
        Duration::from_millis(200),
        Duration::from_millis(300),
    )
    .unwrap();
    let cache = cache(&redis, "chaos");
    let calls = AtomicUsize::new(0);
    cache.get_or_load(&1, || load(&calls, 1)).await.unwrap();

    let s = Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.kill().unwrap())
        .await
        .unwrap();

    // Every call keeps working, from L1 or the loader, without error, and
    // without waiting on the dead connection once the breaker is open.
    let started = tokio::time::Instant::now();
    for id in 1..=200 {
        let got = cache.get_or_load(&id, || load(&calls, id)).await.unwrap();
        assert_eq!(got, Some(profile(id)));
    }
    assert!(redis.is_unavailable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "calls waited on a dead Redis: {:?}",
        started.elapsed()
    );
    assert!(cache.stats().l2_unavailable > 0);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        200,
        "key 1 from L1, the rest loaded"
    );
    // A write the caller cannot do without says so, and leaves L1 alone;
    // an ordinary one carries on in L1.
    let refused = cache.set_required(5000, profile(5000)).await.unwrap_err();
    assert!(refused.is_unavailable(), "{refused}");
    assert!(
        refused.to_string().contains("profiles:5000"),
        "what and where: {refused}"
    );
    assert_eq!(cache.get(&5000), None);
    cache.set(5001, profile(5001)).await.unwrap();
    assert_eq!(cache.get(&5001), Some(Some(profile(5001))));

    let s = Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.start_again().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The next miss probes Redis, finds it back and clears L1 (it may have
    // missed invalidations while Redis was gone).
    cache
        .get_or_load(&1000, || load(&calls, 1000))
        .await
        .unwrap();
    assert!(!redis.is_unavailable());
    cache.set_required(5000, profile(5000)).await.unwrap();
    // Cleared by the breaker's recovery, and again when the invalidation
    // subscriber reconnects: both are right, messages may have been lost.
    assert!(cache.stats().l1_clears >= 1);
    assert_eq!(cache.get(&1), None, "L1 was cleared");
    // And Redis is used again.
    let mut conn = server.connect().unwrap();
    let key = cache.redis_key(&1000);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(&key)
            .query::<i64>(&mut conn)
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_write_in_one_process_leaves_the_l1_of_the_others() {
    let server = isolated().await;
    // Two processes: their own Redis handle (connection, subscriber) and L1.
    let (redis_a, redis_b) = (
        Redis::new(server.url()).unwrap(),
        Redis::new(server.url()).unwrap(),
    );
    let a = cache(&redis_a, server.prefix());
    let b = cache(&redis_b, server.prefix());
    assert!(redis_a.wait_subscribed(Duration::from_secs(5)).await);
    assert!(redis_b.wait_subscribed(Duration::from_secs(5)).await);
    let calls = AtomicUsize::new(0);
    a.get_or_load(&1, || load(&calls, 1)).await.unwrap();
    b.get_or_load(&1, || load(&calls, 1)).await.unwrap();
    assert_eq!(b.get(&1), Some(Some(profile(1))), "in B's L1");

    let renamed = Profile {
        id: 1,
        name: "renamed".into(),
    };
    a.set(1, renamed.clone()).await.unwrap();
    let dropped = wait_until(|| b.get(&1).is_none()).await;
    assert!(dropped, "B's L1 still served the old value");
    assert_eq!(
        b.get_or_load(&1, || load(&calls, 1)).await.unwrap(),
        Some(renamed),
        "from Redis"
    );
    assert_eq!(
        a.get(&1).map(|p| p.map(|p| p.name)),
        Some(Some("renamed".into())),
        "A keeps its own write"
    );

    a.invalidate(&1).await;
    assert!(wait_until(|| b.get(&1).is_none()).await);
    assert_eq!(b.stats().invalidations_received, 2);
    assert_eq!(
        a.stats().invalidations_received,
        0,
        "own messages are skipped"
    );
}

/// Polls `condition` every millisecond for up to 5 s.
async fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..5000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

#[tokio::test]
async fn get_many_reads_redis_in_one_round_trip_and_loads_the_rest_in_one_call() {
    let server = isolated().await;
    let writer = cache(&Redis::new(server.url()).unwrap(), server.prefix());
    for id in 0..100 {
        writer.set(id, profile(id)).await.unwrap();
    }
    // Another process, cold L1.
    let redis = Redis::new(server.url()).unwrap();
    let reader = cache(&redis, server.prefix());
    let keys: Vec<u64> = (0..100).collect();
    let before = redis.round_trips();
    let got = reader
        .get_many(&keys, |missing| async move {
            panic!("all 100 are in Redis, asked for {missing:?}");
            #[allow(unreachable_code, reason = "gives the loader its type")]
            Ok::<_, std::io::Error>(std::collections::HashMap::new())
        })
        .await
        .unwrap();
    assert_eq!(
        redis.round_trips() - before,
        1,
        "one round trip for 100 keys"
    );
    assert_eq!(
        got,
        keys.iter().map(|&id| Some(profile(id))).collect::<Vec<_>>()
    );

    // Now a mix: 100 in L1, 50 unknown anywhere (one batch load, which finds
    // only the even ones), one duplicate key.
    let mut keys: Vec<u64> = (50..200).collect();
    keys.push(150);
    let batches = AtomicUsize::new(0);
    let before = redis.round_trips();
    let got = reader
        .get_many(&keys, |missing| {
            batches.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(missing.len(), 100, "each missing key once");
                Ok::<_, std::io::Error>(
                    missing
                        .into_iter()
                        .filter(|id| id % 2 == 0)
                        .map(|id| (id, profile(id)))
                        .collect(),
                )
            }
        })
        .await
        .unwrap();
    assert_eq!(batches.load(Ordering::SeqCst), 1);
    assert_eq!(redis.round_trips() - before, 2, "one read, one write");
    for (key, value) in keys.iter().zip(&got) {
        let expected = (*key < 100 || key % 2 == 0).then(|| profile(*key));
        assert_eq!(value, &expected, "key {key}");
    }
    // The odd ones are remembered as absent, in L1 and in Redis.
    assert_eq!(reader.get(&151), Some(None));
    let other = cache(&Redis::new(server.url()).unwrap(), server.prefix());
    let again = other
        .get_many(&[151, 152], |_| async {
            panic!("both are in Redis now");
            #[allow(unreachable_code, reason = "gives the loader its type")]
            Ok::<_, std::io::Error>(std::collections::HashMap::new())
        })
        .await
        .unwrap();
    assert_eq!(again, vec![None, Some(profile(152))]);
}

#[tokio::test]
async fn with_a_lease_four_processes_call_the_loader_once() {
    let server = isolated().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        // Each "process" has its own Redis handle and L1.
        let cache: Cache = TieredCache::builder("profiles")
            .bot(server.prefix())
            .redis(Redis::new(server.url()).unwrap())
            .lease(Duration::from_secs(5))
            .build();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            let got = cache
                .get_or_load(&7, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, std::io::Error>(Some(profile(7)))
                })
                .await
                .unwrap();
            (got, cache.stats().lease_waits)
        }));
    }
    let mut waits = 0;
    for task in tasks {
        let (got, lease_waits) = task.await.unwrap();
        assert_eq!(got, Some(profile(7)));
        waits += lease_waits;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(waits, 3);
}

#[tokio::test]
async fn a_dead_leaseholder_blocks_nobody_beyond_the_lease() {
    let server = isolated().await;
    let cache: Cache = TieredCache::builder("profiles")
        .bot(server.prefix())
        .redis(Redis::new(server.url()).unwrap())
        .lease(Duration::from_millis(300))
        .build();
    // A process that took the lease and died: the lease key stays until it
    // expires.
    let mut conn = server.connect().unwrap();
    let lease_key = format!("bf:{}:profiles:lease:9", server.prefix());
    redis::cmd("SET")
        .arg(&lease_key)
        .arg("dead")
        .arg("PX")
        .arg(300)
        .query::<()>(&mut conn)
        .unwrap();
    let calls = AtomicUsize::new(0);
    let started = tokio::time::Instant::now();
    let got = cache.get_or_load(&9, || load(&calls, 9)).await.unwrap();
    assert_eq!(got, Some(profile(9)));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "loaded after the lease ran out"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn invalidating_a_tag_drops_its_entries_everywhere() {
    let server = isolated().await;
    // Match cards depend on two users; a change to either user drops them.
    let build = |redis: &Redis| -> TieredCache<String, String> {
        TieredCache::builder("cards")
            .bot(server.prefix())
            .redis(redis.clone())
            .tags(|key: &String, _| key.split('-').map(|user| format!("user:{user}")).collect())
            .build()
    };
    let (redis_a, redis_b) = (
        Redis::new(server.url()).unwrap(),
        Redis::new(server.url()).unwrap(),
    );
    let (a, b) = (build(&redis_a), build(&redis_b));
    assert!(redis_b.wait_subscribed(Duration::from_secs(5)).await);
    for pair in ["1-2", "1-3", "2-3"] {
        a.set(pair.to_owned(), format!("card {pair}"))
            .await
            .unwrap();
    }
    // B read two of them (from Redis) into its L1.
    for pair in ["1-2", "2-3"] {
        let got = b
            .get_or_load(&pair.to_owned(), || async { Ok::<_, std::io::Error>(None) })
            .await
            .unwrap();
        assert_eq!(got, Some(format!("card {pair}")));
    }

    // User 1 changed: every card with user 1 goes, in both processes.
    b.invalidate_tag("user:1").await;
    let mut conn = server.connect().unwrap();
    for (pair, exists) in [("1-2", 0), ("1-3", 0), ("2-3", 1)] {
        let key = a.redis_key(&pair.to_owned());
        assert_eq!(
            redis::cmd("EXISTS")
                .arg(&key)
                .query::<i64>(&mut conn)
                .unwrap(),
            exists,
            "{pair}"
        );
    }
    assert_eq!(b.get(&"1-2".to_owned()), None);
    assert!(
        wait_until(|| a.get(&"1-2".to_owned()).is_none() && a.get(&"1-3".to_owned()).is_none())
            .await
    );
    assert_eq!(a.get(&"2-3".to_owned()), Some(Some("card 2-3".into())));
    let tag_key = format!("bf:{}:cards:tag:user:1", server.prefix());
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(&tag_key)
            .query::<i64>(&mut conn)
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_restarted_process_warms_its_l1_from_the_saved_hot_set() {
    let server = isolated().await;
    let build = |redis: Redis| -> Cache {
        TieredCache::builder("profiles")
            .bot(server.prefix())
            .redis(redis)
            .warming(200)
            .build()
    };
    let first = build(Redis::new(server.url()).unwrap());
    let calls = AtomicUsize::new(0);
    // Keys 0..20 are hot (read 100 times each), 2000 others are read once.
    // Reads are sampled 1 in 4 at random: a hot key is counted ~25 times,
    // far above Space-Saving's bound of (sampled reads / 200) = 5.
    for round in 0..100u64 {
        for id in 0..20 {
            first.get_or_load(&id, || load(&calls, id)).await.unwrap();
        }
        for id in 0..20 {
            let cold = 1000 + round * 20 + id;
            first
                .get_or_load(&cold, || load(&calls, cold))
                .await
                .unwrap();
        }
    }
    // All 20 hot keys, and 180 of the cold ones.
    assert_eq!(first.persist_hot_set().await, 200);

    // A new process: warming fills L1 before it serves.
    let second = build(Redis::new(server.url()).unwrap());
    let warmed = second.warm().await;
    assert_eq!(warmed, 200);
    assert_eq!(second.stats().warmed, warmed as u64);
    let before = calls.load(Ordering::SeqCst);
    for id in 0..20 {
        second.get_or_load(&id, || load(&calls, id)).await.unwrap();
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "hot keys served without loading"
    );
    assert_eq!(second.stats().l1_hits, 20, "from L1, not even Redis");

    // Without a saved hot set there is nothing to warm.
    let elsewhere: Cache = TieredCache::builder("other")
        .bot(server.prefix())
        .redis(Redis::new(server.url()).unwrap())
        .warming(50)
        .build();
    assert_eq!(elsewhere.warm().await, 0);
}

#[tokio::test]
async fn prefetch_fetches_the_usual_successor_before_it_is_read() {
    let server = isolated().await;
    let writer = cache(&Redis::new(server.url()).unwrap(), server.prefix());
    for id in (0..50).chain(1000..1050) {
        writer.set(id, profile(id)).await.unwrap();
    }
    // A reader whose L1 forgets quickly (300 ms), so every round starts
    // cold; each profile `a` is followed by its card `a + 1000`.
    let reader: Cache = TieredCache::builder("profiles")
        .bot(server.prefix())
        .redis(Redis::new(server.url()).unwrap())
        .ttl(Duration::from_millis(300))
        .jitter(0.0)
        .prefetch(10_000)
        .build();
    let never = || async {
        panic!("everything is in Redis");
        #[allow(unreachable_code, reason = "gives the loader its type")]
        Ok::<_, std::io::Error>(None)
    };
    let mut successor_l1_hits = Vec::new();
    for _round in 0..8 {
        tokio::time::sleep(Duration::from_millis(350)).await;
        let before = reader.stats().l1_hits;
        for a in 0..50u64 {
            reader.get_or_load(&a, never).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            reader.get_or_load(&(a + 1000), never).await.unwrap();
        }
        successor_l1_hits.push(reader.stats().l1_hits - before);
    }
    // Early rounds learn; later rounds find the successor already in L1.
    assert_eq!(successor_l1_hits[0], 0, "{successor_l1_hits:?}");
    assert!(successor_l1_hits[7] >= 45, "{successor_l1_hits:?}");
    let stats = reader.stats();
    assert!(stats.prefetch_on);
    assert!(
        stats.prefetch_used * 10 >= stats.prefetch_issued * 7,
        "{stats:?}"
    );
}

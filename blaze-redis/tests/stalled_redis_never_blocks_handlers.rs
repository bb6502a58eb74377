//! A Redis that stops answering (frozen, connections open): publishing
//! never waits on it, local clients are served at once, the bounded
//! outbound queue overflows into counted drops, and once Redis answers
//! again delivery across nodes resumes.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_fills_the_queue_and_drops_are_counted() {
    let redis = RedisServer::start();
    let config = quick_config().queue_capacity(64).response_timeout(Duration::from_secs(1));
    let a = Node::start(&redis.url(), config.clone()).await;
    let b = Node::start(&redis.url(), config).await;
    let mut on_a = blaze_tokio::connect(&a.url("/room/s")).await.unwrap();
    let mut on_b = blaze_tokio::connect(&b.url("/room/s")).await.unwrap();
    for node in [&a, &b] {
        assert!(eventually(Duration::from_secs(10), || node.backplane.subscriptions() == 2).await);
    }

    redis.pause();
    const N: usize = 5_000;
    let started = Instant::now();
    for i in 0..N {
        assert_eq!(a.app.publish("s", format!("m {i}")).unwrap(), 1);
    }
    let took = started.elapsed();
    // 5,000 publishes against a frozen Redis: no waiting on it (a single
    // response timeout would be a second).
    assert!(took < Duration::from_millis(900), "publishing took {took:?}");
    for i in 0..N {
        assert_eq!(next_text(&mut on_a, Duration::from_secs(10)).await, format!("m {i}"));
    }
    let stats = a.backplane.stats();
    assert!(stats.dropped_queue_full >= (N - 64 - 256 * 2) as u64, "the queue is bounded: {stats:?}");

    // Frozen for longer than the response timeout: the in-flight batch is
    // dropped (counted), the subscriber's ping fails, both reconnect.
    assert!(
        eventually(Duration::from_secs(10), || a.backplane.stats().dropped_disconnected > 0).await,
        "{:?}",
        a.backplane.stats()
    );
    assert!(eventually(Duration::from_secs(10), || b.backplane.subscriptions() == 0).await);
    redis.resume();
    // Whatever was in flight when it froze may be dropped on the timeout;
    // after that, messages cross again.
    let mut crossed = false;
    let mut probes = 0;
    while !crossed && probes < 200 {
        a.app.publish("s", format!("probe {probes}")).unwrap();
        probes += 1;
        let _ = next_text(&mut on_a, Duration::from_secs(10)).await;
        // Skip the pre-freeze backlog b may still be receiving.
        while let Some(message) = arrives_within(&mut on_b, Duration::from_millis(100)).await {
            crossed |= message.as_text().is_some_and(|t| t.starts_with("probe"));
        }
    }
    assert!(crossed, "delivery resumed after Redis answered again: {:?}", a.backplane.stats());
    // Every broadcast is accounted for: published or dropped and counted.
    let total = (N + probes) as u64;
    assert!(
        eventually(Duration::from_secs(10), || {
            let stats = a.backplane.stats();
            stats.published + stats.dropped() == total
        })
        .await,
        "{total} broadcasts: {:?}",
        a.backplane.stats()
    );
    assert!(a.backplane.stats().reconnects >= 1);
}

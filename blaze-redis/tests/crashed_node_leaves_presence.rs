//! A node that crashes (its runtime gone, nothing cleaned up) disappears
//! from cluster-wide presence within the presence TTL; a node leaving
//! cleanly disappears at once.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_members_expire_within_the_ttl() {
    let redis = RedisServer::start();
    let ttl = Duration::from_secs(1);
    let a = Node::start(&redis.url(), quick_config().presence_ttl(ttl)).await;
    let b = Node::start(&redis.url(), quick_config().presence_ttl(ttl)).await;
    let mut clients = Vec::new();
    for node in [&a, &a, &a, &b, &b] {
        clients.push(blaze_tokio::connect(&node.url("/room/lobby")).await.unwrap());
    }
    let app = a.app.clone();
    let count_is = |n: usize| {
        let app = app.clone();
        move || {
            let app = app.clone();
            async move { app.cluster_topic_count("lobby").await == Ok(n) }
        }
    };
    assert!(eventually_async(Duration::from_secs(10), count_is(5)).await);
    // Heartbeats keep it there well past the TTL.
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(app.cluster_topic_count("lobby").await, Ok(5));
    assert_eq!(app.cluster_connection_count("/room/lobby").await, Ok(5));

    let b_id = b.backplane.node_id();
    let crashed = Instant::now();
    b.crash();
    assert!(eventually_async(Duration::from_secs(20), count_is(3)).await);
    let gone_after = crashed.elapsed();
    // Within the TTL (plus the query poll and a loaded machine's slack).
    assert!(gone_after < ttl + Duration::from_secs(2), "took {gone_after:?}");
    let members = app.cluster_topic_members("lobby").await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m.node == a.backplane.node_id() && m.node != b_id));
    assert_eq!(app.cluster_connection_count("/room/lobby").await, Ok(3));

    // A clean leave is immediate.
    a.backplane.leave().await.unwrap();
    assert_eq!(app.cluster_topic_count("lobby").await, Ok(0));
}

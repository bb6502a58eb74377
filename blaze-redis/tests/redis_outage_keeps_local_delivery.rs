//! Redis killed mid-run: local broadcast keeps working, broadcasts meant
//! for other nodes are dropped and counted; Redis restarted on the same
//! port (empty): the nodes reconnect, resubscribe, rewrite presence, and
//! cross-node delivery resumes.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back() {
    let mut redis = RedisServer::start();
    let a = Node::start(&redis.url(), quick_config()).await;
    let b = Node::start(&redis.url(), quick_config()).await;
    let mut on_a = blaze_tokio::connect(&a.url("/room/r")).await.unwrap();
    let mut on_b = blaze_tokio::connect(&b.url("/room/r")).await.unwrap();
    for node in [&a, &b] {
        assert!(eventually(Duration::from_secs(10), || node.backplane.subscriptions() == 2).await);
    }
    a.app.publish("r", "before").unwrap();
    assert_eq!(next_text(&mut on_a, Duration::from_secs(10)).await, "before");
    assert_eq!(next_text(&mut on_b, Duration::from_secs(10)).await, "before");

    redis.kill();
    // The subscriber notices the closed connection.
    assert!(eventually(Duration::from_secs(10), || a.backplane.subscriptions() == 0).await);
    for i in 0..20 {
        // Never blocks, never fails: local clients are served at once.
        assert_eq!(a.app.publish("r", format!("during {i}")).unwrap(), 1);
        assert_eq!(next_text(&mut on_a, Duration::from_secs(10)).await, format!("during {i}"));
    }
    assert!(
        eventually(Duration::from_secs(10), || a.backplane.stats().dropped_disconnected == 20).await,
        "every broadcast during the outage is counted as dropped: {:?}",
        a.backplane.stats()
    );
    assert!(a.app.cluster_topic_count("r").await.is_err(), "presence queries fail while Redis is down");

    redis.restart();
    for node in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(20), || node.backplane.subscriptions() == 2).await,
            "resubscribed after the restart: {:?}",
            node.backplane.stats()
        );
    }
    // A publish right after the restart may still meet a command
    // connection that has not noticed (dropped, at-most-once); probe each
    // way until one crosses.
    for (from, to, name) in [(&a, &mut on_b, "a to b"), (&b, &mut on_a, "b to a")] {
        let mut crossed = false;
        for i in 0..200 {
            from.app.broadcast("/room/r", format!("probe {i}")).unwrap();
            if arrives_within(to, Duration::from_millis(100)).await.is_some() {
                crossed = true;
                break;
            }
        }
        assert!(crossed, "cross-node delivery resumed {name}: {:?}", from.backplane.stats());
    }
    // Drain what the probes left (a's own client got a's probes, b's got b's).
    for ws in [&mut on_a, &mut on_b] {
        while arrives_within(ws, Duration::from_millis(300)).await.is_some() {}
    }
    // And then in order, exactly once, both ways.
    for i in 0..10 {
        a.app.publish("r", format!("after {i}")).unwrap();
    }
    for ws in [&mut on_a, &mut on_b] {
        for i in 0..10 {
            assert_eq!(next_text(ws, Duration::from_secs(10)).await, format!("after {i}"));
        }
        assert_eq!(arrives_within(ws, Duration::from_millis(200)).await, None);
    }
    assert!(a.backplane.stats().reconnects >= 2, "{:?}", a.backplane.stats());
    // Presence was rewritten into the empty Redis.
    let app = a.app.clone();
    assert!(
        eventually_async(Duration::from_secs(10), || {
            let app = app.clone();
            async move { app.cluster_topic_count("r").await == Ok(2) }
        })
        .await
    );
}

//! A Redis with a password: the URL's password is used for every
//! connection (commands and subscriptions), and a wrong one fails at
//! connect instead of later.

mod common;

use std::time::Duration;

use blaze_redis::RedisBackplane;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_url_works_and_a_wrong_password_is_refused() {
    let redis = RedisServer::start_with_password("s3cret");
    let wrong = format!("redis://:nope@127.0.0.1:{}", redis.port);
    assert!(matches!(RedisBackplane::connect(&wrong).await, Err(blaze_redis::Error::Connect(_))));
    let none = format!("redis://127.0.0.1:{}", redis.port);
    assert!(matches!(RedisBackplane::connect(&none).await, Err(blaze_redis::Error::Connect(_))));
    assert!(matches!(RedisBackplane::connect("http://example").await, Err(blaze_redis::Error::Url(_))));

    let a = Node::start(&redis.url(), quick_config()).await;
    let b = Node::start(&redis.url(), quick_config()).await;
    let mut on_a = blaze_tokio::connect(&a.url("/room/x")).await.unwrap();
    let mut on_b = blaze_tokio::connect(&b.url("/room/x")).await.unwrap();
    for node in [&a, &b] {
        assert!(eventually(Duration::from_secs(10), || node.backplane.subscriptions() == 2).await);
    }
    // A client's message, published to the others by its handler.
    on_a.send("hi from a").unwrap();
    assert_eq!(next_text(&mut on_b, Duration::from_secs(10)).await, "hi from a");
    // Presence is written asynchronously (within a round trip or two).
    let app = a.app.clone();
    assert!(
        eventually_async(Duration::from_secs(10), || {
            let app = app.clone();
            async move { app.cluster_topic_count("x").await == Ok(2) }
        })
        .await
    );
    assert_eq!(arrives_within(&mut on_a, Duration::from_millis(200)).await, None, "publish_others skips the sender");
}

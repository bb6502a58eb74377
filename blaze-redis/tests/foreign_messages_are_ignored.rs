//! Anything on a Blaze channel that Blaze did not write (another
//! application, another wire version, a truncated or broken message, a
//! replay) is ignored and counted; the node keeps delivering.

mod common;

use std::time::Duration;

use common::*;

fn header(version: u8, flags: u8, node: u64, seq: u64) -> Vec<u8> {
    let mut out = b"BLZC".to_vec();
    out.push(version);
    out.push(flags);
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_foreign_publishes_are_counted_not_delivered() {
    let redis = RedisServer::start();
    let node = Node::start(&redis.url(), quick_config()).await;
    let mut ws = blaze_tokio::connect(&node.url("/room/news")).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || node.backplane.subscriptions() == 2).await);

    let client = redis::Client::open(redis.url()).unwrap();
    let raw = client.get_multiplexed_async_connection().await.unwrap();
    let publish = |channel: &'static str, payload: Vec<u8>| {
        let mut raw = raw.clone();
        async move {
            let receivers: i64 = redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut raw).await.unwrap();
            assert_eq!(receivers, 1, "the node is subscribed to {channel}");
        }
    };
    publish("blaze:t:news", b"{\"from\":\"another app\"}".to_vec()).await;
    publish("blaze:p:/room/news", b"hello".to_vec()).await;
    publish("blaze:t:news", Vec::new()).await;
    publish("blaze:t:news", header(2, 1, 7, 1)).await; // a future version
    publish("blaze:t:news", header(1, 1, 7, 1)[..10].to_vec()).await; // truncated
    publish("blaze:t:news", header(1, 0x81, 7, 1)).await; // unknown flags
    let mut bad_text = header(1, 1, 7, 1);
    bad_text.extend_from_slice(&[0xc3, 0x28]);
    publish("blaze:t:news", bad_text).await; // text, not UTF-8
                                             // A well-formed message from a node we do not know is delivered ...
    let mut good = header(1, 1, 0xfeed, 5);
    good.extend_from_slice(b"from afar");
    publish("blaze:t:news", good.clone()).await;
    // ... once: its replay, and anything older from that node, is not.
    publish("blaze:t:news", good).await;
    let mut older = header(1, 1, 0xfeed, 4);
    older.extend_from_slice(b"older");
    publish("blaze:t:news", older).await;

    assert_eq!(next_text(&mut ws, Duration::from_secs(10)).await, "from afar");
    assert!(
        eventually(Duration::from_secs(10), || node.backplane.stats().ignored() == 9).await,
        "{:?}",
        node.backplane.stats()
    );
    let stats = node.backplane.stats();
    assert_eq!(stats.ignored_foreign, 3, "{stats:?}");
    assert_eq!(stats.ignored_version, 1, "{stats:?}");
    assert_eq!(stats.ignored_malformed, 3, "{stats:?}");
    assert_eq!(stats.ignored_replayed, 2, "{stats:?}");
    assert_eq!(stats.received, 1, "{stats:?}");

    // Nothing else was delivered, and the node still works.
    node.app.publish("news", "still here").unwrap();
    assert_eq!(next_text(&mut ws, Duration::from_secs(10)).await, "still here");
    assert_eq!(arrives_within(&mut ws, Duration::from_millis(200)).await, None);
}

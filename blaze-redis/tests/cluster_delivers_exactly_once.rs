//! Three nodes on one real Redis, 300 clients spread over them: every
//! broadcast and topic publish from every node reaches every matching
//! client exactly once, in per-publisher order; rooms stay isolated;
//! nodes subscribe only to what their clients want; presence counts the
//! whole cluster.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use blaze_tokio::WsStream;
use common::*;

const NODES: usize = 3;
const CLIENTS: usize = 300;
const MESSAGES: usize = 100;
const ROOMS: [&str; 3] = ["red", "green", "blue"];

fn room_of(client: usize) -> &'static str {
    ROOMS[(client / NODES) % ROOMS.len()]
}

fn room_size(room: &str) -> usize {
    (0..CLIENTS).filter(|c| room_of(*c) == room).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_300_clients_every_message_once_in_order() {
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(Node::start(&redis.url(), quick_config()).await);
    }

    // Client i is on node i % 3, on /feed, in room (i / 3) % 3: every room
    // has members on every node.
    let mut clients: Vec<WsStream> = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let ws = blaze_tokio::connect(&nodes[i % NODES].url("/feed")).await.expect("connect");
        ws.send(format!("join {}", room_of(i))).unwrap();
        clients.push(ws);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(next_text(ws, Duration::from_secs(10)).await, format!("joined {}", room_of(i)));
    }
    // A room only node 0 has: the other nodes must not subscribe to it.
    let mut lonely = blaze_tokio::connect(&nodes[0].url("/room/lonely")).await.unwrap();

    // Subscriptions: /feed and the three rooms on every node, plus the
    // path /room/lonely and the topic "lonely" on node 0 only.
    for (n, node) in nodes.iter().enumerate() {
        let expected = if n == 0 { 6 } else { 4 };
        assert!(
            eventually(Duration::from_secs(10), || node.backplane.subscriptions() == expected).await,
            "node {n}: {} subscriptions, expected {expected}",
            node.backplane.subscriptions()
        );
    }

    // Presence, asked on each node, counts the whole cluster.
    for node in &nodes {
        let app = node.app.clone();
        assert!(
            eventually_async(Duration::from_secs(10), || {
                let app = app.clone();
                async move {
                    app.cluster_connection_count("/feed").await == Ok(CLIENTS)
                        && app.cluster_topic_count("red").await == Ok(room_size("red"))
                        && app.cluster_topic_count("lonely").await == Ok(1)
                        && app.cluster_topic_count("nobody").await == Ok(0)
                }
            })
            .await,
            "cluster-wide counts: /feed {:?}, red {:?}, lonely {:?}",
            app.cluster_connection_count("/feed").await,
            app.cluster_topic_count("red").await,
            app.cluster_topic_count("lonely").await,
        );
        assert_eq!(app.connection_count("/feed"), CLIENTS / NODES, "local count is local");
    }
    let members = nodes[1].app.cluster_topic_members("green").await.unwrap();
    assert_eq!(members.len(), room_size("green"));
    for (n, node) in nodes.iter().enumerate() {
        let here = members.iter().filter(|m| m.node == node.backplane.node_id()).count();
        let expected = (0..CLIENTS).filter(|i| i % NODES == n && room_of(*i) == "green").count();
        assert_eq!(here, expected, "green members on node {n}");
    }

    // Every node publishes at once: 100 broadcasts to /feed, 100 publishes
    // spread over the rooms, one to "lonely", then an end marker.
    let encodings_before: Vec<u64> = nodes.iter().map(|n| n.app.encodings()).collect();
    let publishers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let app = node.app.clone();
            std::thread::spawn(move || {
                for i in 0..MESSAGES {
                    app.broadcast("/feed", format!("b {n} {i}")).unwrap();
                    app.publish(ROOMS[i % ROOMS.len()], format!("t {n} {i} {}", ROOMS[i % ROOMS.len()])).unwrap();
                    if i % 10 == 0 {
                        std::thread::yield_now();
                    }
                }
                app.publish("lonely", format!("lonely {n}")).unwrap();
                app.broadcast("/feed", format!("end {n}")).unwrap();
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }

    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut ws)| {
            tokio::spawn(async move {
                let room = room_of(c);
                let mut next_broadcast = [0usize; NODES];
                let mut last_publish: [Option<usize>; NODES] = [None; NODES];
                let mut publishes = [0usize; NODES];
                let mut ended = [false; NODES];
                while ended.iter().any(|e| !e) {
                    let text = next_text(&mut ws, Duration::from_secs(30)).await;
                    let parts: Vec<&str> = text.split(' ').collect();
                    let from: usize = parts[1].parse().unwrap();
                    assert!(!ended[from], "client {c}: {text:?} after node {from}'s end marker");
                    match parts[0] {
                        "b" => {
                            let i: usize = parts[2].parse().unwrap();
                            assert_eq!(
                                i, next_broadcast[from],
                                "client {c}: broadcasts from node {from} out of order or repeated"
                            );
                            next_broadcast[from] += 1;
                        }
                        "t" => {
                            let i: usize = parts[2].parse().unwrap();
                            assert_eq!(parts[3], room, "client {c} in {room} got another room's message {text:?}");
                            assert!(
                                last_publish[from].is_none_or(|last| i > last),
                                "client {c}: publishes from node {from} out of order or repeated"
                            );
                            last_publish[from] = Some(i);
                            publishes[from] += 1;
                        }
                        "end" => ended[from] = true,
                        _ => panic!("client {c}: unexpected {text:?}"),
                    }
                }
                let room_index = ROOMS.iter().position(|r| *r == room).unwrap();
                let per_node = (0..MESSAGES).filter(|i| i % ROOMS.len() == room_index).count();
                assert_eq!(next_broadcast, [MESSAGES; NODES], "client {c}: every broadcast from every node");
                assert_eq!(publishes, [per_node; NODES], "client {c}: every publish to its room from every node");
                ws
            })
        })
        .collect();
    let mut clients = Vec::new();
    for reader in readers {
        clients.push(reader.await.expect("reader"));
    }
    // Nothing more arrives: no duplicate after the end markers either.
    for ws in clients.iter_mut().step_by(7) {
        assert_eq!(arrives_within(ws, Duration::from_millis(100)).await, None);
    }
    // The lonely room got every node's message, and only those.
    let mut got: Vec<String> = Vec::new();
    for _ in 0..NODES {
        got.push(next_text(&mut lonely, Duration::from_secs(10)).await);
    }
    got.sort();
    assert_eq!(got, (0..NODES).map(|n| format!("lonely {n}")).collect::<Vec<_>>());

    // Serialize once per node: each node framed each of its own messages
    // once and each message from another node once.
    let total_per_node = (2 * MESSAGES + 2) as u64;
    for (n, node) in nodes.iter().enumerate() {
        let stats = node.backplane.stats();
        assert_eq!(stats.published, total_per_node, "node {n} published everything: {stats:?}");
        assert_eq!(stats.dropped(), 0, "node {n}: {stats:?}");
        assert_eq!(stats.ignored(), 0, "node {n}: {stats:?}");
        // Nodes 1 and 2 have nobody in "lonely": they never received it.
        let lonely_received = if n == 0 { (NODES - 1) as u64 } else { 0 };
        let expected_received = (NODES as u64 - 1) * (total_per_node - 1) + lonely_received;
        assert_eq!(stats.received, expected_received, "node {n}: {stats:?}");
        assert_eq!(node.app.encodings() - encodings_before[n], total_per_node + expected_received, "node {n}");
    }

    // Leaving a room unsubscribes when the node's last member goes.
    drop(lonely);
    assert!(eventually(Duration::from_secs(10), || nodes[0].backplane.subscriptions() == 4).await);
    let mut counts = HashMap::new();
    for node in &nodes {
        counts.insert(node.backplane.node_id(), node.app.connection_count("/feed"));
    }
    assert_eq!(counts.values().sum::<usize>(), CLIENTS);
}

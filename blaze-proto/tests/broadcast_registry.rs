//! Broadcast: one `PreparedMessage` encoded once and shared by every server
//! connection it is queued on; and the `Registry` of connections by path
//! and topic.

mod common;

use std::io::IoSlice;
use std::time::Instant;

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{ConnId, Connection, Event, Message, PreparedBatch, PreparedMessage, Registry};
use common::*;

fn first_slice_ptr(conn: &Connection) -> *const u8 {
    let mut slices = [IoSlice::new(&[]); 4];
    let n = conn.transmit_slices(&mut slices);
    assert!(n >= 1);
    slices[0].as_ptr()
}

#[test]
fn one_prepared_message_on_100_connections_reaches_each_client_once() {
    let text = "tick ".repeat(100); // 500 bytes: a shared frame, not copied
    let prepared = PreparedMessage::text(&text);
    let mut pairs: Vec<Pair> = (0..100).map(|_| Pair::new(quiet())).collect();
    let mut pointers = Vec::new();
    for pair in &mut pairs {
        pair.server.send_prepared(&prepared).unwrap();
        pointers.push(first_slice_ptr(&pair.server));
    }
    // Every queued copy points at the one encoded frame.
    assert!(pointers.iter().all(|&p| p == prepared.frame().as_ptr()));

    for pair in &mut pairs {
        let wire = pair.server_to_client();
        assert_eq!(&wire[..], &prepared.frame()[..]);
        assert_eq!(pair.client_events(), [Event::Message(Message::text(text.clone()))]);
    }
}

#[test]
fn a_batch_queues_what_one_by_one_would_as_one_shared_chunk() {
    let messages: Vec<PreparedMessage> = (0..50).map(|i| PreparedMessage::text(&format!("tick {i}"))).collect();
    let batch = PreparedBatch::new(messages.clone());
    let mut one_by_one = Connection::new(Role::Server, quiet(), Instant::now());
    let mut batched = Connection::new(Role::Server, quiet(), Instant::now());
    one_by_one.send(Message::text("before")).unwrap();
    batched.send(Message::text("before")).unwrap();
    for m in &messages {
        one_by_one.send_prepared(m).unwrap();
    }
    assert!(batched.send_prepared_batch(&batch));
    assert_eq!(batched.unsent(), one_by_one.unsent(), "each message is counted");
    let mut slices = [IoSlice::new(&[]); 8];
    let n = batched.transmit_slices(&mut slices);
    assert!(slices[..n].iter().any(|sl| sl.as_ptr() == batch.frames().as_ptr()), "shared, not copied");
    assert_eq!(take_output(&mut batched), take_output(&mut one_by_one));
    assert_eq!(batched.unsent(), (0, 0));
}

#[test]
fn a_batch_over_the_limit_or_on_a_closed_connection_queues_nothing() {
    let batch = PreparedBatch::new(vec![PreparedMessage::binary(&[1; 600]), PreparedMessage::binary(&[2; 600])]);
    let mut s = Connection::new(Role::Server, quiet().max_backpressure(1000), Instant::now());
    assert!(!s.send_prepared_batch(&batch), "1,204 bytes do not fit in 1,000: sent one by one instead");
    assert_eq!(s.unsent(), (0, 0));
    let mut s = Connection::new(Role::Server, quiet(), Instant::now());
    s.close(blaze_proto::CloseCode::NORMAL, "", Instant::now()).unwrap();
    assert!(!s.send_prepared_batch(&batch));
    let mut c = Connection::new(Role::Client, quiet(), Instant::now());
    assert!(!c.send_prepared_batch(&batch), "a client masks each frame");
}

#[test]
fn shared_frame_is_queued_by_reference_between_other_frames() {
    let prepared = PreparedMessage::binary(&[9; 256]);
    let mut s = Connection::new(Role::Server, quiet(), Instant::now());
    s.send(Message::text("before")).unwrap();
    s.send_prepared(&prepared).unwrap();
    s.send(Message::text("after")).unwrap();
    let mut slices = [IoSlice::new(&[]); 8];
    let n = s.transmit_slices(&mut slices);
    assert!(slices[..n].iter().any(|sl| sl.as_ptr() == prepared.frame().as_ptr() && sl.len() == prepared.frame().len()));
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 3);
    assert_eq!(&frames[1].payload[..], &[9; 256][..]);
}

#[test]
fn tiny_prepared_frames_are_copied_but_still_decode() {
    let prepared = PreparedMessage::text("hi");
    let mut pair = Pair::new(quiet());
    pair.server.send_prepared(&prepared).unwrap();
    pair.server.send_prepared(&prepared).unwrap();
    pair.server_to_client();
    assert_eq!(pair.client_events(), [Event::Message(Message::text("hi")), Event::Message(Message::text("hi"))]);
}

#[test]
fn client_connections_mask_a_prepared_message() {
    let prepared = PreparedMessage::binary(&[1, 2, 3]);
    let mut pair = Pair::new(quiet());
    pair.client.send_prepared(&prepared).unwrap();
    let wire = pair.client_to_server();
    let frames = check_stream(Role::Client, &wire);
    assert!(frames[0].mask.is_some());
    assert_eq!(pair.server_events(), [Event::Message(Message::binary(vec![1, 2, 3]))]);
}

#[test]
fn prepared_message_matches_its_source_message() {
    for message in [Message::text("héllo"), Message::binary(vec![0; 70_000])] {
        let prepared = PreparedMessage::new(&message);
        assert_eq!(&prepared.payload()[..], message.as_bytes());
        let opcode = if message.as_text().is_some() { OpCode::Text } else { OpCode::Binary };
        assert_eq!(prepared.opcode(), opcode);
        let frames = check_stream(Role::Server, prepared.frame());
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].payload[..], message.as_bytes());
        // The payload view shares the frame's buffer.
        let end = prepared.frame().as_ptr() as usize + prepared.frame().len();
        assert_eq!(prepared.payload().as_ptr() as usize + prepared.payload().len(), end);
    }
}

#[cfg(feature = "json")]
mod json {
    use super::*;
    use std::cell::Cell;

    /// Counts how many times it is serialized.
    struct Counted<'a> {
        calls: &'a Cell<u32>,
        price: u32,
    }

    impl serde::Serialize for Counted<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            self.calls.set(self.calls.get() + 1);
            let mut s = serializer.serialize_struct("Quote", 2)?;
            s.serialize_field("symbol", "BTC")?;
            s.serialize_field("price", &self.price)?;
            s.end()
        }
    }

    #[test]
    fn json_encodes_a_serde_value_once_for_every_connection() {
        let calls = Cell::new(0);
        let prepared = PreparedMessage::json(&Counted { calls: &calls, price: 95_000 }).unwrap();
        assert_eq!(prepared.opcode(), OpCode::Text);
        let mut pairs: Vec<Pair> = (0..10).map(|_| Pair::new(quiet())).collect();
        for pair in &mut pairs {
            pair.server.send_prepared(&prepared).unwrap();
        }
        assert_eq!(calls.get(), 1, "serialized once, not per connection");
        for pair in &mut pairs {
            pair.server_to_client();
            assert_eq!(
                pair.client_events(),
                [Event::Message(Message::text(r#"{"symbol":"BTC","price":95000}"#))]
            );
        }
    }

    #[test]
    fn json_failure_is_a_usage_error() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1); // non-string keys cannot be JSON object keys
        assert!(matches!(PreparedMessage::json(&map), Err(blaze_proto::UsageError::Json(_))));
    }
}

// ---- registry ------------------------------------------------------------

#[test]
fn registry_counts_follow_insert_join_leave_and_remove() {
    let mut r = Registry::new();
    assert!(r.insert(ConnId(1), "/chat", "alice"));
    assert!(r.insert(ConnId(2), "/chat", "bob"));
    assert!(r.insert(ConnId(3), "/feed", "carol"));
    assert!(!r.insert(ConnId(1), "/feed", "again"), "ids are unique");
    assert_eq!((r.len(), r.path_count("/chat"), r.path_count("/feed")), (3, 2, 1));
    assert_eq!(r.path_of(ConnId(1)), Some("/chat"));

    assert!(r.join(ConnId(1), "room"));
    assert!(r.join(ConnId(2), "room"));
    assert!(r.join(ConnId(3), "room"));
    assert!(r.join(ConnId(1), "vip"));
    assert!(!r.join(ConnId(1), "room"), "joining twice is a no-op");
    assert!(!r.join(ConnId(42), "room"), "unknown ids cannot join");
    assert_eq!((r.topic_count("room"), r.topic_count("vip")), (3, 1));
    let mut topics: Vec<&str> = r.topics_of(ConnId(1)).collect();
    topics.sort();
    assert_eq!(topics, ["room", "vip"]);

    assert!(r.leave(ConnId(2), "room"));
    assert!(!r.leave(ConnId(2), "room"), "leaving twice is a no-op");
    assert!(!r.leave(ConnId(3), "vip"), "not a member");
    assert_eq!(r.topic_count("room"), 2);

    assert_eq!(r.remove(ConnId(1)), Some("alice"));
    assert_eq!(r.remove(ConnId(1)), None);
    assert_eq!((r.topic_count("room"), r.topic_count("vip"), r.path_count("/chat")), (1, 0, 1));
    assert_eq!(r.key_counts(), (2, 1), "empty topics and paths are dropped");
    let room: Vec<(ConnId, &&str)> = r.topic_members("room").collect();
    assert_eq!(room, [(ConnId(3), &"carol")]);
}

#[test]
fn registry_prune_removes_only_registered_ids_and_their_topics() {
    let mut r = Registry::new();
    for i in 0..50 {
        r.insert(ConnId(i), if i % 2 == 0 { "/even" } else { "/odd" }, i);
        r.join(ConnId(i), "all");
        r.join(ConnId(i), &format!("t{}", i % 5));
    }
    assert_eq!(r.topic_count("all"), 50);
    let dead: Vec<ConnId> = (0..60).filter(|i| i % 3 == 0).map(ConnId).collect();
    let registered_dead = (0..50).filter(|i| i % 3 == 0).count();
    assert_eq!(r.prune(dead), registered_dead);
    assert_eq!(r.len(), 50 - registered_dead);
    assert_eq!(r.topic_count("all"), 50 - registered_dead);
    let per_topic: usize = (0..5).map(|t| r.topic_count(&format!("t{t}"))).sum();
    assert_eq!(per_topic, 50 - registered_dead);
    assert_eq!(r.path_count("/even") + r.path_count("/odd"), 50 - registered_dead);
    assert!(r.topic_members("all").all(|(id, v)| id.0 % 3 != 0 && id.0 == *v));
    assert_eq!(r.prune((0..50).map(ConnId)), 50 - registered_dead);
    assert!(r.is_empty());
    assert_eq!(r.key_counts(), (0, 0));
}

#[test]
fn broadcast_to_a_topic_reaches_only_its_members() {
    let mut r: Registry<usize> = Registry::new();
    let mut pairs: Vec<Pair> = (0..6).map(|_| Pair::new(quiet())).collect();
    for i in 0..pairs.len() {
        r.insert(ConnId(i as u64), "/game", i);
        if i % 2 == 0 {
            r.join(ConnId(i as u64), "red");
        }
    }
    let prepared = PreparedMessage::text(&"red team! ".repeat(30));
    let members: Vec<usize> = r.topic_members("red").map(|(_, &i)| i).collect();
    for &i in &members {
        pairs[i].server.send_prepared(&prepared).unwrap();
    }
    for (i, pair) in pairs.iter_mut().enumerate() {
        pair.server_to_client();
        let got = pair.client_events();
        if i % 2 == 0 {
            assert_eq!(got.len(), 1, "member {i}");
        } else {
            assert!(got.is_empty(), "non-member {i}");
        }
    }
}

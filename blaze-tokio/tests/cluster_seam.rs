//! The cluster seam without a broker: a recording `Backplane` sees every
//! broadcast once (payload, not frames; `except` stays local), every join
//! and leave in order, and what it delivers through the sink reaches local
//! clients framed once without being published again.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use blaze_tokio::{
    App, Backplane, BoxFuture, Bytes, Callbacks, ClusterError, ClusterMember, ClusterMessage, ClusterSink, ConnId,
    Message, Target,
};
use common::*;

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Publish(ClusterMessage),
    Joined(Target, ConnId),
    Left(Target, ConnId),
}

#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    sink: Arc<OnceLock<ClusterSink>>,
}

impl Recorder {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Backplane for Recorder {
    fn attach(&self, sink: ClusterSink) {
        self.sink.set(sink).unwrap();
    }
    fn publish(&self, message: ClusterMessage) {
        self.calls.lock().unwrap().push(Call::Publish(message));
    }
    fn joined(&self, target: &Target, id: ConnId) {
        self.calls.lock().unwrap().push(Call::Joined(target.clone(), id));
    }
    fn left(&self, target: &Target, id: ConnId) {
        self.calls.lock().unwrap().push(Call::Left(target.clone(), id));
    }
    fn members(&self, _target: Target) -> BoxFuture<Result<Vec<ClusterMember>, ClusterError>> {
        Box::pin(async { Ok(vec![ClusterMember { node: 9, id: ConnId(1) }]) })
    }
    fn count(&self, _target: Target) -> BoxFuture<Result<usize, ClusterError>> {
        Box::pin(async { Ok(42) })
    }
}

fn topic(t: &str) -> Target {
    Target::Topic(t.into())
}

fn path(p: &str) -> Target {
    Target::Path(p.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_tells_the_backplane_and_the_sink_delivers_locally() {
    let app = App::new();
    app.ws(
        "/room/:room",
        Callbacks::new().on_open(|ws| {
            if let Some(room) = ws.param("room") {
                ws.join(room);
            }
        }),
    );
    let recorder = Recorder::default();
    assert!(!app.is_clustered());
    assert_eq!(app.cluster_topic_count("r").await, Ok(0), "without a cluster: the local count");
    app.cluster(recorder.clone());
    assert!(app.is_clustered());
    app.cluster(Recorder::default()); // ignored: one cluster per app
    let (addr, _server) = serve(&app).await;

    let mut a = blaze_tokio::connect(&format!("ws://{addr}/room/r")).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || app.topic_count("r") == 1).await);
    let id = app.connections("/room/r")[0].id;
    assert_eq!(recorder.take(), [Call::Joined(path("/room/r"), id), Call::Joined(topic("r"), id)]);

    // Broadcasts: delivered locally and handed over once each, unframed.
    app.broadcast("/room/r/", "to the path").unwrap();
    app.publish("r", Bytes::from_static(&[1, 2, 3])).unwrap();
    app.broadcast_except("/room/r", "not to a", id).unwrap();
    assert_eq!(recv_within(&mut a).await, Some(Message::text("to the path")));
    assert_eq!(recv_within(&mut a).await, Some(Message::Binary(Bytes::from_static(&[1, 2, 3]))));
    let publish = |target, text, payload: &'static [u8]| {
        Call::Publish(ClusterMessage { target, text, payload: Bytes::from_static(payload) })
    };
    assert_eq!(
        recorder.take(),
        [
            publish(path("/room/r"), true, b"to the path"),
            publish(topic("r"), false, &[1, 2, 3]),
            // `except` names a local connection: the other nodes send to all.
            publish(path("/room/r"), true, b"not to a"),
        ]
    );

    // What the backplane delivers reaches local clients, framed once, and
    // is not published again.
    let sink = recorder.sink.get().unwrap();
    let encodings = app.encodings();
    assert_eq!(sink.deliver(&topic("r"), &Message::text("from afar")), 1);
    assert_eq!(sink.deliver(&path("/room/r"), &Message::text("from afar too")), 1);
    assert_eq!(sink.deliver(&topic("elsewhere"), &Message::text("nobody")), 0);
    assert_eq!(app.encodings() - encodings, 3);
    assert_eq!(recv_within(&mut a).await, Some(Message::text("from afar")));
    assert_eq!(recv_within(&mut a).await, Some(Message::text("from afar too")));
    assert_eq!(recorder.take(), []);

    // Presence queries go to the backplane.
    assert_eq!(app.cluster_topic_count("r").await, Ok(42));
    assert_eq!(app.cluster_connection_count("/room/r").await, Ok(42));
    assert_eq!(app.cluster_topic_members("r").await.unwrap(), [ClusterMember { node: 9, id: ConnId(1) }]);

    // Closing leaves the path and every topic.
    drop(a);
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/room/r") == 0).await);
    let mut left = recorder.take();
    left.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(left, [Call::Left(path("/room/r"), id), Call::Left(topic("r"), id)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backplane_attached_late_hears_of_open_connections() {
    let app = App::new();
    app.ws(
        "/feed",
        Callbacks::new().on_open(|ws| {
            ws.join("news");
        }),
    );
    let (addr, _server) = serve(&app).await;
    let _a = blaze_tokio::connect(&format!("ws://{addr}/feed")).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || app.topic_count("news") == 1).await);
    let recorder = Recorder::default();
    app.cluster(recorder.clone());
    let id = app.connections("/feed")[0].id;
    assert_eq!(recorder.take(), [Call::Joined(path("/feed"), id), Call::Joined(topic("news"), id)]);
}

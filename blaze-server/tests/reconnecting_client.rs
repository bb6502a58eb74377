//! `ReconnectingClient` against the real server over the in-memory
//! harness: a partition noticed by the client's heartbeat, a server that
//! goes away (attempts back off exponentially, with jitter), comes back
//! (the client is back within one backoff), and `max_attempts`.
#![cfg(feature = "testing")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_server::testing::{Link, TestServer};
use blaze_server::{
    App, Backoff, Callbacks, ClientEvent, ClientOptions, Connector, ReconnectingClient, WsConfig, WsUrl,
};

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connected,
    Message(String),
    Disconnected(u16),
    Failed { attempt: u32, retry_in: Option<Duration> },
}

type Log = Arc<Mutex<Vec<(Duration, Seen)>>>;

fn start(server: &TestServer, backoff: Backoff, max_attempts: Option<u32>) -> (Log, Arc<Mutex<Vec<Link>>>) {
    let log: Log = Arc::default();
    let links: Arc<Mutex<Vec<Link>>> = Arc::default();
    let connector: Connector<_> = {
        let (server, links) = (server.clone(), links.clone());
        Box::new(move || {
            let stream = server.connect_stream();
            links.lock().unwrap().push(stream.link());
            Box::pin(async move { Ok(stream) })
        })
    };
    // The client's own heartbeat notices a silent network: ping every
    // second, dead after two more.
    let options = ClientOptions::default()
        .config(WsConfig::default().ping_interval(Some(Duration::from_secs(1))).pong_timeout(Duration::from_secs(2)));
    let url = WsUrl::parse("ws://localhost/feed").unwrap();
    let rt = server.runtime().clone();
    let mut client = ReconnectingClient::new(rt.clone(), url, options, connector, backoff, 7);
    if let Some(max) = max_attempts {
        client = client.max_attempts(max);
    }
    let seen = log.clone();
    server.spawn(async move {
        while let Some(event) = client.next().await {
            let entry = match event {
                ClientEvent::Connected => Seen::Connected,
                ClientEvent::Message(m) => Seen::Message(m.as_text().unwrap_or("").to_owned()),
                ClientEvent::Disconnected { code, .. } => Seen::Disconnected(code),
                ClientEvent::ConnectFailed { attempt, retry_in, .. } => Seen::Failed { attempt, retry_in },
                _ => continue,
            };
            seen.lock().unwrap().push((rt.elapsed(), entry));
        }
    });
    (log, links)
}

fn app() -> App {
    let app = App::new();
    app.ws(
        "/feed",
        Callbacks::new().on_open(|ws| {
            let _ = ws.send("hello");
        }),
    );
    app
}

#[test]
fn a_partition_is_noticed_by_the_heartbeat_and_the_client_comes_back() {
    let app = app();
    let server = TestServer::new(&app);
    let (log, links) = start(&server, Backoff::new(Duration::from_millis(200), Duration::from_secs(5)), None);
    assert_eq!(
        log.lock().unwrap().iter().map(|e| e.1.clone()).collect::<Vec<_>>(),
        vec![Seen::Connected, Seen::Message("hello".into())]
    );
    links.lock().unwrap()[0].hold();
    server.advance(Duration::from_secs(10));
    let log = log.lock().unwrap().clone();
    let (lost_at, lost) = log[2].clone();
    assert_eq!(lost, Seen::Disconnected(1006));
    // Ping at 1 s, no pong by 1 + 2 s.
    assert!(lost_at >= Duration::from_secs(3) && lost_at <= Duration::from_millis(3100), "{lost_at:?}");
    let (back_at, back) = log[3].clone();
    assert_eq!(back, Seen::Connected);
    let waited = back_at - lost_at;
    assert!(
        waited >= Duration::from_millis(100) && waited <= Duration::from_millis(200),
        "backoff(0) is 100-200 ms: {waited:?}"
    );
    assert_eq!(log[4].1, Seen::Message("hello".into()));
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(links.lock().unwrap().len(), 2, "one new connection");
}

#[test]
fn a_server_that_is_down_is_retried_with_growing_jittered_delays_until_it_is_back() {
    let app = app();
    let server = TestServer::new(&app);
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(4));
    let (log, _) = start(&server, backoff, None);
    server.shutdown();
    server.advance(Duration::from_secs(20));
    let down = log.lock().unwrap().clone();
    assert_eq!(down[2].1, Seen::Disconnected(1001));
    let failures: Vec<(Duration, u32, Duration)> = down
        .iter()
        .filter_map(|(at, e)| match e {
            Seen::Failed { attempt, retry_in } => Some((*at, *attempt, retry_in.unwrap())),
            _ => None,
        })
        .collect();
    assert!(failures.len() >= 5, "{down:?}");
    for (i, (_, attempt, retry_in)) in failures.iter().enumerate() {
        assert_eq!(*attempt as usize, i + 1);
        let base = Duration::from_millis(100 * (1 << (i + 1))).min(Duration::from_secs(4));
        assert!(*retry_in <= base && *retry_in >= base / 2, "attempt {attempt}: {retry_in:?} vs {base:?}");
        if let Some((next_at, _, _)) = failures.get(i + 1) {
            assert_eq!(*next_at - failures[i].0, *retry_in, "the next attempt starts after exactly the delay");
        }
    }
    assert!(failures.windows(2).any(|w| w[0].2 != w[1].2 / 2), "jittered, not exactly doubling");
    // Back up: the client is back within one (maximal) backoff.
    let restarted_at = server.elapsed();
    server.restart();
    server.advance(Duration::from_secs(5));
    let log = log.lock().unwrap().clone();
    let (back_at, _) = log.iter().rev().find(|(_, e)| *e == Seen::Connected).unwrap().clone();
    assert!(back_at > restarted_at && back_at - restarted_at <= Duration::from_secs(4), "{back_at:?} {restarted_at:?}");
    assert_eq!(log.last().unwrap().1, Seen::Message("hello".into()));
    assert_eq!(app.total_connections(), 1);
}

#[test]
fn max_attempts_gives_up() {
    let app = app();
    let server = TestServer::new(&app);
    let (log, _) = start(&server, Backoff::new(Duration::from_millis(10), Duration::from_secs(1)), Some(3));
    server.shutdown();
    server.advance(Duration::from_secs(60));
    let log = log.lock().unwrap().clone();
    let failed: Vec<_> = log.iter().filter(|(_, e)| matches!(e, Seen::Failed { .. })).collect();
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[2].1, Seen::Failed { attempt: 3, retry_in: None });
    assert_eq!(server.runtime().task_count(), 0, "the client's loop ended");
}

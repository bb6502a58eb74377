//! Scenario: a stream-style route (`ws_stream`) whose handler falls
//! behind a client sending large binary messages, under jitter and a held
//! link. First the handler does not read at all for longer than the
//! client's heartbeat allows (ping interval + pong timeout) while 1.6 MB
//! arrive: its inbox fills (at 1 MiB) and the rest waits in the core's
//! backlog, yet the connection keeps reading, so the client's pings are
//! answered and it stays connected. Then the handler reads slowly while the
//! client streams ~10 MB as fast as TCP lets it: the backlog's bound stops
//! the reading, so what the server holds for the connection stays bounded
//! (the client's bytes sent minus the handler's bytes taken stay under the
//! inbox, backlog, read-ahead and TCP-window bounds), the client's
//! heartbeat still gets its pongs, and the handler gets every message
//! exactly once, in order, intact.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{TokioIo, TokioRuntime};
use sim_tests::*;

/// Messages of the stalled phase, each large enough that the inbox's byte
/// bound (1 MiB), not its message count (64), fills it first.
const STALLED: usize = 40;
const STALLED_SIZE: usize = 40 * 1024;
/// Messages of the streaming phase (8-24 KiB each).
const STREAMED: usize = 600;
const TOTAL: usize = STALLED + STREAMED;
/// How long the handler takes per message while streaming: fast enough
/// that a ping queued behind a full TCP window of data is read well within
/// the pong timeout, far slower than the client can send.
const PACE: Duration = Duration::from_millis(10);
/// How long the handler does not read at first.
const STALL: Duration = Duration::from_secs(5);
const CLIENT: &str = "streamer";

fn size_of(index: usize) -> usize {
    if index < STALLED {
        STALLED_SIZE
    } else {
        8 * 1024 + (index * 7919) % (16 * 1024)
    }
}

/// Message `index`: its index and length, then a pattern of both.
fn payload(index: usize) -> Vec<u8> {
    let len = size_of(index);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(index as u64).to_be_bytes());
    out.extend((8..len).map(|j| (index.wrapping_mul(31) + j) as u8));
    out
}

#[derive(Default)]
struct State {
    /// `false`: the handler does not read.
    reading: AtomicBool,
    /// How many messages the client may have sent.
    target: AtomicUsize,
    /// Payload bytes the client has handed to `send`.
    client_bytes: AtomicU64,
    /// Messages the client has sent.
    client_sent: AtomicUsize,
    /// Payload bytes the handler has taken.
    handler_bytes: AtomicU64,
    /// Messages the handler has taken.
    handler_count: AtomicUsize,
    /// Messages that were not the next one, or not intact.
    errors: Mutex<Vec<String>>,
    /// The client got the handler's `done`.
    done_seen: AtomicBool,
    /// The client should close.
    close: AtomicBool,
    /// How the client's connection ended (code), if it did, and when.
    client_closed: Mutex<Option<(u16, Duration)>>,
    /// The handler's `recv` returned `None`.
    handler_ended: AtomicBool,
    app: Mutex<Option<App>>,
}

async fn handler(mut ws: WsStream, state: Arc<State>) {
    let mut next = 0usize;
    loop {
        while !state.reading.load(Ordering::SeqCst) {
            tokio::time::sleep(TICK).await;
        }
        let Some(message) = ws.recv().await else {
            break;
        };
        let data = message.as_bytes();
        let index = data
            .get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()) as usize);
        if index != Some(next) || data != payload(next).as_slice() {
            lock(&state.errors).push(format!(
                "expected message {next} ({} bytes), got {index:?} ({} bytes)",
                size_of(next),
                data.len()
            ));
        }
        next += 1;
        state
            .handler_bytes
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        state.handler_count.store(next, Ordering::SeqCst);
        if next == TOTAL {
            let _ = ws.send(format!("done:{next}"));
        }
        if next > STALLED {
            tokio::time::sleep(PACE).await;
        }
    }
    state.handler_ended.store(true, Ordering::SeqCst);
}

async fn streamer(state: Arc<State>) {
    let stream = turmoil::net::TcpStream::connect((SERVER, PORT))
        .await
        .expect("connect");
    let url = WsUrl::parse(&format!("ws://{SERVER}:{PORT}{PATH}")).expect("a valid URL");
    // The client's heartbeat: it gives up on a server that does not
    // answer a ping within PONG_TIMEOUT.
    let options = ClientOptions::default().config(
        WsConfig::default()
            .ping_interval(Some(PING_INTERVAL))
            .pong_timeout(PONG_TIMEOUT)
            .handshake_timeout(HANDSHAKE_TIMEOUT),
    );
    let mut ws = blaze_server::connect_with(TokioRuntime, TokioIo(stream), &url, options)
        .await
        .expect("handshake");
    let mut sent = 0usize;
    loop {
        tokio::select! {
            biased;
            message = ws.recv() => match message {
                Some(message) => {
                    if message.as_text() == Some(format!("done:{TOTAL}").as_str()) {
                        state.done_seen.store(true, Ordering::SeqCst);
                    }
                }
                None => {
                    let code = ws.close_status().map_or(0, |(code, _)| code);
                    *lock(&state.client_closed) = Some((code, now()));
                    break;
                }
            },
            _ = tokio::time::sleep(TICK) => {
                if state.close.swap(false, Ordering::SeqCst) {
                    let _ = ws.close(1000u16, "");
                }
                // One message at a time in the client's queue: each write
                // is one message, so turmoil's TCP window (64 segments)
                // holds at most 64 messages.
                while sent < state.target.load(Ordering::SeqCst) && ws.buffered_amount() == 0 {
                    let data = payload(sent);
                    let len = data.len() as u64;
                    if ws.send_binary(data).is_err() {
                        break;
                    }
                    sent += 1;
                    state.client_bytes.fetch_add(len, Ordering::SeqCst);
                    state.client_sent.store(sent, Ordering::SeqCst);
                }
            }
        }
    }
}

fn inbox_backlog(seed: u64) {
    let mut sim = Sim::new(seed, Net::default());
    let state = Arc::new(State::default());
    let host_state = state.clone();
    sim.sim.host(SERVER, move || {
        let state = host_state.clone();
        async move {
            let app = App::new();
            app.config(sim_config());
            let route_state = state.clone();
            app.ws_stream(PATH, move |ws| handler(ws, route_state.clone()));
            *lock(&state.app) = Some(app.clone());
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            app.serve(SimListener(listener)).await?;
            Ok(())
        }
    });
    raw_client(&mut sim, CLIENT, streamer(state.clone()));
    let app = || lock(&state.app).clone().expect("the server started");
    sim.run_until("the client connected", Duration::from_secs(5), || {
        lock(&state.app)
            .as_ref()
            .is_some_and(|a| a.total_connections() == 1)
    });
    let closed = || *lock(&state.client_closed);

    // The handler does not read; the client sends 1.6 MB, the link is held
    // for a while in the middle.
    state.target.store(STALLED, Ordering::SeqCst);
    let stall_start = sim.now();
    let before_hold = sim.random_duration(Duration::from_millis(20), Duration::from_millis(100));
    let held_for = sim.random_duration(Duration::from_millis(200), Duration::from_millis(600));
    sim.run_for(before_hold);
    sim.sim.hold(SERVER, CLIENT);
    sim.run_for(held_for);
    sim.sim.release(SERVER, CLIENT);
    sim.run_until(
        "the client sent the stalled phase",
        Duration::from_secs(3),
        || state.client_sent.load(Ordering::SeqCst) == STALLED,
    );
    while sim.now() - stall_start < STALL {
        sim.step();
        assert_eq!(
            closed(),
            None,
            "the client's heartbeat gave up while the handler was not reading"
        );
    }
    assert_eq!(state.handler_count.load(Ordering::SeqCst), 0);
    assert_eq!(app().total_connections(), 1);

    // The handler reads slowly; the client streams as fast as TCP lets it.
    state.reading.store(true, Ordering::SeqCst);
    state.target.store(TOTAL, Ordering::SeqCst);
    let mut max_held = 0u64;
    let started = sim.now();
    while !state.done_seen.load(Ordering::SeqCst) {
        assert!(
            sim.now() - started < Duration::from_secs(30),
            "the handler never caught up"
        );
        sim.step();
        assert_eq!(
            closed(),
            None,
            "the client's heartbeat gave up while the handler was slow"
        );
        let held =
            state.client_bytes.load(Ordering::SeqCst) - state.handler_bytes.load(Ordering::SeqCst);
        max_held = max_held.max(held);
    }
    let streamed_for = sim.now() - started;
    // Sent but not yet taken, at most: one TCP window of one-message
    // segments (64 x 24 KiB), the read buffer (256 KiB ahead), the core's
    // backlog (1 MiB, plus the message that crossed it), the inbox (1 MiB
    // or 64 messages, plus one), the client's queue and the handler's
    // message. Without the backlog's bound the client would get ~10 MB
    // ahead (it sends far faster than the handler reads).
    let bound = 64 * 24 * 1024 + 256 * 1024 + 2 * (1 << 20) + 4 * 24 * 1024;
    assert!(
        max_held <= bound as u64,
        "the server held up to {max_held} bytes of unread messages (bound {bound})"
    );
    assert!(
        max_held >= 2 << 20,
        "the scenario never filled the backlog (held at most {max_held} bytes)"
    );
    let errors = lock(&state.errors).clone();
    assert!(
        errors.is_empty(),
        "messages lost, reordered or damaged: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(state.handler_count.load(Ordering::SeqCst), TOTAL);
    assert_eq!(
        state.client_bytes.load(Ordering::SeqCst),
        state.handler_bytes.load(Ordering::SeqCst)
    );

    // The client closes; nothing remains.
    state.close.store(true, Ordering::SeqCst);
    sim.run_until(
        "the connection ended on both sides",
        Duration::from_secs(5),
        || {
            state.handler_ended.load(Ordering::SeqCst)
                && closed().is_some()
                && app().total_connections() == 0
        },
    );
    assert_eq!(closed().map(|c| c.0), Some(1000));
    if verbose() {
        eprintln!(
            "inbox/backlog seed {seed}: held at most {max_held} bytes (bound {bound}), streamed {TOTAL} messages in {streamed_for:?} virtual"
        );
    }
}

#[test]
fn slow_stream_handler_keeps_heartbeat_bounded_memory_and_order() {
    run_seeds(
        "slow_stream_handler_keeps_heartbeat_bounded_memory_and_order",
        &[1, 2, 3],
        inbox_backlog,
    );
}

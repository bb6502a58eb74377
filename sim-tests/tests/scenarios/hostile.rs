//! Scenario: a hostile client host beside honest ones. From one host, a
//! flooder (sends small messages as fast as TCP lets it and never reads),
//! a dripper (starts a 1,000-byte message and sends a byte every 500 ms)
//! and a non-reader (upgrades, then neither reads nor writes). Each is cut
//! off by its limit (backpressure 1008 or the heartbeat, the message
//! timeout's 1008), and the honest clients get every broadcast, in order,
//! before, during and after.

use std::time::Duration;

use sim_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTS: usize = 3;
const PER_HOST: usize = 5;
const LIMIT: usize = 64 * 1024;
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(3);
const BEFORE: usize = 300;
const AFTER: usize = 100;
const HOSTILE: &str = "hostile";

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8], announced: Option<usize>) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let len = announced.unwrap_or(payload.len());
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Connects and upgrades; the stream is positioned after the 101's head.
async fn upgraded() -> turmoil::net::TcpStream {
    let mut stream = turmoil::net::TcpStream::connect((SERVER, PORT)).await.expect("connect");
    stream.write_all(upgrade_request(PATH).as_bytes()).await.expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.expect("101 response");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

async fn flooder() {
    let mut stream = upgraded().await;
    let batch: Vec<u8> = (0..50).flat_map(|_| frame(true, 1, b"chatter", None)).collect();
    // Never reads; writes until TCP pushes back for good or the server resets.
    while stream.write_all(&batch).await.is_ok() {
        tokio::time::sleep(TICK).await;
    }
}

async fn dripper() {
    let stream = upgraded().await;
    // It reads everything (so backpressure and heartbeats never cut it
    // off): only the message timeout can.
    let (mut read, mut stream) = stream.into_split();
    tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        while read.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let payload = vec![b'd'; 1000];
    let whole = frame(true, 1, &payload, None);
    let (header, body) = whole.split_at(8);
    if stream.write_all(header).await.is_err() {
        return;
    }
    for &byte in body {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if stream.write_all(&[byte]).await.is_err() {
            return;
        }
    }
}

async fn non_reader() {
    let _stream = upgraded().await;
    std::future::pending::<()>().await;
}

fn hostile(seed: u64) {
    let mut sim = Sim::new(seed, Net::default());
    let config = sim_config().max_backpressure(LIMIT).message_timeout(Some(MESSAGE_TIMEOUT));
    let server = Server::install(&mut sim, ServerSpec { config, ..ServerSpec::default() });
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    fleet.spawn_staggered(&mut sim, PER_HOST, Duration::from_millis(200), Reconnect::OnCommand);
    raw_client(&mut sim, HOSTILE, async {
        tokio::spawn(flooder());
        tokio::spawn(dripper());
        non_reader().await;
    });
    let honest = HOSTS * PER_HOST;
    sim.run_until("every client connected", Duration::from_secs(5), || fleet.all_connected());
    sim.run_until("the hostile connections opened", Duration::from_secs(5), || {
        server.app().connection_count(PATH) == honest + 3
    });
    let hostile_ip = sim.sim.lookup(HOSTILE);
    let is_hostile = |model: &Model, key: &ConnKey| model.remote[key].is_some_and(|a| a.ip() == hostile_ip);
    let honest_keys: Vec<ConnKey> = fleet.agents.iter().map(|a| a.key().unwrap()).collect();
    let app = server.app();
    let honest_ws: Vec<WebSocket> = honest_keys.iter().map(|k| app.connection(ConnId(k.1)).unwrap()).collect();

    let padding = "x".repeat(1000);
    let mut sent = 0;
    let broadcast_paced = |sim: &mut Sim, until: usize, sent: &mut usize| {
        while *sent < until {
            // Paced by the honest readers alone: only a client that does
            // not read can reach the backpressure bound.
            if honest_ws.iter().map(WebSocket::buffered_amount).max().unwrap_or(0) <= LIMIT / 2 {
                for _ in 0..sim.rng.random_range(1..=4usize).min(until - *sent) {
                    server.broadcast(format!("b:{sent}:{padding}", sent = *sent), sim.now());
                    *sent += 1;
                }
            }
            sim.step();
        }
    };
    broadcast_paced(&mut sim, BEFORE, &mut sent);
    // (The registry, not the model: replaying the log every tick would
    // cost more than the simulation.) A connection leaves the registry
    // when its on_close runs.
    sim.run_until("every hostile connection was cut off", MESSAGE_TIMEOUT * 3, || {
        app.connection_count(PATH) == honest
    });
    broadcast_paced(&mut sim, BEFORE + AFTER, &mut sent);
    sim.run_until("every honest client received everything", Duration::from_secs(10), || {
        fleet.agents.iter().all(|a| lock(&a.log).current().is_some_and(|c| c.received.len() >= sent))
    });
    sim.run_for(sim.net.max_latency * 4);

    let model = server.model();
    let mut codes: Vec<u16> = model.closes.iter().filter(|(k, _)| is_hostile(&model, k)).map(|(_, c)| c.1).collect();
    codes.sort_unstable();
    for (key, (times, code, _)) in model.closes.iter().filter(|(k, _)| is_hostile(&model, k)) {
        assert_eq!(*times, 1, "{key:?}: on_close once");
        assert!([1006, 1008].contains(code), "{key:?}: closed with {code}");
    }
    // The dripper reads, so only the message timeout ends it: 1008, a
    // message timeout after it opened (its header went out at once).
    let dripped = model
        .closes
        .iter()
        .filter(|(k, _)| is_hostile(&model, k))
        .filter(|(k, (_, code, at))| *code == 1008 && *at >= model.opened_at[k] + MESSAGE_TIMEOUT)
        .count();
    assert_eq!(dripped, 1, "the dripper is cut off by the message timeout: {:?}", model.closes);
    let expected = numbered_padded(sent, &padding);
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        assert_eq!(log.conns.len(), 1, "honest client {i} reconnected");
        let conn = &log.conns[0];
        assert_eq!(conn.closed, None, "honest client {i} was disconnected");
        check_exact(&format!("honest client {i}"), &conn.texts(), &expected);
        check_exact(&format!("honest client {i} (model)"), &conn.texts(), &model.expected[&conn.key.unwrap()]);
    }
    assert_eq!(app.connection_count(PATH), honest, "only the honest clients remain");
    if verbose() {
        eprintln!("hostile seed {seed}: hostile closes {codes:?}, {sent} broadcasts, {:?} virtual", sim.now());
    }
}

fn numbered_padded(n: usize, padding: &str) -> Vec<String> {
    (0..n).map(|i| format!("b:{i}:{padding}")).collect()
}

#[test]
fn hostile_client_host_is_cut_off_while_honest_clients_are_served() {
    run_seeds("hostile_client_host_is_cut_off_while_honest_clients_are_served", &[1, 2, 3], hostile);
}

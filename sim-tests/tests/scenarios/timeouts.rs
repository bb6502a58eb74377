//! Scenario 6: the server's own deadlines. A client that connects and
//! never sends a request (handshake timeout), one that sends half a
//! request and then one byte at a time (slowloris), and one that never
//! answers a close (close-handshake timeout): each is dropped at its
//! deadline, and nothing of them remains on the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a raw client saw.
#[derive(Debug, Default, Clone)]
struct Raw {
    /// When TCP connected.
    connected_at: Option<Duration>,
    /// When the handshake completed (the mute client).
    upgraded_at: Option<Duration>,
    /// Everything read.
    bytes: Vec<u8>,
    /// When the stream ended (EOF or reset).
    ended_at: Option<Duration>,
}

type RawLog = Arc<Mutex<Raw>>;

/// Reads until the stream ends; records the bytes and when it ended.
async fn read_to_end(mut stream: impl tokio::io::AsyncRead + Unpin, log: &RawLog) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => lock(log).bytes.extend_from_slice(&buf[..n]),
        }
    }
    lock(log).ended_at = Some(now());
}

/// Connects and never sends anything.
async fn idle(start_after: Duration, log: RawLog) {
    tokio::time::sleep(start_after).await;
    let stream = turmoil::net::TcpStream::connect((SERVER, PORT))
        .await
        .expect("connect");
    lock(&log).connected_at = Some(now());
    read_to_end(stream, &log).await;
}

/// Sends half a request, then one more header byte every 300 ms, forever.
async fn slowloris(start_after: Duration, log: RawLog) {
    tokio::time::sleep(start_after).await;
    let stream = turmoil::net::TcpStream::connect((SERVER, PORT))
        .await
        .expect("connect");
    lock(&log).connected_at = Some(now());
    let (read, mut write) = stream.into_split();
    let request = upgrade_request(PATH);
    let (head, rest) = request.split_at(request.len() / 2);
    let rest = rest.as_bytes().to_vec();
    write.write_all(head.as_bytes()).await.expect("write");
    tokio::spawn(async move {
        for &byte in rest.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // The real request's next byte: never completes in time.
            if write.write_all(&[byte]).await.is_err() {
                break;
            }
        }
    });
    read_to_end(read, &log).await;
}

/// Completes the handshake, then never writes again: it reads the
/// server's close frame but never answers it.
async fn mute(start_after: Duration, log: RawLog) {
    tokio::time::sleep(start_after).await;
    let mut stream = turmoil::net::TcpStream::connect((SERVER, PORT))
        .await
        .expect("connect");
    lock(&log).connected_at = Some(now());
    stream
        .write_all(upgrade_request(PATH).as_bytes())
        .await
        .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.expect("101 response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    lock(&log).upgraded_at = Some(now());
    read_to_end(stream, &log).await;
}

/// Decodes server frames; returns (opcode, payload) pairs.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let len = (bytes[1] & 0x7f) as usize;
        assert!(
            len < 126 && bytes[1] & 0x80 == 0,
            "short unmasked frames only"
        );
        out.push((opcode, bytes[2..2 + len].to_vec()));
        bytes = &bytes[2 + len..];
    }
    assert!(bytes.is_empty(), "a partial frame");
    out
}

const EACH: usize = 3;

fn timeouts(seed: u64) {
    let mut sim = Sim::new(seed, Net::default());
    let server = Server::install(&mut sim, ServerSpec::default());
    let mut idles = Vec::new();
    let mut lorises = Vec::new();
    let mut mutes = Vec::new();
    for i in 0..EACH {
        for (kind, logs) in [
            ("idle", &mut idles),
            ("loris", &mut lorises),
            ("mute", &mut mutes),
        ] {
            let log = RawLog::default();
            let start_after = sim.random_duration(Duration::ZERO, Duration::from_millis(1500));
            let client = log.clone();
            match kind {
                "idle" => raw_client(&mut sim, &format!("{kind}{i}"), idle(start_after, client)),
                "loris" => raw_client(
                    &mut sim,
                    &format!("{kind}{i}"),
                    slowloris(start_after, client),
                ),
                _ => raw_client(&mut sim, &format!("{kind}{i}"), mute(start_after, client)),
            }
            logs.push(log);
        }
    }
    // The server closes each mute client a while after its handshake
    // (before its first ping is due); the client never answers.
    let mut close_at: Vec<Option<Duration>> = vec![None; EACH];
    let mut closed_by_server: Vec<Option<(ConnKey, Duration)>> = vec![None; EACH];
    let delays: Vec<Duration> = (0..EACH)
        .map(|_| sim.random_duration(Duration::from_millis(100), Duration::from_millis(600)))
        .collect();
    let started = sim.now();
    while closed_by_server.iter().any(Option::is_none) {
        assert!(
            sim.now() - started < Duration::from_secs(5),
            "the mute clients never upgraded"
        );
        for i in 0..EACH {
            if closed_by_server[i].is_some() {
                continue;
            }
            let Some(upgraded) = lock(&mutes[i]).upgraded_at else {
                continue;
            };
            let due = *close_at[i].get_or_insert(upgraded + delays[i]);
            if sim.now() >= due {
                // Which connection is it? The one whose peer is this host.
                let host = sim.sim.lookup(format!("mute{i}"));
                let model = server.model();
                let key = *model
                    .open
                    .iter()
                    .find(|k| model.remote[k].is_some_and(|a| a.ip() == host))
                    .expect("registered");
                server
                    .app()
                    .connection(ConnId(key.1))
                    .unwrap()
                    .close(1000u16, "bye")
                    .unwrap();
                closed_by_server[i] = Some((key, sim.now()));
            }
        }
        sim.step();
    }
    let everyone_ended = |logs: &[RawLog]| logs.iter().all(|l| lock(l).ended_at.is_some());
    sim.run_until(
        "every raw client was dropped",
        Duration::from_secs(5),
        || everyone_ended(&idles) && everyone_ended(&lorises) && everyone_ended(&mutes),
    );
    sim.run_for(sim.net.max_latency * 5);

    // Dropped at the handshake deadline: the deadline runs from accept
    // (when the client's connect returns) and is not reset by the bytes a
    // slowloris trickles in. The 408 and the FIN take one trip back.
    let slack = sim.net.max_latency + TICK * 5;
    for (kind, logs) in [("idle", &idles), ("slowloris", &lorises)] {
        for (i, log) in logs.iter().enumerate() {
            let log = lock(log).clone();
            let lived = log.ended_at.unwrap() - log.connected_at.unwrap();
            assert!(
                lived >= HANDSHAKE_TIMEOUT && lived <= HANDSHAKE_TIMEOUT + slack,
                "{kind} {i}: dropped {lived:?} after connecting (handshake timeout {HANDSHAKE_TIMEOUT:?})"
            );
            let response = String::from_utf8_lossy(&log.bytes);
            assert!(
                response.starts_with("HTTP/1.1 408"),
                "{kind} {i}: got {response:?}"
            );
        }
    }
    // The mute clients: on_close runs at the close timeout, with our code;
    // the client got the close frame, then the end of the stream.
    let model = server.model();
    for (i, log) in mutes.iter().enumerate() {
        let log = lock(log).clone();
        let (key, closed_at) = closed_by_server[i].unwrap();
        let (times, code, at) = model.closes[&key];
        assert_eq!((times, code), (1, 1000), "mute {i}: on_close");
        let waited = at - closed_at;
        assert!(
            waited >= CLOSE_TIMEOUT && waited <= CLOSE_TIMEOUT + TICK * 2,
            "mute {i}: on_close ran {waited:?} after the close (close timeout {CLOSE_TIMEOUT:?})"
        );
        let frames = frames(&log.bytes);
        assert_eq!(frames[0].0, 0x1, "mute {i}: the hello");
        let close = frames.last().unwrap();
        assert_eq!(close.0, 0x8, "mute {i}: last frame {frames:?}");
        assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1000);
        assert_eq!(&close.1[2..], b"bye");
        let ended = log.ended_at.unwrap();
        assert!(
            ended >= at && ended - at <= slack,
            "mute {i}: stream ended {:?} after on_close",
            ended - at
        );
    }
    // Nothing remains: no registration, no handshake or connection task
    // holding a socket, only the mute clients ever opened.
    let app = server.app();
    assert_eq!(app.total_connections(), 0);
    assert!(model.open.is_empty());
    assert_eq!(model.closes.len(), EACH);
    assert_eq!(
        model.opened_at.len(),
        EACH,
        "only the mute clients completed a handshake"
    );
    assert_eq!(server.tcp_streams(), 0, "sockets left on the server");
}

#[test]
fn handshake_slowloris_and_close_timeouts() {
    run_seeds(
        "handshake_slowloris_and_close_timeouts",
        &[1, 2, 3],
        timeouts,
    );
}

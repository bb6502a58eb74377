//! Scenario: the server-wide admission caps under jitter and a partition.
//! `max_pending_handshakes` = 4 is filled by four clients that connect and
//! never send a request; two more raw clients and every honest Blaze
//! client that tries meanwhile get the static 503 before any request is
//! read. At the handshake deadline the four get 408, the pending count
//! drains and the honest clients (retrying) are admitted and get every
//! broadcast. `max_total_connections` = 10 is then full: one more raw
//! client gets the 503 and two more Blaze clients keep failing, until one
//! honest client closes and a partitioned host's two are pruned by the
//! heartbeat; then both are admitted. The registry is exact at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_PENDING: usize = 4;
const MAX_TOTAL: usize = 10;
const HOSTS: usize = 5;
const PER_HOST: usize = 2;
const EXTRA_BUSY: usize = 2;
const WAITING: usize = 2;

/// What a raw client saw.
#[derive(Debug, Default, Clone)]
struct Raw {
    connected_at: Option<Duration>,
    bytes: Vec<u8>,
    ended_at: Option<Duration>,
}

type RawLog = Arc<Mutex<Raw>>;

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

/// Waits for `go`, connects, sends a whole upgrade request if `request`,
/// and reads until the stream ends.
async fn raw(go: Arc<AtomicBool>, start_after: Duration, request: bool, log: RawLog) {
    while !go.load(Ordering::SeqCst) {
        tokio::time::sleep(TICK).await;
    }
    tokio::time::sleep(start_after).await;
    let mut stream = turmoil::net::TcpStream::connect((SERVER, PORT))
        .await
        .expect("connect");
    lock(&log).connected_at = Some(now());
    if request
        && stream
            .write_all(upgrade_request(PATH).as_bytes())
            .await
            .is_err()
    {
        lock(&log).ended_at = Some(now());
        return;
    }
    read_to_end(stream, &log).await;
}

fn ended(logs: &[RawLog]) -> bool {
    logs.iter().all(|l| lock(l).ended_at.is_some())
}

/// Checks a raw client got the static 503 promptly (no request was read:
/// the answer is written at accept).
fn assert_busy(who: &str, log: &RawLog, slack: Duration) {
    let log = lock(log).clone();
    let response = String::from_utf8_lossy(&log.bytes);
    assert!(
        response.starts_with("HTTP/1.1 503"),
        "{who}: got {response:?}"
    );
    let lived = log.ended_at.unwrap() - log.connected_at.unwrap();
    assert!(lived <= slack, "{who}: the 503 took {lived:?}");
}

fn global_caps(seed: u64) {
    let mut sim = Sim::new(seed, Net::default());
    let config = sim_config()
        .max_pending_handshakes(Some(MAX_PENDING))
        .max_total_connections(Some(MAX_TOTAL));
    let server = Server::install(
        &mut sim,
        ServerSpec {
            config,
            ..ServerSpec::default()
        },
    );
    let now_go = Arc::new(AtomicBool::new(true));
    let later_go = Arc::new(AtomicBool::new(false));

    // Phase 1: the pending handshakes are full.
    let mut idles = Vec::new();
    for i in 0..MAX_PENDING {
        let log = RawLog::default();
        let start = sim.random_duration(Duration::ZERO, Duration::from_millis(100));
        raw_client(
            &mut sim,
            &format!("idle{i}"),
            raw(now_go.clone(), start, false, log.clone()),
        );
        idles.push(log);
    }
    let mut busy = Vec::new();
    for i in 0..EXTRA_BUSY {
        let log = RawLog::default();
        let start = sim.random_duration(Duration::from_millis(500), Duration::from_millis(1500));
        raw_client(
            &mut sim,
            &format!("busy{i}"),
            raw(now_go.clone(), start, true, log.clone()),
        );
        busy.push(log);
    }
    let over = RawLog::default();
    raw_client(
        &mut sim,
        "over",
        raw(later_go.clone(), Duration::ZERO, true, over.clone()),
    );
    let mut fleet = Fleet::install(&mut sim, HOSTS + 1);
    for host in 0..HOSTS {
        for _ in 0..PER_HOST {
            // While the idle clients still hold every pending slot.
            let start_after =
                sim.random_duration(Duration::from_millis(500), Duration::from_millis(1500));
            let seed = sim.rng.random();
            fleet.spawn(
                host,
                AgentSpec {
                    start_after,
                    reconnect: Reconnect::OnCommand,
                    seed,
                    deflate: None,
                },
            );
        }
    }
    sim.run_until(
        "the idle and busy clients were dropped",
        Duration::from_secs(5),
        || ended(&idles) && ended(&busy),
    );
    let slack = sim.net.max_latency * 2 + TICK * 5;
    for (i, log) in busy.iter().enumerate() {
        assert_busy(&format!("busy {i}"), log, slack);
    }
    // The first pending slot frees at the first idle client's accept plus
    // the handshake timeout (accept: at most one trip before its connect
    // returned).
    let mut first_freed = Duration::MAX;
    for (i, log) in idles.iter().enumerate() {
        let log = lock(log).clone();
        let response = String::from_utf8_lossy(&log.bytes);
        assert!(
            response.starts_with("HTTP/1.1 408"),
            "idle {i}: got {response:?}"
        );
        let lived = log.ended_at.unwrap() - log.connected_at.unwrap();
        assert!(
            lived >= HANDSHAKE_TIMEOUT && lived <= HANDSHAKE_TIMEOUT + slack,
            "idle {i}: dropped {lived:?} after connecting"
        );
        first_freed =
            first_freed.min(log.connected_at.unwrap() + HANDSHAKE_TIMEOUT - sim.net.max_latency);
    }

    // The pending count drained: every honest client gets in (retrying
    // after its 503s) and is served.
    let mut traffic = Traffic::new(Duration::from_millis(5), Duration::from_millis(30));
    traffic.run_until(
        &mut sim,
        &server,
        "every honest client connected",
        Duration::from_secs(10),
        || fleet.all_connected(),
    );
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        assert!(
            log.failed_attempts >= 1,
            "honest client {i} was admitted while the pending slots were full"
        );
        assert_eq!(log.conns.len(), 1, "honest client {i}");
    }
    // Nobody upgraded while the idle clients held every pending slot.
    let model = server.model();
    for (key, at) in &model.opened_at {
        assert!(
            *at >= first_freed,
            "{key:?} upgraded at {at:?}, before a pending slot was free ({first_freed:?})"
        );
    }
    let app = server.app();
    assert_eq!(app.total_connections(), MAX_TOTAL);

    // Phase 2: the total cap is full.
    for _ in 0..WAITING {
        let seed = sim.rng.random();
        fleet.spawn(
            HOSTS,
            AgentSpec {
                start_after: Duration::ZERO,
                reconnect: Reconnect::OnCommand,
                seed,
                deflate: None,
            },
        );
    }
    later_go.store(true, Ordering::SeqCst);
    traffic.run_until(
        &mut sim,
        &server,
        "the over-cap client was answered",
        Duration::from_secs(3),
        || ended(std::slice::from_ref(&over)),
    );
    assert_busy("over", &over, slack);
    traffic.run_for(&mut sim, &server, Duration::from_secs(2));
    let waiting: Vec<usize> = (HOSTS * PER_HOST..HOSTS * PER_HOST + WAITING).collect();
    for &w in &waiting {
        let log = fleet.agents[w].snapshot();
        assert!(
            log.conns.is_empty(),
            "waiting client {w} admitted over the total cap"
        );
        assert!(log.failed_attempts >= 2, "waiting client {w}: {log:?}");
    }
    assert_eq!(app.total_connections(), MAX_TOTAL);

    // Free three slots: one honest client closes, a host of two is cut off
    // (no FIN; the heartbeat prunes them).
    let cut_host = 0;
    let cut_name = fleet.hosts[cut_host].clone();
    sim.sim.partition(SERVER, cut_name.as_str());
    let cut: Vec<usize> = fleet.on_host(cut_host).map(|(i, _)| i).collect();
    let closer = fleet.on_host(1).next().unwrap().0;
    let closer_key = fleet.agents[closer].key().unwrap();
    let cut_keys: Vec<ConnKey> = cut
        .iter()
        .map(|&i| fleet.agents[i].key().unwrap())
        .collect();
    fleet.agents[closer].send(Cmd::Close);
    let bound = PING_INTERVAL + PONG_TIMEOUT + CLOSE_TIMEOUT + Duration::from_secs(3);
    traffic.run_until(
        &mut sim,
        &server,
        "the waiting clients were admitted",
        bound,
        || waiting.iter().all(|&w| fleet.agents[w].key().is_some()),
    );
    sim.sim.repair(SERVER, cut_name.as_str());
    traffic.run_for(&mut sim, &server, Duration::from_secs(1));
    let sent = traffic.next;
    let served: Vec<usize> = (0..fleet.agents.len())
        .filter(|i| !cut.contains(i) && *i != closer)
        .collect();
    sim.run_until(
        "every served client received everything",
        Duration::from_secs(5),
        || {
            let model = server.model();
            served.iter().all(|&i| {
                let log = lock(&fleet.agents[i].log);
                let conn = log.current().unwrap();
                conn.received.len() >= model.expected[&conn.key.unwrap()].len()
            })
        },
    );
    sim.run_for(sim.net.max_latency * 5);

    let model = server.model();
    let remaining = MAX_TOTAL - PER_HOST - 1 + WAITING;
    assert_eq!(served.len(), remaining);
    for key in &cut_keys {
        let (times, code, _) = model.closes[key];
        assert_eq!((times, code), (1, 1006), "cut-off {key:?}: on_close");
    }
    assert_eq!(model.closes[&closer_key].0, 1, "the closer's on_close");
    assert_eq!(
        model.closes.len(),
        PER_HOST + 1,
        "only the cut-off and closing clients closed"
    );
    for &i in &served {
        let log = fleet.agents[i].snapshot();
        assert_eq!(log.conns.len(), 1, "client {i} reconnected");
        let conn = &log.conns[0];
        assert_eq!(conn.closed, None, "client {i} was disconnected");
        let expected = &model.expected[&conn.key.unwrap()];
        check_exact(&format!("client {i}"), &conn.texts(), expected);
        if waiting.contains(&i) {
            assert!(!expected.is_empty(), "waiting client {i} got no broadcast");
        }
    }
    assert_eq!(model.open.len(), remaining);
    assert_eq!(app.total_connections(), remaining);
    assert_eq!(app.connection_count(PATH), remaining);
    assert_eq!(
        server.tcp_streams(),
        remaining,
        "sockets left on the server"
    );
    if verbose() {
        let failed: Vec<u32> = fleet
            .agents
            .iter()
            .map(|a| a.snapshot().failed_attempts)
            .collect();
        eprintln!(
            "global caps seed {seed}: {sent} messages, failed attempts {failed:?}, {:?} virtual",
            sim.now()
        );
    }
}

#[test]
fn global_caps_answer_503_and_admit_again_once_drained() {
    run_seeds(
        "global_caps_answer_503_and_admit_again_once_drained",
        &[1, 2, 3],
        global_caps,
    );
}

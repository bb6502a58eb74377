//! Scenario 1: fan-out under latency and jitter.

use std::time::Duration;

use sim_tests::*;

const HOSTS: usize = 10;
const PER_HOST: usize = 21;
const MESSAGES: usize = 1000;

fn fanout(seed: u64) {
    run_fanout(seed, false)
}

/// A dedicated-mode server; every third client offers shared-mode deflate
/// (no context), every third dedicated, the rest none: each broadcast is
/// compressed once for the shared ones and once per dedicated one, and
/// everyone gets everything.
fn fanout_compressed(seed: u64) {
    run_fanout(seed, true)
}

fn run_fanout(seed: u64, compressed: bool) {
    let mut sim = Sim::new(
        seed,
        Net {
            min_latency: Duration::from_millis(1),
            max_latency: Duration::from_millis(25),
        },
    );
    let spec = ServerSpec {
        // A dedicated-mode server keeps context for clients that let it;
        // those offering server_no_context_takeover share one compression.
        config: sim_config()
            .compression_mode(CompressionMode::Dedicated)
            .compression_threshold(0)
            .enable_compression(compressed),
        ..ServerSpec::default()
    };
    let server = Server::install(&mut sim, spec);
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    let deflate = |i: usize| match (compressed, i % 3) {
        (false, _) | (true, 0) => None,
        (true, 1) => Some(DeflateConfig::default().threshold(0)),
        (true, _) => Some(DeflateConfig::default().mode(CompressionMode::Dedicated).threshold(0)),
    };
    fleet.spawn_staggered_with(&mut sim, PER_HOST, Duration::from_millis(500), Reconnect::OnCommand, deflate);
    let dedicated = (0..HOSTS * PER_HOST).filter(|i| compressed && i % 3 == 2).count() as u64;
    let clients = HOSTS * PER_HOST;
    sim.run_until("every client connected", Duration::from_secs(5), || fleet.all_connected());
    assert_eq!(server.app().connection_count(PATH), clients);
    let encodings_before = server.app().encodings();
    let compressions_before = server.app().compressions();

    let started = sim.now();
    for i in 0..MESSAGES {
        let count = server.broadcast(format!("b:{i}"), sim.now());
        assert_eq!(
            count, clients,
            "broadcast {i} was queued for {count} of {clients} clients"
        );
        // Bursts and pauses: 0 to 3 ticks between broadcasts.
        let pause = sim.rng.random_range(0..=3);
        sim.run_for(TICK * pause);
    }
    let expected = numbered("b", 0..MESSAGES);
    sim.run_until(
        "every client received every message",
        Duration::from_secs(5),
        || {
            fleet.agents.iter().all(|a| {
                lock(&a.log)
                    .current()
                    .is_some_and(|c| c.received.len() >= MESSAGES)
            })
        },
    );
    // Anything extra (a duplicate) would arrive within the latency bound.
    sim.run_for(sim.net.max_latency * 4);
    let model = server.model();
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        assert_eq!(log.conns.len(), 1, "client {i} reconnected");
        let conn = &log.conns[0];
        assert_eq!(conn.closed, None, "client {i} was disconnected");
        check_exact(&format!("client {i}"), &conn.texts(), &expected);
        check_exact(
            &format!("client {i} (model)"),
            &conn.texts(),
            &model.expected[&conn.key.unwrap()],
        );
        // Delivered in order in virtual time too.
        assert!(conn.received.windows(2).all(|w| w[0].1 <= w[1].1));
    }
    // Framed once per broadcast, whatever the number of receivers.
    assert_eq!(server.app().encodings() - encodings_before, MESSAGES as u64);
    let per_broadcast = if compressed { 1 + dedicated } else { 0 };
    assert_eq!(
        server.app().compressions() - compressions_before,
        MESSAGES as u64 * per_broadcast,
        "compressed once for the shared-mode clients, once per dedicated one"
    );
    assert_eq!(server.app().connection_count(PATH), clients);
    if verbose() {
        eprintln!(
            "fanout seed {seed}: {clients} clients x {MESSAGES} messages in {:?} virtual",
            sim.now() - started
        );
    }
}

#[test]
fn fanout_under_latency_and_jitter() {
    run_seeds("fanout_under_latency_and_jitter", &[1, 2, 3], fanout);
}

#[test]
fn fanout_to_compressing_and_plain_clients() {
    run_seeds("fanout_to_compressing_and_plain_clients", &[1, 2], fanout_compressed);
}

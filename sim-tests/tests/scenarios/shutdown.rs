//! Scenario 5: graceful shutdown under load. Every client receives close
//! 1001 after exactly the messages queued for it, every `on_close` runs
//! once, and `serve` returns within the drain timeout. A variant adds
//! clients that stopped reading long before (they cannot answer the close):
//! they are dropped at the drain timeout and `serve` still returns in time.

use std::time::Duration;

use sim_tests::*;

const HOSTS: usize = 6;
const PER_HOST: usize = 20;

pub(crate) fn shutdown(
    seed: u64,
    stalled_per_host: usize,
    drain: Duration,
) -> (Vec<AgentLog>, Vec<ServerEvent>) {
    let mut sim = Sim::new(seed, Net::default());
    let server = Server::install(
        &mut sim,
        ServerSpec {
            drain_timeout: drain,
            ..ServerSpec::default()
        },
    );
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    fleet.spawn_staggered(&mut sim, PER_HOST, Duration::from_millis(300), Reconnect::OnCommand);
    let total = HOSTS * PER_HOST;
    sim.run_until("every client connected", Duration::from_secs(5), || fleet.all_connected());
    // The stalled clients stop reading now: with the load below, the
    // server's writes to them block long before the shutdown, so their
    // close frame can never be written.
    let stalled: Vec<usize> = (0..HOSTS)
        .flat_map(|h| (0..stalled_per_host).map(move |i| h * PER_HOST + i))
        .collect();
    for &i in &stalled {
        fleet.agents[i].send(Cmd::Stall);
    }
    let topics: Vec<String> = (0..4).map(|t| format!("t{t}")).collect();
    for agent in &fleet.agents {
        let topic = &topics[sim.rng.random_range(0..topics.len())];
        agent.send(Cmd::Send(format!("join:{topic}")));
    }
    // Load: broadcasts and publishes every 1-3 ms, and every client chatting.
    let mut traffic = Traffic::new(Duration::from_millis(1), Duration::from_millis(2))
        .with_topics(topics.clone());
    let chat = |sim: &mut Sim, fleet: &Fleet| {
        for _ in 0..4 {
            let agent = &fleet.agents[sim.rng.random_range(0..fleet.agents.len())];
            agent.send(Cmd::Send(format!("chat:{}", ms(sim.now()))));
        }
    };
    let load_for = sim.random_duration(Duration::from_millis(600), Duration::from_millis(1500));
    let end = sim.now() + load_for;
    while sim.now() < end {
        chat(&mut sim, &fleet);
        traffic.run_for(&mut sim, &server, TICK);
    }
    assert_eq!(server.app().connection_count(PATH), total);

    let app = server.app();
    let shutdown_at = sim.now();
    app.shutdown();
    // The load goes on until serve returns.
    let stopped = |server: &Server| {
        server
            .events()
            .iter()
            .any(|e| matches!(e, ServerEvent::Stopped { .. }))
    };
    while !stopped(&server) {
        assert!(
            sim.now() - shutdown_at <= drain + Duration::from_secs(2),
            "serve did not return"
        );
        chat(&mut sim, &fleet);
        traffic.run_for(&mut sim, &server, TICK);
    }
    let stopped_at = server
        .events()
        .iter()
        .find_map(|e| match e {
            ServerEvent::Stopped { at, .. } => Some(*at),
            _ => None,
        })
        .unwrap();
    // Past the drain timeout the stragglers are dropped; `serve` returns as
    // soon as their tasks end (the drain loop polls every 5 ms).
    let stop_bound = if stalled.is_empty() {
        drain
    } else {
        drain + Duration::from_millis(10)
    };
    let took = stopped_at - shutdown_at;
    assert!(
        took <= stop_bound,
        "serve returned {took:?} after shutdown (drain timeout {drain:?})"
    );
    if !stalled.is_empty() {
        assert!(
            took >= drain,
            "serve returned after {took:?}, before the stalled clients were dropped"
        );
    }
    assert_eq!(server.tcp_streams(), 0, "sockets left when serve returned");
    for &i in &stalled {
        fleet.agents[i].send(Cmd::Resume);
    }
    // A turmoil limitation, not Blaze's: its FIN takes no flow-control
    // credit, so one sent to a receiver whose window is full waits in the
    // reorder buffer for a segment that never comes (a real stack delivers
    // it once the window opens). The stalled clients learn of the dropped
    // connection from the RST their next write draws instead.
    sim.run_for(sim.net.max_latency * 2);
    for &i in &stalled {
        fleet.agents[i].send(Cmd::Send("probe".into()));
    }
    sim.run_until("every client saw its close", Duration::from_secs(1), || {
        fleet.agents.iter().all(|a| !a.is_open())
    });
    sim.run_until(
        "the server's sockets are gone",
        Duration::from_secs(2),
        || server.tcp_streams() == 0,
    );
    sim.run_for(sim.net.max_latency * 5);

    let model = server.model();
    assert_eq!(
        model.closes.len(),
        total,
        "on_close ran for {} of {total}",
        model.closes.len()
    );
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        assert_eq!(log.conns.len(), 1);
        let conn = &log.conns[0];
        let key = conn.key.unwrap();
        let who = format!("client {i}");
        let (times, code, _) = model.closes[&key];
        assert_eq!(times, 1, "{who}: on_close ran {times} times");
        if stalled.contains(&i) {
            // Dropped: no close frame could reach it, and none came back.
            assert_eq!(
                conn.closed.map(|c| c.0),
                Some(1006),
                "{who} (stalled): close code"
            );
            assert_eq!(code, 1006, "{who} (stalled): on_close code");
            check_prefix(&who, &conn.texts(), &model.expected[&key]);
        } else {
            assert_eq!(conn.closed.map(|c| c.0), Some(1001), "{who}: close code");
            assert_eq!(code, 1001, "{who}: on_close code");
            // Everything queued before the close frame arrived before it.
            check_exact(&who, &conn.texts(), &model.expected[&key]);
        }
    }
    assert!(model.open.is_empty());
    assert_eq!(app.total_connections(), 0);
    for topic in &topics {
        assert_eq!(app.topic_count(topic), 0);
    }
    if verbose() {
        eprintln!(
            "shutdown seed {seed}: {} messages, serve returned {:?} after shutdown",
            traffic.next,
            stopped_at - shutdown_at
        );
    }
    (fleet.snapshot(), server.events())
}

#[test]
fn graceful_shutdown_under_load() {
    run_seeds("graceful_shutdown_under_load", &[1, 2, 3], |seed| {
        shutdown(seed, 0, Duration::from_secs(3));
    });
}

/// The drain timeout (500 ms) is shorter than the close timeout (1 s), so
/// the clients that stopped reading are still in their close handshake
/// when it expires.
#[test]
fn graceful_shutdown_drops_stalled_clients_at_the_drain_timeout() {
    run_seeds(
        "graceful_shutdown_drops_stalled_clients_at_the_drain_timeout",
        &[1, 2, 3],
        |seed| {
            shutdown(seed, 2, Duration::from_millis(500));
        },
    );
}

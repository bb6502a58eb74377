//! Scenario 2: half the clients are cut off without a FIN (their links are
//! partitioned, or held), and never send a close. The server prunes each
//! within ping interval + pong timeout; its counts and topics become
//! exact; the other half never miss a message. After the repair the
//! cut-off clients see their connections closed and reconnect.

use std::collections::BTreeSet;
use std::time::Duration;

use sim_tests::*;

const HOSTS: usize = 8;
const PER_HOST: usize = 25;

/// How a cut-off host loses its link.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// Segments are dropped: after the repair, the client learns of the
    /// dead connection from the RST its next write draws.
    Partition,
    /// Segments are held: on release the client gets what the server
    /// sent before it gave up.
    Hold,
}

fn host_topic(host: usize) -> String {
    format!("h{host}")
}

pub(crate) fn partition(seed: u64) -> (Vec<AgentLog>, Vec<ServerEvent>) {
    let mut sim = Sim::new(seed, Net::default());
    let server = Server::install(&mut sim, ServerSpec::default());
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    fleet.spawn_staggered(&mut sim, PER_HOST, Duration::from_millis(300), Reconnect::OnCommand);
    // Half the hosts are cut off, each by a partition or a hold.
    let mut hosts: Vec<usize> = (0..HOSTS).collect();
    let mut cut = Vec::new();
    while cut.len() < HOSTS / 2 {
        let host = hosts.remove(sim.rng.random_range(0..hosts.len()));
        let how = if sim.rng.random_bool(0.5) {
            Cut::Partition
        } else {
            Cut::Hold
        };
        cut.push((host, how));
    }
    cut.sort_by_key(|(h, _)| *h);
    let is_cut = |host: usize| cut.iter().any(|(h, _)| *h == host);
    let total = HOSTS * PER_HOST;
    let healthy_count = total - cut.len() * PER_HOST;

    sim.run_until("every client connected", Duration::from_secs(5), || fleet.all_connected());
    for agent in &fleet.agents {
        agent.send(Cmd::Send(format!("join:{}", host_topic(agent.host))));
    }
    sim.run_until(
        "every client joined its host's topic",
        Duration::from_secs(1),
        || (0..HOSTS).all(|h| server.app().topic_count(&host_topic(h)) == PER_HOST),
    );
    assert_eq!(server.app().connection_count(PATH), total);
    assert_eq!(server.app().topic_count(ALL), total);

    let mut traffic = Traffic::new(Duration::from_millis(2), Duration::from_millis(15))
        .with_topics((0..HOSTS).map(host_topic));
    // Cut at a random point of the heartbeat cycle.
    let before = sim.random_duration(Duration::from_millis(300), Duration::from_millis(1500));
    traffic.run_for(&mut sim, &server, before);

    // Cut. Nothing is sent: no FIN, no close frame, no RST.
    let cut_at = sim.now();
    for &(host, how) in &cut {
        let name = &fleet.hosts[host];
        match how {
            Cut::Partition => sim.sim.partition(SERVER, name.as_str()),
            Cut::Hold => sim.sim.hold(SERVER, name.as_str()),
        }
    }
    let cut_keys: BTreeSet<ConnKey> = fleet
        .agents
        .iter()
        .filter(|a| is_cut(a.host))
        .map(|a| a.key().unwrap())
        .collect();
    let healthy_keys: BTreeSet<ConnKey> = fleet
        .agents
        .iter()
        .filter(|a| !is_cut(a.host))
        .map(|a| a.key().unwrap())
        .collect();

    // The server prunes every cut-off connection within ping interval +
    // pong timeout (plus a tick: timers fire on the tick that reaches them).
    let bound = PING_INTERVAL + PONG_TIMEOUT + TICK * 2;
    let app = server.app();
    traffic.run_until(
        &mut sim,
        &server,
        "the cut-off connections are pruned",
        bound + Duration::from_secs(1),
        || app.connection_count(PATH) == healthy_count,
    );
    let pruned_within = sim.now() - cut_at;
    assert!(
        pruned_within <= bound,
        "pruned after {pruned_within:?}, bound {bound:?}"
    );
    let model = server.model();
    for key in &cut_keys {
        let (times, code, at) = model
            .closes
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("{key:?} was not closed"));
        assert_eq!(times, 1, "{key:?}: on_close ran {times} times");
        assert_eq!(code, 1006, "{key:?}: closed with {code}");
        // Not early either: the last ping it answered left at most one
        // round trip before the cut, and its pong deadline is
        // `pong_timeout` after that.
        let earliest = PONG_TIMEOUT - sim.net.max_latency * 2 - TICK * 3;
        assert!(
            at > cut_at && at - cut_at >= earliest && at - cut_at <= bound,
            "{key:?} pruned {:?} after the cut (between {earliest:?} and {bound:?})",
            at - cut_at
        );
    }
    for key in &healthy_keys {
        assert!(
            !model.closes.contains_key(key),
            "healthy connection {key:?} was closed"
        );
    }
    // Counts and topics are exact.
    assert_eq!(model.open, healthy_keys);
    assert_eq!(app.connection_count(PATH), healthy_count);
    assert_eq!(app.total_connections(), healthy_count);
    assert_eq!(app.topic_count(ALL), healthy_count);
    for host in 0..HOSTS {
        let want = if is_cut(host) { 0 } else { PER_HOST };
        assert_eq!(
            app.topic_count(&host_topic(host)),
            want,
            "topic of host {host}"
        );
    }
    // The server's sockets go too: each dead connection's driver gives up
    // flushing after the close timeout and drops its stream.
    let freed_bound = bound + CLOSE_TIMEOUT + Duration::from_millis(50);
    traffic.run_until(
        &mut sim,
        &server,
        "the server frees the dead sockets",
        freed_bound,
        || server.tcp_streams() == healthy_count,
    );
    assert!(
        sim.now() - cut_at <= freed_bound,
        "sockets freed {:?} after the cut",
        sim.now() - cut_at
    );

    traffic.run_for(&mut sim, &server, Duration::from_millis(500));

    // Repair. The cut-off clients never learned anything so far.
    for agent in fleet.agents.iter().filter(|a| is_cut(a.host)) {
        assert!(
            agent.is_open(),
            "a cut-off client saw its close before the repair"
        );
    }
    let repaired_at = sim.now();
    for &(host, how) in &cut {
        let name = &fleet.hosts[host];
        match how {
            Cut::Partition => sim.sim.repair(SERVER, name.as_str()),
            Cut::Hold => sim.sim.release(SERVER, name.as_str()),
        }
    }
    // A client learns on its next write (an application message here):
    // the server's socket is gone, so it draws a reset. A held client gets
    // what the server sent before it gave up, but not necessarily the FIN
    // behind it: turmoil's FIN takes no flow-control credit, and one sent
    // once the window was full waits for a segment that never comes (a real
    // stack would deliver it when the window opens).
    for agent in fleet.agents.iter().filter(|a| is_cut(a.host)) {
        agent.send(Cmd::Send("probe".into()));
    }
    traffic.run_until(
        &mut sim,
        &server,
        "the cut-off clients see their connections closed",
        Duration::from_secs(1),
        || {
            fleet
                .agents
                .iter()
                .filter(|a| is_cut(a.host))
                .all(|a| !a.is_open())
        },
    );
    let learned_within = sim.now() - repaired_at;
    assert!(
        learned_within <= sim.net.max_latency * 4 + TICK * 10,
        "took {learned_within:?} after the repair"
    );
    for agent in fleet.agents.iter().filter(|a| is_cut(a.host)) {
        let closed = lock(&agent.log).current().unwrap().closed.unwrap();
        assert_eq!(
            closed.0, 1006,
            "a cut-off client saw close code {}",
            closed.0
        );
    }
    // No healthy client noticed anything.
    assert!(fleet
        .agents
        .iter()
        .filter(|a| !is_cut(a.host))
        .all(Agent::is_open));

    // They reconnect and rejoin.
    for agent in fleet.agents.iter().filter(|a| is_cut(a.host)) {
        agent.send(Cmd::Reconnect);
    }
    traffic.run_until(
        &mut sim,
        &server,
        "the cut-off clients reconnect",
        Duration::from_secs(3),
        || {
            fleet.agents.iter().all(|a| {
                lock(&a.log)
                    .current()
                    .is_some_and(|c| c.key.is_some() && c.closed.is_none())
            })
        },
    );
    for agent in fleet.agents.iter().filter(|a| is_cut(a.host)) {
        agent.send(Cmd::Send(format!("join:{}", host_topic(agent.host))));
    }
    traffic.run_until(
        &mut sim,
        &server,
        "the reconnected clients rejoin",
        Duration::from_secs(1),
        || (0..HOSTS).all(|h| server.app().topic_count(&host_topic(h)) == PER_HOST),
    );
    traffic.run_for(&mut sim, &server, Duration::from_millis(500));
    // Quiet, then settle: everything in flight arrives.
    sim.run_for(sim.net.max_latency * 5);

    let model = server.model();
    let current: BTreeSet<ConnKey> = fleet.agents.iter().map(|a| a.key().unwrap()).collect();
    assert_eq!(
        model.open, current,
        "the registry holds exactly the live connections"
    );
    assert_eq!(app.connection_count(PATH), total);
    assert_eq!(app.topic_count(ALL), total);
    assert_eq!(server.tcp_streams(), total);
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        let who = format!("client {i} on {}", fleet.hosts[agent.host]);
        if is_cut(agent.host) {
            assert_eq!(log.conns.len(), 2, "{who}");
            let old = &log.conns[0];
            check_prefix(
                &format!("{who} (cut-off connection)"),
                &old.texts(),
                &model.expected[&old.key.unwrap()],
            );
            let new = &log.conns[1];
            assert_eq!(new.closed, None);
            check_exact(
                &format!("{who} (new connection)"),
                &new.texts(),
                &model.expected[&new.key.unwrap()],
            );
        } else {
            // The other half never missed a message.
            assert_eq!(log.conns.len(), 1, "{who} reconnected");
            let conn = &log.conns[0];
            assert_eq!(conn.closed, None);
            check_exact(&who, &conn.texts(), &model.expected[&conn.key.unwrap()]);
        }
    }
    for (key, (times, _, _)) in &model.closes {
        assert_eq!(*times, 1, "{key:?}: on_close ran {times} times");
    }
    assert_eq!(model.closes.len(), cut_keys.len());
    let closes: Vec<Duration> = model
        .closes
        .values()
        .map(|(_, _, at)| *at - cut_at)
        .collect();
    let cut_received: usize = fleet
        .agents
        .iter()
        .filter(|a| is_cut(a.host))
        .map(|a| a.snapshot().conns[0].received.len())
        .sum();
    if verbose() {
        eprintln!(
        "partition seed {seed}: cut {cut:?}; pruned after {:?}..{:?}; {} messages sent, cut-off clients got {cut_received} on their old connections",
        closes.iter().min().unwrap(),
        closes.iter().max().unwrap(),
        traffic.next
    );
    }
    (fleet.snapshot(), server.events())
}

#[test]
fn partition_without_fin_is_pruned_within_heartbeat_bound() {
    run_seeds(
        "partition_without_fin_is_pruned_within_heartbeat_bound",
        &[1, 2, 3],
        |seed| {
            partition(seed);
        },
    );
}

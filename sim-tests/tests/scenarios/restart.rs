//! Scenario 3: the server process restarts. Every client sees its
//! connection end, reconnects (retrying while the server is down), and the
//! new process's registry holds exactly the new connections.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use sim_tests::*;

const HOSTS: usize = 6;
const PER_HOST: usize = 20;

// The agent's retry timing (mirrors `agent()` in sim-tests/src/lib.rs,
// whose constants are private): after its connection ends it waits
// 50..300 ms before the first attempt; after a failed attempt 100..400 ms;
// an attempt gives up after `CONNECT_TIMEOUT`.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(300);
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most attempts a client may fail across one restart after `downtime`
/// with the server down (the process gone, the new one not started).
///
/// An attempt started while the server host is down cannot succeed: its
/// SYN finds no process (turmoil holds it until the host runs again, and
/// the fresh process only binds its listener on its first tick, after that
/// delivery), so it fails at the restart, or after `CONNECT_TIMEOUT` if
/// the downtime outlasts it, and the client backs off at least
/// `RETRY_BACKOFF_MIN` before the next attempt. So while down, a client
/// fails at most once per `CONNECT_TIMEOUT + RETRY_BACKOFF_MIN`, plus the
/// one attempt that ends at the restart. Once the new process has started
/// (it binds within a tick), every attempt succeeds: a retry comes at
/// least 100 ms later. A bounce (zero downtime) must cost no failed
/// attempt at all: clients see the close only after the new process is
/// already running, and wait 50 ms more before connecting.
fn max_failed_attempts(downtime: Duration) -> u32 {
    if downtime.is_zero() {
        0
    } else {
        (downtime.as_nanos() / (CONNECT_TIMEOUT + RETRY_BACKOFF_MIN).as_nanos()) as u32 + 1
    }
}

fn restart(seed: u64) {
    let mut sim = Sim::new(seed, Net::default());
    let server = Server::install(&mut sim, ServerSpec::default());
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    fleet.spawn_staggered(&mut sim, PER_HOST, Duration::from_millis(300), Reconnect::Auto);
    let total = HOSTS * PER_HOST;
    let all_on = |fleet: &Fleet, generation: u64| {
        fleet.agents.iter().all(|a| {
            let log = lock(&a.log);
            log.current()
                .is_some_and(|c| c.closed.is_none() && c.key.is_some_and(|k| k.0 == generation))
        })
    };
    sim.run_until("every client connected", Duration::from_secs(5), || {
        all_on(&fleet, 1)
    });
    let mut traffic = Traffic::new(Duration::from_millis(2), Duration::from_millis(10));

    // Round 1: a bounce (the process restarts at once). Round 2: a crash,
    // some downtime during which connection attempts fail, then a start.
    for round in 1..=2u64 {
        let before = sim.random_duration(Duration::from_millis(200), Duration::from_millis(1500));
        traffic.run_for(&mut sim, &server, before);
        let conns_before: Vec<usize> = fleet
            .agents
            .iter()
            .map(|a| lock(&a.log).conns.len())
            .collect();
        let failed_before: Vec<u32> = fleet
            .agents
            .iter()
            .map(|a| lock(&a.log).failed_attempts)
            .collect();
        let old_generation = server.generation();
        let crashed_at = sim.now();
        let mut downtime = Duration::ZERO;
        if round == 1 {
            sim.sim.bounce(SERVER);
        } else {
            sim.sim.crash(SERVER);
            downtime = sim.random_duration(Duration::from_millis(100), Duration::from_millis(1500));
            // No traffic while the server is down: there is no process to send it.
            sim.run_for(downtime);
            sim.sim.bounce(SERVER);
        }
        let restarted_at = sim.now();
        let generation = old_generation + 1;

        // Every client saw its connection end (1006: the process died, the
        // OS closed its sockets, no close frame), within the latency bound.
        sim.run_until(
            "every client saw the restart",
            Duration::from_secs(2),
            || {
                fleet.agents.iter().enumerate().all(|(i, a)| {
                    lock(&a.log)
                        .conns
                        .get(conns_before[i] - 1)
                        .is_some_and(|c| c.closed.is_some())
                })
            },
        );
        for (i, agent) in fleet.agents.iter().enumerate() {
            let log = agent.snapshot();
            let (code, at) = log.conns[conns_before[i] - 1].closed.unwrap();
            assert_eq!(code, 1006, "client {i} saw close code {code}");
            assert!(
                at - crashed_at <= sim.net.max_latency + TICK * 5,
                "client {i} saw the restart {:?} after it",
                at - crashed_at
            );
        }
        // They reconnect to the new process.
        sim.run_until("every client reconnected", Duration::from_secs(10), || {
            server.generation() == generation && all_on(&fleet, generation)
        });
        traffic.run_for(&mut sim, &server, Duration::from_millis(300));

        // The new registry holds exactly the new connections.
        let app = server.app();
        let keys: BTreeSet<ConnKey> = fleet.agents.iter().map(|a| a.key().unwrap()).collect();
        assert_eq!(keys.len(), total);
        let model = server.model();
        assert_eq!(model.open, keys, "round {round}");
        assert_eq!(app.connection_count(PATH), total);
        assert_eq!(app.total_connections(), total);
        assert_eq!(app.topic_count(ALL), total);
        let registered: BTreeSet<(u64, Option<SocketAddr>)> = app
            .connections(PATH)
            .into_iter()
            .map(|c| (c.id.0, c.remote_addr))
            .collect();
        let clients: BTreeSet<(u64, Option<SocketAddr>)> = fleet
            .agents
            .iter()
            .map(|a| {
                let log = a.snapshot();
                let c = log.current().unwrap();
                (c.key.unwrap().1, Some(c.local))
            })
            .collect();
        assert_eq!(registered, clients, "round {round}: registry vs clients");
        // Nothing of the old process is left in the host's TCP stack.
        assert_eq!(server.tcp_streams(), total);
        // Failed attempts, this round only (the first connection may have
        // failed too, if a client started before the first process listened).
        let max_failed = max_failed_attempts(downtime);
        let mut failed_total = 0;
        let mut must_have_retried = 0;
        for (i, agent) in fleet.agents.iter().enumerate() {
            let log = agent.snapshot();
            let failed = log.failed_attempts - failed_before[i];
            failed_total += failed;
            assert!(
                failed <= max_failed,
                "round {round}: client {i} failed {failed} attempts to reconnect, more than the \
                 {max_failed} a downtime of {downtime:?} allows"
            );
            // A client that saw the close early enough made its first attempt
            // (at most RECONNECT_BACKOFF_MAX later) while the server was still
            // down, with margin for the SYN's latency: that attempt must have
            // failed and been retried.
            let (_, closed_at) = log.conns[conns_before[i] - 1].closed.unwrap();
            if closed_at + RECONNECT_BACKOFF_MAX + sim.net.max_latency < restarted_at {
                must_have_retried += 1;
                assert!(
                    failed >= 1,
                    "round {round}: client {i} saw the close at {:?}, the server was down until \
                     {:?}, yet no connection attempt failed",
                    closed_at,
                    restarted_at
                );
            }
        }
        if verbose() {
            eprintln!(
                "restart seed {seed} round {round}: downtime {downtime:?}, {failed_total} failed \
                 attempts (at most {max_failed} each; {must_have_retried} clients had to retry)"
            );
        }
    }
    sim.run_for(sim.net.max_latency * 5);
    // Every message the new processes queued arrived; the connections
    // the restarts killed got a prefix of theirs.
    let model = server.model();
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        let last = log.conns.len() - 1;
        for (n, conn) in log.conns.iter().enumerate() {
            let who = format!("client {i}, connection {n}");
            let expected = &model.expected[&conn.key.expect("hello received")];
            if n == last {
                check_exact(&who, &conn.texts(), expected);
            } else {
                check_prefix(&who, &conn.texts(), expected);
            }
        }
    }
}

#[test]
fn restart_clients_reconnect_and_registry_is_exact() {
    run_seeds(
        "restart_clients_reconnect_and_registry_is_exact",
        &[1, 2, 3],
        restart,
    );
}

//! Blaze's `ReconnectingClient` under partitions: half the client hosts
//! are partitioned from the server for a while. Their clients notice on
//! their own (their heartbeat: no FIN, no RST arrives), retry with
//! exponentially growing, jittered delays while the partition lasts (so a
//! long outage costs a handful of attempts, not one per 100 ms), and are
//! back within one maximal backoff and one attempt of the repair, getting
//! broadcasts again. The other half never notice anything.

use std::time::Duration;

use sim_tests::*;

const HOSTS: usize = 4;
const PER_HOST: usize = 10;

fn auto_reconnect(seed: u64) {
    let mut sim = Sim::new(seed, Net::default());
    let server = Server::install(&mut sim, ServerSpec::default());
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    fleet.spawn_staggered(
        &mut sim,
        PER_HOST,
        Duration::from_millis(300),
        Reconnect::Auto,
    );
    sim.run_until("every client connected", Duration::from_secs(5), || {
        fleet.all_connected()
    });
    let cut: Vec<usize> = {
        let first = sim.rng.random_range(0..HOSTS);
        vec![first, (first + 1) % HOSTS]
    };
    let is_cut = |host: usize| cut.contains(&host);

    let cut_at = sim.now();
    for &host in &cut {
        sim.sim.partition(SERVER, fleet.hosts[host].as_str());
    }
    let outage = sim.random_duration(Duration::from_secs(8), Duration::from_secs(15));
    sim.run_for(outage);
    let repaired_at = sim.now();
    for &host in &cut {
        sim.sim.repair(SERVER, fleet.hosts[host].as_str());
    }
    // Back within the longest backoff plus one attempt.
    let back_within = AUTO_BACKOFF.max + CONNECT_TIMEOUT + sim.net.max_latency * 4;
    sim.run_until(
        "every cut-off client is back",
        back_within + Duration::from_secs(1),
        || {
            fleet
                .agents
                .iter()
                .all(|a| !is_cut(a.host) || (a.snapshot().conns.len() == 2 && a.key().is_some()))
        },
    );
    let everyone_back = sim.now();
    assert!(
        everyone_back - repaired_at <= back_within,
        "back {:?} after the repair",
        everyone_back - repaired_at
    );

    // The reconnected clients receive broadcasts again, like the others.
    let at = sim.now();
    let text = "after the repair".to_owned();
    assert_eq!(server.broadcast(text.clone(), at), HOSTS * PER_HOST);
    sim.run_until("everyone got the broadcast", Duration::from_secs(1), || {
        fleet.agents.iter().all(|a| {
            a.snapshot()
                .current()
                .is_some_and(|c| c.texts().contains(&text.as_str()))
        })
    });

    // What the backoff promises, per client.
    let heartbeat = PING_INTERVAL + PONG_TIMEOUT + sim.net.max_latency * 2 + TICK * 5;
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        if !is_cut(agent.host) {
            assert_eq!(log.conns.len(), 1, "healthy client {i} reconnected");
            assert_eq!(
                log.failed_attempts, 0,
                "healthy client {i} failed an attempt"
            );
            continue;
        }
        let (code, lost_at) = log.conns[0].closed.expect("the cut-off connection ended");
        assert_eq!(code, 1006, "client {i}");
        assert!(
            lost_at > cut_at && lost_at - cut_at <= heartbeat,
            "client {i} noticed {:?} after the cut",
            lost_at - cut_at
        );
        // It tried while cut off, but exponentially less often: no more
        // attempts than fit in the time if every delay were the shortest
        // the backoff allows (all of the jitter taken off), plus the one in
        // flight at the repair.
        let tried_for = repaired_at.saturating_sub(lost_at);
        let failed = log.failed_attempts;
        let max_failed = max_attempts_in(tried_for) + 1;
        assert!(
            failed >= 1,
            "client {i} never tried while cut off for {tried_for:?}"
        );
        assert!(
            failed <= max_failed,
            "client {i} failed {failed} attempts in {tried_for:?} (at most {max_failed})"
        );
        let fixed_100ms = (tried_for.as_millis() / 100) as u32;
        assert!(failed < fixed_100ms / 2, "client {i}: {failed} attempts is not backing off (a fixed 100 ms retry: {fixed_100ms})");
    }
    // The server pruned the old connections and holds exactly the new ones.
    assert_eq!(server.app().connection_count(PATH), HOSTS * PER_HOST);
    if verbose() {
        let failed: Vec<u32> = fleet
            .agents
            .iter()
            .filter(|a| is_cut(a.host))
            .map(|a| a.snapshot().failed_attempts)
            .collect();
        eprintln!(
            "seed {seed}: outage {outage:?}, back after {:?}, failed attempts {failed:?}",
            everyone_back - repaired_at
        );
    }
}

/// Attempts that fit in `window` when each delay is the backoff's
/// shortest: `delay(0)` before the first, `delay(n)` after the n-th failure.
fn max_attempts_in(window: Duration) -> u32 {
    let mut at = AUTO_BACKOFF.delay(0, u64::MAX);
    let mut attempts = 0;
    while at <= window {
        attempts += 1;
        at += AUTO_BACKOFF.delay(attempts, u64::MAX);
    }
    attempts
}

#[test]
fn reconnecting_clients_back_off_during_a_partition_and_return_after_it() {
    run_seeds(
        "reconnecting_clients_back_off_during_a_partition_and_return_after_it",
        &[1, 2, 3],
        auto_reconnect,
    );
}

//! Scenario 7: message loss is impossible to hide. Random joins, leaves,
//! partitions, held links, repairs, broadcasts, publishes and topic
//! changes; after every step, what each client received is checked
//! against a model of what it should have received, computed from the
//! server's own log (who was registered, in which topics, when each
//! message was queued).
//!
//! The invariants, after every step (and a settle of a few round trips):
//! - every connection received a prefix of what the model says it was
//!   sent: nothing lost in the middle, duplicated, reordered or invented;
//! - a connection that is open at both ends and was never cut off
//!   received all of it;
//! - the server's counts and topic memberships equal the model's, and
//!   every connection the server holds is open at the client;
//! - a connection whose link was cut is, within ping interval + pong
//!   timeout of the cut, either pruned by the server (`on_close` 1006 once)
//!   or, if the link came back before anything was lost, whole;
//! - a client whose connection the server dropped learns it (its next
//!   write draws a reset) once its link is up again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sim_tests::*;

const HOSTS: usize = 4;
const INITIAL_PER_HOST: usize = 3;
const MAX_AGENTS: usize = 40;
const STEPS: usize = 60;
const TOPICS: [&str; 3] = ["t0", "t1", "t2"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    Partition,
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    Up { since: Duration },
    Cut { how: Cut, since: Duration },
}

/// What the orchestrator knows about an agent's current connection.
#[derive(Debug, Clone, Default)]
struct Track {
    /// Which of the agent's connections this is about.
    conn: usize,
    /// A connection is being made (spawned or told to reconnect).
    connecting: bool,
    /// The client asked to close.
    leaving: bool,
    /// The link was cut while the connection was open: first and latest cut.
    cut: Option<(Duration, Duration)>,
}

/// The run's trace, for the determinism check.
pub(crate) type Trace = (
    Vec<AgentLog>,
    Vec<ServerEvent>,
    Vec<(u64, usize, Vec<usize>)>,
);

pub(crate) fn model_check(seed: u64) -> Trace {
    let mut sim = Sim::new(seed, Net::default());
    // Compression on: each agent offers shared, dedicated or no deflate.
    let server = Server::install(
        &mut sim,
        ServerSpec {
            config: sim_config().compression_mode(CompressionMode::Dedicated).compression_threshold(0),
            ..ServerSpec::default()
        },
    );
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    let mut links: Vec<Link> = vec![
        Link::Up {
            since: Duration::ZERO
        };
        HOSTS
    ];
    let mut tracks: Vec<Track> = Vec::new();
    let mut counts_log = Vec::new();
    let spawn = |sim: &mut Sim,
                 fleet: &mut Fleet,
                 tracks: &mut Vec<Track>,
                 host: usize,
                 start_after: Duration| {
        let seed = sim.rng.random();
        let deflate = match sim.rng.random_range(0..3) {
            0 => None,
            1 => Some(DeflateConfig::default().threshold(0)),
            _ => Some(DeflateConfig::default().mode(CompressionMode::Dedicated).threshold(0)),
        };
        fleet.spawn(
            host,
            AgentSpec {
                start_after,
                reconnect: Reconnect::OnCommand,
                seed,
                deflate,
            },
        );
        tracks.push(Track {
            conn: 0,
            connecting: true,
            ..Track::default()
        });
    };
    for host in 0..HOSTS {
        for _ in 0..INITIAL_PER_HOST {
            let start_after = sim.random_duration(Duration::ZERO, Duration::from_millis(200));
            spawn(&mut sim, &mut fleet, &mut tracks, host, start_after);
        }
    }
    let settle = sim.net.max_latency * 3;
    sim.run_until("the first clients connect", Duration::from_secs(3), || fleet.all_connected());

    let mut next_message = 0usize;
    let mut history = Vec::new();
    for step in 0..STEPS {
        let action = act(
            &mut sim,
            &server,
            &mut fleet,
            &mut links,
            &mut tracks,
            &mut next_message,
            &spawn,
        );
        history.push(format!("{:?} {action}", sim.now()));
        sim.run_for(settle);
        // Anyone the server dropped whose link is up: write, and learn.
        probe(&server, &fleet, &links, &tracks);
        let counts = checked(&history, &format!("after step {step}"), || {
            check(&mut sim, &server, &fleet, &links, &mut tracks)
        });
        counts_log.push((ms(sim.now()), counts.0, counts.1));
    }

    // The end: every link up, heartbeats run out, everyone learns.
    for host in 0..HOSTS {
        if let Link::Cut { how, .. } = links[host] {
            heal(&mut sim, &fleet, &mut links, host, how);
        }
    }
    let end = sim.now() + PING_INTERVAL + PONG_TIMEOUT + CLOSE_TIMEOUT + Duration::from_millis(500);
    while sim.now() < end {
        sim.run_for(settle);
        probe(&server, &fleet, &links, &tracks);
        checked(&history, "at the end", || {
            check(&mut sim, &server, &fleet, &links, &mut tracks)
        });
    }
    // Quiescence: the server holds exactly the connections open at the
    // clients, and each received everything.
    let model = server.model();
    let open_at_clients: BTreeSet<ConnKey> = fleet
        .agents
        .iter()
        .filter(|a| a.is_open())
        .filter_map(Agent::key)
        .collect();
    assert_eq!(model.open, open_at_clients, "at quiescence");
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        for (n, conn) in log.conns.iter().enumerate() {
            let Some(key) = conn.key else { continue };
            if conn.closed.is_none() {
                check_exact(
                    &format!("client {i} connection {n} at the end"),
                    &conn.texts(),
                    &model.expected[&key],
                );
            }
        }
    }
    for (key, (times, _, _)) in &model.closes {
        assert_eq!(*times, 1, "{key:?}: on_close ran {times} times");
    }
    if verbose() {
        let pruned = model.closes.values().filter(|c| c.1 == 1006).count();
        let left = model.closes.values().filter(|c| c.1 == 1000).count();
        let cuts = history
            .iter()
            .filter(|h| {
                h.split_once(' ')
                    .is_some_and(|(_, a)| a.starts_with("Partition") || a.starts_with("Hold"))
            })
            .count();
        let survived = history.len();
        eprintln!(
            "model check seed {seed}: {} clients, {} connections, {next_message} messages, {cuts} cuts, {pruned} pruned, {left} left, {} steps, {:?} virtual",
            fleet.agents.len(), model.opened_at.len(), survived, sim.now()
        );
    }
    (fleet.snapshot(), server.events(), counts_log)
}

/// Runs the checks; a violation (an error, or a failed assertion inside)
/// is reported with the steps that led to it.
fn checked<T>(history: &[String], when: &str, check: impl FnOnce() -> Result<T, String>) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("{when}: {err}\nsteps so far:\n{}", history.join("\n")),
        Err(panic) => {
            eprintln!(
                "{when}: a check failed; steps so far:\n{}",
                history.join("\n")
            );
            std::panic::resume_unwind(panic)
        }
    }
}

fn heal(sim: &mut Sim, fleet: &Fleet, links: &mut [Link], host: usize, how: Cut) {
    let name = fleet.hosts[host].as_str();
    match how {
        Cut::Partition => sim.sim.repair(SERVER, name),
        Cut::Hold => sim.sim.release(SERVER, name),
    }
    links[host] = Link::Up { since: sim.now() };
}

/// Agents the orchestrator may command: connected, known to the server,
/// on a healthy link, never cut off, not leaving.
fn commandable(
    server_open: &BTreeSet<ConnKey>,
    fleet: &Fleet,
    links: &[Link],
    tracks: &[Track],
) -> Vec<usize> {
    (0..fleet.agents.len())
        .filter(|&i| {
            let agent = &fleet.agents[i];
            let t = &tracks[i];
            matches!(links[agent.host], Link::Up { .. })
                && !t.connecting
                && !t.leaving
                && t.cut.is_none()
                && agent.is_open()
                && agent.key().is_some_and(|k| server_open.contains(&k))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn act(
    sim: &mut Sim,
    server: &Server,
    fleet: &mut Fleet,
    links: &mut [Link],
    tracks: &mut Vec<Track>,
    next_message: &mut usize,
    spawn: &impl Fn(&mut Sim, &mut Fleet, &mut Vec<Track>, usize, Duration),
) -> String {
    let model = server.model();
    let ready = commandable(&model.open, fleet, links, tracks);
    let up: Vec<usize> = (0..HOSTS)
        .filter(|&h| matches!(links[h], Link::Up { .. }))
        .collect();
    let cut: Vec<usize> = (0..HOSTS)
        .filter(|&h| matches!(links[h], Link::Cut { .. }))
        .collect();
    // A link is only cut when nothing on it is half-way through a
    // handshake or a close (those outcomes are covered by other scenarios).
    let cuttable: Vec<usize> = up
        .iter()
        .copied()
        .filter(|&h| {
            fleet
                .on_host(h)
                .all(|(i, _)| !tracks[i].connecting && !tracks[i].leaving)
        })
        .collect();
    let closed_idle: Vec<usize> = (0..fleet.agents.len())
        .filter(|&i| {
            !tracks[i].connecting
                && !fleet.agents[i].is_open()
                && matches!(links[fleet.agents[i].host], Link::Up { .. })
        })
        .collect();
    loop {
        match sim.rng.random_range(0..100) {
            // A new client.
            0..=9 if fleet.agents.len() < MAX_AGENTS && !up.is_empty() => {
                let host = up[sim.rng.random_range(0..up.len())];
                spawn(sim, fleet, tracks, host, Duration::ZERO);
                return format!(
                    "spawn client {} on {}",
                    fleet.agents.len() - 1,
                    fleet.hosts[host]
                );
            }
            // A client leaves.
            10..=17 if !ready.is_empty() => {
                let i = ready[sim.rng.random_range(0..ready.len())];
                fleet.agents[i].send(Cmd::Close);
                tracks[i].leaving = true;
                return format!("client {i} closes");
            }
            // A closed client comes back.
            18..=25 if !closed_idle.is_empty() => {
                let i = closed_idle[sim.rng.random_range(0..closed_idle.len())];
                fleet.agents[i].send(Cmd::Reconnect);
                let conns = lock(&fleet.agents[i].log).conns.len();
                tracks[i] = Track {
                    conn: conns,
                    connecting: true,
                    ..Track::default()
                };
                return format!("client {i} reconnects");
            }
            // Topic changes.
            26..=45 if !ready.is_empty() => {
                let i = ready[sim.rng.random_range(0..ready.len())];
                let topic = TOPICS[sim.rng.random_range(0..TOPICS.len())];
                let verb = if sim.rng.random_bool(0.6) {
                    "join"
                } else {
                    "leave"
                };
                fleet.agents[i].send(Cmd::Send(format!("{verb}:{topic}")));
                return format!("client {i} {verb}s {topic}");
            }
            // Broadcasts.
            46..=62 => {
                let n = sim.rng.random_range(1..=8);
                for _ in 0..n {
                    server.broadcast(format!("b:{next_message}"), sim.now());
                    *next_message += 1;
                    let pause = sim.rng.random_range(0..=2);
                    sim.run_for(TICK * pause);
                }
                return format!("{n} broadcasts");
            }
            // Publishes.
            63..=79 => {
                let n = sim.rng.random_range(1..=8);
                let topic = TOPICS[sim.rng.random_range(0..TOPICS.len())];
                for _ in 0..n {
                    server.publish(topic, format!("p:{topic}:{next_message}"), sim.now());
                    *next_message += 1;
                    let pause = sim.rng.random_range(0..=2);
                    sim.run_for(TICK * pause);
                }
                return format!("{n} publishes to {topic}");
            }
            // A link is cut: partitioned (segments dropped) or held.
            80..=88 if !cuttable.is_empty() && cut.len() < HOSTS - 1 => {
                let host = cuttable[sim.rng.random_range(0..cuttable.len())];
                let how = if sim.rng.random_bool(0.5) {
                    Cut::Partition
                } else {
                    Cut::Hold
                };
                let name = fleet.hosts[host].clone();
                match how {
                    Cut::Partition => sim.sim.partition(SERVER, name.as_str()),
                    Cut::Hold => sim.sim.hold(SERVER, name.as_str()),
                }
                let now = sim.now();
                links[host] = Link::Cut { how, since: now };
                for (i, agent) in fleet
                    .agents
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.host == host)
                {
                    if agent.is_open() {
                        let first = tracks[i].cut.map_or(now, |(first, _)| first);
                        tracks[i].cut = Some((first, now));
                    }
                }
                return format!("{how:?} {name}");
            }
            // A link comes back.
            89..=99 if !cut.is_empty() => {
                let host = cut[sim.rng.random_range(0..cut.len())];
                let Link::Cut { how, .. } = links[host] else {
                    unreachable!()
                };
                heal(sim, fleet, links, host, how);
                return format!("heal {} ({how:?})", fleet.hosts[host]);
            }
            _ => continue,
        }
    }
}

/// Agents the server dropped, still open at the client, on a link that is
/// up: send something, as any application eventually would.
fn probe(server: &Server, fleet: &Fleet, links: &[Link], tracks: &[Track]) {
    let model = server.model();
    for (i, agent) in fleet.agents.iter().enumerate() {
        if tracks[i].connecting || !matches!(links[agent.host], Link::Up { .. }) || !agent.is_open()
        {
            continue;
        }
        if agent.key().is_some_and(|k| model.closes.contains_key(&k)) {
            agent.send(Cmd::Send("probe".into()));
        }
    }
}

/// The invariants. Returns the server's counts (connections, per topic).
fn check(
    sim: &mut Sim,
    server: &Server,
    fleet: &Fleet,
    links: &[Link],
    tracks: &mut [Track],
) -> Result<(usize, Vec<usize>), String> {
    let now = sim.now();
    let app = server.app();
    let model = server.model();
    let bound = PING_INTERVAL + PONG_TIMEOUT + TICK * 2;
    // Hub and log agree.
    let counts = (
        app.connection_count(PATH),
        TOPICS
            .iter()
            .map(|t| app.topic_count(t))
            .collect::<Vec<_>>(),
    );
    if counts.0 != model.open.len() || app.total_connections() != model.open.len() {
        return Err(format!(
            "{} connections registered, the log says {}",
            counts.0,
            model.open.len()
        ));
    }
    for topic in std::iter::once(ALL).chain(TOPICS) {
        if app.topic_count(topic) != model.topic_count(topic) {
            return Err(format!(
                "topic {topic}: {} members, the log says {}",
                app.topic_count(topic),
                model.topic_count(topic)
            ));
        }
    }
    let mut owner: BTreeMap<ConnKey, usize> = BTreeMap::new();
    for (i, agent) in fleet.agents.iter().enumerate() {
        let log = agent.snapshot();
        let t = &mut tracks[i];
        // A connection that finished connecting.
        if t.connecting && log.conns.len() > t.conn && log.conns[t.conn].key.is_some() {
            t.connecting = false;
        }
        for (n, conn) in log.conns.iter().enumerate() {
            let Some(key) = conn.key else { continue };
            owner.insert(key, i);
            let who = format!(
                "client {i} ({}) connection {n} {key:?}",
                fleet.hosts[agent.host]
            );
            // Never anything but a prefix of what was queued for it.
            check_prefix(&who, &conn.texts(), &model.expected[&key]);
        }
        if t.connecting {
            continue;
        }
        let Some(conn) = log.conns.get(t.conn) else {
            continue;
        };
        let Some(key) = conn.key else { continue };
        let who = format!(
            "client {i} ({}) connection {} {key:?}",
            fleet.hosts[agent.host], t.conn
        );
        let server_open = model.open.contains(&key);
        let client_open = conn.closed.is_none();
        let link_up = matches!(links[agent.host], Link::Up { .. });
        if t.leaving {
            // A close asked for by the client completes at both ends.
            if server_open || client_open {
                return Err(format!("{who}: still open after its close (server {server_open}, client {client_open})"));
            }
            let (_, code, _) = model.closes[&key];
            if code != 1000 || conn.closed.unwrap().0 != 1000 {
                return Err(format!(
                    "{who}: closed with {code} / {:?}, not 1000",
                    conn.closed
                ));
            }
            continue;
        }
        if server_open && !client_open {
            return Err(format!(
                "{who}: the server holds a connection the client saw closed ({:?})",
                conn.closed
            ));
        }
        match t.cut {
            None => {
                // Never cut off: nothing may go missing, and nothing is closed.
                if !server_open || !client_open {
                    return Err(format!(
                        "{who}: closed without a cut (server {server_open}, client {:?})",
                        conn.closed
                    ));
                }
                let texts = conn.texts();
                let expected = &model.expected[&key];
                if texts.len() != expected.len() {
                    return Err(format!(
                        "{who}: received {} of {} messages; first missing {:?}",
                        texts.len(),
                        expected.len(),
                        expected.get(texts.len())
                    ));
                }
            }
            Some((first, last)) => {
                if server_open {
                    if now >= last + bound {
                        // Past the heartbeat bound the server still has it: the
                        // link must be up again and nothing may have been lost.
                        if !link_up {
                            return Err(format!(
                                "{who}: still registered {:?} after its link was cut",
                                now - last
                            ));
                        }
                        let texts = conn.texts();
                        let expected = &model.expected[&key];
                        if texts.len() != expected.len() {
                            return Err(format!(
                                "{who}: survived a cut but received {} of {} messages",
                                texts.len(),
                                expected.len()
                            ));
                        }
                        // Whole again: an ordinary connection.
                        t.cut = None;
                    }
                } else {
                    let (times, code, at) = model.closes[&key];
                    if times != 1 || code != 1006 {
                        return Err(format!("{who}: pruned with on_close {code} x{times}"));
                    }
                    // Not before the pong deadline of the last ping that
                    // could have been answered before the first cut.
                    let earliest = first + PONG_TIMEOUT - sim.net.max_latency * 2 - TICK * 3;
                    if at < earliest || at > last + bound {
                        return Err(format!(
                            "{who}: pruned at {at:?}; cut at {first:?}..{last:?}, bound {bound:?}"
                        ));
                    }
                    // The client learns once its link is up and the server's
                    // socket is gone (the driver flushes for close_timeout).
                    if let Link::Up { since } = links[agent.host] {
                        let learn_by = since.max(at + CLOSE_TIMEOUT) + Duration::from_millis(300);
                        if client_open && now >= learn_by {
                            return Err(format!("{who}: dropped by the server at {at:?}, the client still thinks it open"));
                        }
                        if !client_open && conn.closed.unwrap().0 != 1006 {
                            return Err(format!(
                                "{who}: the client saw close code {:?}",
                                conn.closed
                            ));
                        }
                    }
                }
            }
        }
    }
    // Every connection the server holds belongs to a client.
    for key in &model.open {
        if !owner.contains_key(key) {
            return Err(format!("the server holds {key:?}, which no client knows"));
        }
    }
    Ok(counts)
}

#[test]
fn random_faults_never_hide_message_loss() {
    run_seeds(
        "random_faults_never_hide_message_loss",
        &[1, 2, 3, 4, 5],
        |seed| {
            model_check(seed);
        },
    );
}

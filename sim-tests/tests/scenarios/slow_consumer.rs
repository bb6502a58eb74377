//! Scenario 4: one client stops reading. The backpressure policy applies to
//! it alone: what the server queues for it stays under the configured
//! bound until it is closed with 1008, and every other client receives
//! everything, without delay.

use std::time::Duration;

use sim_tests::*;

const HOSTS: usize = 5;
const PER_HOST: usize = 10;
const LIMIT: usize = 64 * 1024;
const MESSAGES: usize = 600;

fn slow_consumer(seed: u64) {
    let mut sim = Sim::new(seed, Net::default());
    // Heartbeats far away: this scenario is about backpressure alone.
    let config = sim_config()
        .ping_interval(Some(Duration::from_secs(30)))
        .pong_timeout(Duration::from_secs(30))
        .max_backpressure(LIMIT)
        .backpressure_policy(BackpressurePolicy::Close);
    let server = Server::install(
        &mut sim,
        ServerSpec {
            config,
            ..ServerSpec::default()
        },
    );
    let mut fleet = Fleet::install(&mut sim, HOSTS);
    fleet.spawn_staggered(&mut sim, PER_HOST, Duration::from_millis(200), Reconnect::OnCommand);
    let total = HOSTS * PER_HOST;
    sim.run_until("every client connected", Duration::from_secs(5), || fleet.all_connected());
    let slow = sim.rng.random_range(0..total);
    fleet.agents[slow].send(Cmd::Stall);
    sim.run_for(sim.net.max_latency * 2);

    let app = server.app();
    let slow_key = fleet.agents[slow].key().unwrap();
    let slow_ws = app.connection(ConnId(slow_key.1)).unwrap();
    let healthy: Vec<WebSocket> = fleet
        .agents
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != slow)
        .map(|(_, a)| app.connection(ConnId(a.key().unwrap().1)).unwrap())
        .collect();

    let padding = "x".repeat(1000);
    let mut max_queued = 0;
    let mut sent = 0;
    let mut paced_ticks = 0;
    let mut closing_at = None;
    while sent < MESSAGES {
        // The publisher never lets a healthy reader's queue pass half the
        // bound, so only the stalled client can reach it.
        if healthy
            .iter()
            .map(WebSocket::buffered_amount)
            .max()
            .unwrap_or(0)
            > LIMIT / 2
        {
            paced_ticks += 1;
        } else {
            let burst = sim.rng.random_range(1..=4);
            for _ in 0..burst.min(MESSAGES - sent) {
                server.broadcast(format!("b:{sent}:{padding}"), sim.now());
                sent += 1;
                max_queued = max_queued.max(slow_ws.buffered_amount());
                if closing_at.is_none() && !slow_ws.is_open() {
                    closing_at = Some(sim.now());
                }
            }
        }
        sim.step();
        max_queued = max_queued.max(slow_ws.buffered_amount());
    }
    // The stalled client was cut off by its policy ...
    assert!(
        !slow_ws.is_open(),
        "the stalled client is still open after {MESSAGES} messages"
    );
    // ... and its queue never exceeded the bound.
    assert!(
        max_queued <= LIMIT,
        "queued {max_queued} bytes for the stalled client (bound {LIMIT})"
    );
    assert!(
        max_queued > LIMIT - 2 * 1024,
        "the queue never filled ({max_queued}): the scenario tested nothing"
    );

    // Its on_close runs once the close handshake times out (it does not read).
    sim.run_until(
        "the stalled client's on_close",
        CLOSE_TIMEOUT + Duration::from_millis(100),
        || server.closed(slow_key).is_some(),
    );
    let closing_at = closing_at.expect("the stalled client was closed by a broadcast");
    let (_, closed_at) = server.closed(slow_key).unwrap();
    let handshake = closed_at - closing_at;
    assert!(
        handshake >= CLOSE_TIMEOUT && handshake <= CLOSE_TIMEOUT + TICK * 2,
        "on_close ran {handshake:?} after the close frame was queued (close timeout {CLOSE_TIMEOUT:?})"
    );
    // It reads again: what was queued before the close, then the close frame.
    fleet.agents[slow].send(Cmd::Resume);
    sim.run_until(
        "the stalled client sees its close",
        Duration::from_secs(1),
        || !fleet.agents[slow].is_open(),
    );
    sim.run_for(sim.net.max_latency * 5);

    let model = server.model();
    let (times, code, _) = model.closes[&slow_key];
    assert_eq!((times, code), (1, 1008), "the stalled client's on_close");
    assert_eq!(
        model.closes.len(),
        1,
        "only the stalled client was closed: {:?}",
        model.closes
    );
    assert_eq!(app.connection_count(PATH), total - 1);
    let slow_log = fleet.agents[slow].snapshot();
    let conn = &slow_log.conns[0];
    assert_eq!(
        conn.closed.map(|c| c.0),
        Some(1008),
        "the stalled client's close code"
    );
    check_prefix(
        "the stalled client",
        &conn.texts(),
        &model.expected[&slow_key],
    );

    // Everyone else got everything, and promptly.
    let sent_at: std::collections::BTreeMap<String, Duration> = server
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Broadcast { text, at, .. } => Some((text, at)),
            _ => None,
        })
        .collect();
    let expected = (0..MESSAGES)
        .map(|i| format!("b:{i}:{padding}"))
        .collect::<Vec<_>>();
    let mut worst = Duration::ZERO;
    for (i, agent) in fleet.agents.iter().enumerate().filter(|(i, _)| *i != slow) {
        let log = agent.snapshot();
        let conn = &log.conns[0];
        assert_eq!(conn.closed, None, "client {i} was closed");
        check_exact(&format!("client {i}"), &conn.texts(), &expected);
        check_exact(
            &format!("client {i} (model)"),
            &conn.texts(),
            &model.expected[&conn.key.unwrap()],
        );
        for (text, at) in &conn.received {
            worst = worst.max(*at - sent_at[text]);
        }
    }
    // One-way latency plus a few ticks of scheduling: nobody waited on the
    // stalled client.
    assert!(
        worst <= sim.net.max_latency + TICK * 5,
        "a healthy client got a message {worst:?} after it was sent"
    );
    if verbose() {
        eprintln!("slow consumer seed {seed}: max queued {max_queued} B, worst delay {worst:?}, paced {paced_ticks} ticks");
    }
}

#[test]
fn slow_consumer_is_cut_off_alone() {
    run_seeds("slow_consumer_is_cut_off_alone", &[1, 2, 3], slow_consumer);
}

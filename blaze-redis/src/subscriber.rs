//! The inbound path: one pub/sub connection subscribed to the channels of
//! the paths and topics that have local members, reconnected with backoff
//! and resubscribed; messages are checked and delivered to local clients.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use redis::aio::PubSub;

use crate::stats::add;
use crate::wire::{self, Rejected};
use crate::{names, Shared};

/// Distinct origin nodes remembered for replay detection; past this the
/// memory is cleared (only forged node ids can get there).
const MAX_NODES: usize = 4096;

/// Keeps a subscription connection up for the life of the backplane.
pub(crate) async fn run(shared: Arc<Shared>, first: PubSub) {
    let config = &shared.config;
    let mut pubsub = Some(first);
    let mut backoff = config.backoff_min;
    let mut last_seq: HashMap<u64, u64> = HashMap::new();
    loop {
        let conn = match pubsub.take() {
            Some(conn) => conn,
            None => match crate::link::connect_pubsub(&shared.client, config).await {
                Ok(conn) => {
                    add(&shared.counters.reconnects, 1);
                    tracing::info!("redis backplane: subscription connection re-established; resubscribing");
                    backoff = config.backoff_min;
                    conn
                }
                Err(err) => {
                    tracing::debug!("redis backplane: subscriber reconnect failed: {err}; next try in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.backoff_max);
                    continue;
                }
            },
        };
        let reason = serve(&shared, conn, &mut last_seq).await;
        shared.counters.subscriptions.store(0, Ordering::Relaxed);
        tracing::warn!("redis backplane: subscription connection lost ({reason}); reconnecting");
        // The subscription connection hears of a dead Redis first (it is
        // always reading); the command connection would only find out on
        // its next write, dropping that write. Reconnect it now too.
        if let Some((generation, _)) = shared.link.get() {
            shared.link.broken(generation);
        }
    }
}

/// Follows interest changes and delivers messages until the connection
/// breaks; returns why.
async fn serve(shared: &Shared, conn: PubSub, last_seq: &mut HashMap<u64, u64>) -> String {
    let config = &shared.config;
    let (mut sink, mut stream) = conn.split();
    let mut subscribed: HashSet<String> = HashSet::new();
    let mut ping = tokio::time::interval(config.heartbeat());
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Bring the subscriptions in line with the local members.
        let wanted: HashSet<String> =
            shared.wanted_targets().iter().map(|t| names::channel(&config.prefix, t)).collect();
        let add: Vec<&String> = wanted.difference(&subscribed).collect();
        if !add.is_empty() {
            if let Err(err) = crate::link::within(config.response_timeout, sink.subscribe(&add)).await {
                return format!("subscribe failed: {err}");
            }
        }
        let remove: Vec<&String> = subscribed.difference(&wanted).collect();
        if !remove.is_empty() {
            if let Err(err) = crate::link::within(config.response_timeout, sink.unsubscribe(&remove)).await {
                return format!("unsubscribe failed: {err}");
            }
        }
        subscribed = wanted;
        shared.counters.subscriptions.store(subscribed.len() as u64, Ordering::Relaxed);

        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => handle(shared, &message, last_seq),
                    None => return "closed by Redis or the network".to_owned(),
                },
                () = shared.interest.notified() => break,
                _ = ping.tick() => {
                    // A Redis that stopped answering (not closed) is found here.
                    if let Err(err) = crate::link::within(config.response_timeout, sink.ping::<()>()).await {
                        return format!("ping failed: {err}");
                    }
                }
            }
        }
    }
}

fn handle(shared: &Shared, message: &redis::Msg, last_seq: &mut HashMap<u64, u64>) {
    let counters = &shared.counters;
    let Some(target) = names::target_of(&shared.config.prefix, message.get_channel_name()) else {
        add(&counters.ignored_foreign, 1);
        return;
    };
    let frame = match wire::decode(message.get_payload_bytes(), shared.config.max_payload) {
        Ok(frame) => frame,
        Err(rejected) => {
            let counter = match rejected {
                Rejected::Foreign => &counters.ignored_foreign,
                Rejected::Version(_) => &counters.ignored_version,
                Rejected::Malformed => &counters.ignored_malformed,
            };
            add(counter, 1);
            tracing::debug!("redis backplane: ignored a message on {}: {rejected:?}", message.get_channel_name());
            return;
        }
    };
    if frame.node == shared.node {
        // Our own, already delivered locally.
        return;
    }
    if last_seq.len() >= MAX_NODES && !last_seq.contains_key(&frame.node) {
        last_seq.clear();
    }
    let last = last_seq.entry(frame.node).or_insert(0);
    if frame.seq <= *last {
        add(&counters.ignored_replayed, 1);
        return;
    }
    *last = frame.seq;
    if let Some(sink) = shared.sink.get() {
        sink.deliver(&target, &frame.message);
        add(&counters.received, 1);
    }
}

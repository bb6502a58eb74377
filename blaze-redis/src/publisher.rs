//! The outbound path: a bounded queue that handlers push to without
//! waiting, and one task writing it to Redis in pipelined batches, in
//! order (so per-publisher order holds across nodes).

use std::io::Write;
use std::sync::Arc;

use blaze_server::ClusterMessage;
use redis::{RedisWrite, ToRedisArgs};
use tokio::sync::mpsc;

use crate::stats::add;
use crate::{names, wire, Shared};

/// The most publishes written as one pipeline.
const BATCH: usize = 256;

/// The message argument of one PUBLISH: the header and the payload are
/// written straight into the command buffer (no intermediate copy).
struct WireArg<'a> {
    header: [u8; wire::HEADER_LEN],
    payload: &'a [u8],
}

impl ToRedisArgs for WireArg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        // Writing to the command buffer cannot fail.
        let _ = arg.write_all(&self.header);
        let _ = arg.write_all(self.payload);
    }
}

/// Writes queued broadcasts until the queue's senders are gone.
pub(crate) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<ClusterMessage>) {
    let counters = &shared.counters;
    let mut seq: u64 = 0;
    let mut batch = Vec::with_capacity(BATCH);
    // Whether the current outage was already reported (one warning each).
    let mut outage_reported = false;
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len() as u64;
        let Some((generation, mut conn)) = shared.link.get() else {
            add(&counters.dropped_disconnected, n);
            if !std::mem::replace(&mut outage_reported, true) {
                tracing::warn!("redis backplane: Redis unreachable; broadcasts to other nodes are dropped (counted in stats().dropped_disconnected) until it is back");
            }
            batch.clear();
            continue;
        };
        let mut pipe = redis::pipe();
        for message in &batch {
            // Numbered in queue order, the order Redis delivers them in.
            seq += 1;
            let arg = WireArg { header: wire::header(shared.node, seq, message.text), payload: &message.payload };
            pipe.cmd("PUBLISH").arg(names::channel(&shared.config.prefix, &message.target)).arg(arg).ignore();
        }
        batch.clear();
        match crate::link::within(shared.config.response_timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(()) => {
                add(&counters.published, n);
                if std::mem::replace(&mut outage_reported, false) {
                    tracing::info!("redis backplane: publishing to other nodes again");
                }
            }
            Err(err) => {
                add(&counters.dropped_disconnected, n);
                if !std::mem::replace(&mut outage_reported, true) {
                    tracing::warn!("redis backplane: publishing failed ({err}); {n} broadcasts dropped for other nodes, more are dropped (counted in stats().dropped_disconnected) until Redis is back");
                }
                shared.link.broken(generation);
            }
        }
    }
}

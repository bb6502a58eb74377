//! Counters: what crossed, what was dropped and why.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a backplane's counters, from [`crate::RedisBackplane::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Broadcasts written to Redis.
    pub published: u64,
    /// Broadcasts not sent to the other nodes because the outbound queue
    /// was full (Redis slower than the publishers).
    pub dropped_queue_full: u64,
    /// Broadcasts not sent to the other nodes because Redis was
    /// unreachable (or failed the write) when they were due.
    pub dropped_disconnected: u64,
    /// Broadcasts from other nodes delivered to local clients.
    pub received: u64,
    /// Messages on a Blaze channel not written by Blaze (another
    /// application), ignored.
    pub ignored_foreign: u64,
    /// Blaze messages of another wire version, ignored.
    pub ignored_version: u64,
    /// Broken Blaze messages (truncated, bad flags, text not UTF-8, too
    /// large), ignored.
    pub ignored_malformed: u64,
    /// Messages whose sequence number was not above the last one seen
    /// from their node (a replay), ignored.
    pub ignored_replayed: u64,
    /// Times a connection to Redis (commands or subscriptions) was
    /// re-established after it broke.
    pub reconnects: u64,
    /// Redis channels this node is subscribed to now.
    pub subscriptions: u64,
}

impl BackplaneStats {
    /// Every broadcast the other nodes did not get from this one.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_disconnected
    }

    /// Every message from Redis that was ignored.
    pub fn ignored(&self) -> u64 {
        self.ignored_foreign + self.ignored_version + self.ignored_malformed + self.ignored_replayed
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_disconnected: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) ignored_foreign: AtomicU64,
    pub(crate) ignored_version: AtomicU64,
    pub(crate) ignored_malformed: AtomicU64,
    pub(crate) ignored_replayed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> BackplaneStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BackplaneStats {
            published: get(&self.published),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_disconnected: get(&self.dropped_disconnected),
            received: get(&self.received),
            ignored_foreign: get(&self.ignored_foreign),
            ignored_version: get(&self.ignored_version),
            ignored_malformed: get(&self.ignored_malformed),
            ignored_replayed: get(&self.ignored_replayed),
            reconnects: get(&self.reconnects),
            subscriptions: get(&self.subscriptions),
        }
    }
}

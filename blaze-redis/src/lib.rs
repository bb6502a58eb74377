//! # blaze-redis: a Blaze cluster on Redis pub/sub
//!
//! Several Blaze servers behind a load balancer share broadcasts, rooms
//! and presence through one Redis (or Valkey). One line turns it on:
//!
//! ```no_run
//! # async fn demo() -> Result<(), blaze_redis::Error> {
//! let app = blaze_tokio::App::new();
//! app.cluster(blaze_redis::RedisBackplane::connect("redis://:secret@127.0.0.1:6379").await?);
//! // Every app.broadcast / publish / ws.broadcast now reaches every node.
//! # Ok(()) }
//! ```
//!
//! ## What happens to a broadcast
//! The publishing node delivers it to its own clients at once (framed
//! once, not through Redis) and queues it for Redis without waiting. One
//! task writes the queue to Redis in pipelined batches: one `PUBLISH` per
//! broadcast on the target's channel (`{prefix}:p:{path}` or
//! `{prefix}:t:{topic}`, see the layout in the `names` module), carrying a
//! 22-byte header (magic, version, node id, sequence number, text flag;
//! the `wire` module) and the raw payload. Each node subscribes to the
//! channel of a path or topic only while it has a local member there, so a
//! node with nobody in room X never receives room X's traffic. A receiving
//! node checks the message, ignores its own, frames it once and queues it
//! on all its local members.
//!
//! ## Delivery guarantee
//! While Redis is up: every matching client on every node gets each
//! broadcast exactly once, in per-publisher order (one writer per node,
//! Redis keeps a connection's order, receivers drop anything whose
//! sequence number is not above the last seen from that node). Across
//! nodes it is at-most-once: a broadcast made while Redis is unreachable
//! or slower than [`RedisConfig::queue_capacity`] allows is still delivered
//! locally but dropped for the other nodes, counted
//! ([`BackplaneStats::dropped`]) and logged (a `tracing` warning per
//! outage); there is no replay. Cross-node delivery resumes by itself when
//! Redis is back (reconnect with doubling backoff, resubscription).
//! Messages on a Blaze channel that Blaze did not write, of another wire
//! version, or malformed are ignored and counted.
//!
//! ## Presence
//! [`blaze_server::App::cluster_connection_count`],
//! [`blaze_server::App::cluster_topic_count`] and
//! [`blaze_server::App::cluster_topic_members`] ask Redis, where each node
//! keeps its members per path and topic with a TTL
//! ([`RedisConfig::presence_ttl`], default 15 s) renewed by a heartbeat
//! every third of it: a crashed node's members disappear within the TTL.
//! Updates reach Redis asynchronously (within a round trip normally).
//!
//! ## Why the `redis` crate, with our own reconnect loop
//! `redis` (redis-rs) is the most used Rust client and is maintained by
//! the Redis organisation; its RESP2 `PubSub` connection splits into a
//! sink and a stream, which lets one task follow subscription changes and
//! messages together. Its `ConnectionManager` reconnects commands but a
//! publish made during the outage waits for (or fails on) the reconnect,
//! and resubscription is only automatic on RESP3. We keep the reconnect
//! in our hands instead: one task per connection reconnects with backoff
//! while publishers never wait (with no connection a broadcast is dropped
//! and counted at once), the subscriber resubscribes exactly the channels
//! wanted now, and a ping every heartbeat finds a Redis that hangs without
//! closing. `fred` would do most of this itself but is a larger
//! dependency with its own runtime abstractions; what we need here is
//! small enough to own and test.
//!
//! ## URLs
//! `redis://[user][:password@]host:port[/db]` (the password is sent with
//! AUTH), and `rediss://` for TLS with the `tls` feature (rustls, the
//! system's root certificates).
//!
//! The backplane runs on tokio (it spawns its tasks on the runtime that
//! calls [`RedisBackplane::connect`]).
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod config;
mod link;
mod names;
mod presence;
mod publisher;
mod stats;
mod subscriber;
mod wire;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use blaze_server::{Backplane, BoxFuture, ClusterError, ClusterMember, ClusterMessage, ClusterSink, ConnId, Target};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

pub use config::RedisConfig;
pub use stats::BackplaneStats;

/// Why [`RedisBackplane::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed (or needs the `tls` feature).
    #[error("invalid Redis URL: {0}")]
    Url(redis::RedisError),
    /// Redis could not be reached, refused the password, or did not answer.
    #[error("cannot connect to Redis: {0}")]
    Connect(redis::RedisError),
}

/// This node's local members, which drive subscriptions and presence.
#[derive(Default)]
struct Local {
    members: HashMap<Target, HashSet<ConnId>>,
    /// Targets whose members changed since the presence task last wrote.
    dirty: HashSet<Target>,
}

/// What the tasks share.
struct Shared {
    config: RedisConfig,
    node: u64,
    client: redis::Client,
    counters: stats::Counters,
    local: Mutex<Local>,
    /// Wakes the subscriber: the set of targets with local members changed.
    interest: Notify,
    /// Wakes the presence task: some target's members changed.
    presence_dirty: Notify,
    link: link::Link,
    sink: OnceLock<ClusterSink>,
}

impl Shared {
    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wanted_targets(&self) -> Vec<Target> {
        self.local().members.keys().cloned().collect()
    }

    fn local_members(&self, target: &Target) -> HashSet<ConnId> {
        self.local().members.get(target).cloned().unwrap_or_default()
    }

    fn take_dirty(&self) -> Vec<Target> {
        self.local().dirty.drain().collect()
    }

    fn mark_dirty(&self, targets: Vec<Target>) {
        self.local().dirty.extend(targets);
    }

    fn mark_all_dirty(&self) {
        let mut local = self.local();
        let all: Vec<Target> = local.members.keys().cloned().collect();
        local.dirty.extend(all);
    }
}

/// Stops the tasks when the last handle goes (without cleaning up
/// presence, like a crash; see [`RedisBackplane::leave`]).
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A [`Backplane`] on Redis pub/sub. Cheap to clone: clones share one
/// set of connections (keep one to read [`RedisBackplane::stats`] after
/// passing another to `App::cluster`). Its tasks stop when the last clone
/// is dropped.
#[derive(Clone)]
pub struct RedisBackplane {
    shared: Arc<Shared>,
    queue: mpsc::Sender<ClusterMessage>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &names::node_hex(self.shared.node))
            .field("prefix", &self.shared.config.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// Connects with the default [`RedisConfig`]. Fails if Redis cannot be
    /// reached now (or refuses the password); later outages are survived.
    pub async fn connect(url: &str) -> Result<RedisBackplane, Error> {
        RedisBackplane::connect_with(url, RedisConfig::default()).await
    }

    /// Connects with `config`.
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<RedisBackplane, Error> {
        let client = redis::Client::open(url).map_err(Error::Url)?;
        RedisBackplane::connect_client(client, config).await
    }

    /// Connects through a `redis::Client` built by the caller: for TLS with
    /// a private CA or a client certificate
    /// (`redis::Client::build_with_tls`, `tls` feature), or any other
    /// connection setting the URL cannot carry.
    pub async fn connect_client(client: redis::Client, config: RedisConfig) -> Result<RedisBackplane, Error> {
        #[cfg(feature = "tls")]
        {
            // rustls needs a process-wide provider; someone may have set one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let commands = link::connect(&client, &config).await.map_err(Error::Connect)?;
        let pubsub = link::connect_pubsub(&client, &config).await.map_err(Error::Connect)?;
        let (queue, outbound) = mpsc::channel(config.queue_capacity);
        let shared = Arc::new(Shared {
            node: random_node_id(),
            link: link::Link::new(client.clone(), commands),
            client,
            config,
            counters: stats::Counters::default(),
            local: Mutex::default(),
            interest: Notify::new(),
            presence_dirty: Notify::new(),
            sink: OnceLock::new(),
        });
        let tasks = vec![
            tokio::spawn(publisher::run(shared.clone(), outbound)).abort_handle(),
            tokio::spawn(subscriber::run(shared.clone(), pubsub)).abort_handle(),
            tokio::spawn(presence::run(shared.clone())).abort_handle(),
            {
                let shared = shared.clone();
                tokio::spawn(async move { shared.link.run(&shared.config, &shared.counters).await }).abort_handle()
            },
        ];
        tracing::info!(
            "redis backplane: node {} joined (prefix {:?})",
            names::node_hex(shared.node),
            shared.config.prefix
        );
        Ok(RedisBackplane { shared, queue, _tasks: Arc::new(Tasks(tasks)) })
    }

    /// This node's id in the cluster (random per backplane).
    pub fn node_id(&self) -> u64 {
        self.shared.node
    }

    /// The counters: published, dropped, received, ignored, reconnects.
    pub fn stats(&self) -> BackplaneStats {
        self.shared.counters.snapshot()
    }

    /// How many Redis channels this node is subscribed to now (one per
    /// path and topic with local members, once the subscription went
    /// through; 0 while the subscription connection is down).
    pub fn subscriptions(&self) -> u64 {
        self.stats().subscriptions
    }

    /// Removes this node's presence from Redis at once (for a clean
    /// shutdown; without it the entries expire after the presence TTL).
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let targets = self.shared.wanted_targets();
        {
            let mut local = self.shared.local();
            local.members.clear();
            local.dirty.clear();
        }
        self.shared.interest.notify_one();
        presence::clear(&self.shared, &targets).await.map_err(|e| ClusterError::Unavailable(e.to_string()))
    }
}

impl Backplane for RedisBackplane {
    fn attach(&self, sink: ClusterSink) {
        let _ = self.shared.sink.set(sink);
    }

    fn publish(&self, message: ClusterMessage) {
        match self.queue.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let before = self.shared.counters.dropped_queue_full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // One warning per 10,000 drops, not one per broadcast.
                if before.is_multiple_of(10_000) {
                    tracing::warn!("redis backplane: outbound queue full (Redis slow or away); broadcasts to other nodes dropped: {}", before + 1);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn joined(&self, target: &Target, id: ConnId) {
        let mut local = self.shared.local();
        let members = local.members.entry(target.clone()).or_default();
        let first = members.is_empty();
        if members.insert(id) {
            local.dirty.insert(target.clone());
            drop(local);
            if first {
                self.shared.interest.notify_one();
            }
            self.shared.presence_dirty.notify_one();
        }
    }

    fn left(&self, target: &Target, id: ConnId) {
        let mut local = self.shared.local();
        let Some(members) = local.members.get_mut(target) else {
            return;
        };
        if !members.remove(&id) {
            return;
        }
        let last = members.is_empty();
        if last {
            local.members.remove(target);
        }
        local.dirty.insert(target.clone());
        drop(local);
        if last {
            self.shared.interest.notify_one();
        }
        self.shared.presence_dirty.notify_one();
    }

    fn members(&self, target: Target) -> BoxFuture<Result<Vec<ClusterMember>, ClusterError>> {
        let shared = self.shared.clone();
        Box::pin(async move { presence::members(&shared, &target).await })
    }

    fn count(&self, target: Target) -> BoxFuture<Result<usize, ClusterError>> {
        let shared = self.shared.clone();
        Box::pin(async move { presence::count(&shared, &target).await })
    }
}

/// A node id from the OS-seeded hasher keys (no extra dependency): unique
/// per process and per backplane with overwhelming probability.
fn random_node_id() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now, n))
}

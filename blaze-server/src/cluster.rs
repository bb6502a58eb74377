//! The cluster seam: broadcasts, rooms and presence across servers.
//!
//! A [`Backplane`] carries broadcasts between Blaze nodes through a broker
//! (the `blaze-redis` crate implements it on Redis pub/sub). Turning it on
//! is one line, [`App::cluster`]; after that every `broadcast`,
//! `broadcast_except`, `publish` and `ws.broadcast`/`ws.publish(_others)`
//! is delivered to this node's clients at once (framed once, as without a
//! cluster) and handed to the backplane as one [`ClusterMessage`]: the raw
//! payload and whether it is text, never the per-client frames. Each other
//! node frames it once for all its local clients ([`ClusterSink::deliver`]).
//!
//! The hub also tells the backplane who is where ([`Backplane::joined`],
//! [`Backplane::left`]): a connection on a path, a member of a topic. A
//! backplane uses it for presence and to subscribe to a path's or topic's
//! traffic only while this node has a local member there.
//!
//! `except` (in `broadcast_except`, `publish_others`) names a connection of
//! the publishing node; it does not cross the wire.

use std::sync::{Arc, Weak};

use blaze_proto::{ConnId, Message, PreparedMessage, Registry};
use bytes::Bytes;

use crate::app::App;
use crate::hub::Hub;
use crate::router::normalize_path;
use crate::runtime::BoxFuture;
use crate::socket::ConnShared;

/// Where a broadcast goes: every connection on a path, or every member of
/// a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Connections on a request path (normalized like request paths).
    Path(String),
    /// Members of a topic.
    Topic(String),
}

/// One broadcast as it crosses the cluster: its target and the payload,
/// not framed (each receiving node frames it once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMessage {
    /// The path or topic.
    pub target: Target,
    /// `true` for a text message (the payload is valid UTF-8), `false` for
    /// binary.
    pub text: bool,
    /// The message payload, shared with the local frame (no copy).
    pub payload: Bytes,
}

/// A connection somewhere in the cluster, as listed by
/// [`App::cluster_topic_members`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterMember {
    /// The node it is connected to (the backplane's node id).
    pub node: u64,
    /// Its id on that node (ids are unique per node only).
    pub id: ConnId,
}

/// Why a cluster-wide query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The broker could not be reached or answered with an error.
    #[error("cluster backplane unavailable: {0}")]
    Unavailable(String),
    /// The broker did not answer in time.
    #[error("cluster backplane timed out")]
    Timeout,
}

/// A broker connecting Blaze nodes. Implemented once per broker (Redis in
/// `blaze-redis`); applications only pass one to [`App::cluster`].
///
/// The hub calls these methods from handlers, sometimes while it holds its
/// registry lock: they must return at once (queue, never wait on the
/// network) and must not call back into the app.
pub trait Backplane: Send + Sync + 'static {
    /// Called once by [`App::cluster`]: messages from other nodes are
    /// delivered to this node's clients through `sink`.
    fn attach(&self, sink: ClusterSink);

    /// Sends a broadcast, already delivered locally, to the other nodes.
    /// Must not block; a backplane that cannot keep up drops and counts.
    fn publish(&self, message: ClusterMessage);

    /// A local connection is now on `target` (opened on a path, joined a
    /// topic). The first one means "subscribe to its traffic".
    fn joined(&self, target: &Target, id: ConnId);

    /// A local connection left `target` (closed, left the topic). The last
    /// one means "unsubscribe".
    fn left(&self, target: &Target, id: ConnId);

    /// Every connection on `target` in the whole cluster.
    fn members(&self, target: Target) -> BoxFuture<Result<Vec<ClusterMember>, ClusterError>>;

    /// How many connections are on `target` in the whole cluster.
    fn count(&self, target: Target) -> BoxFuture<Result<usize, ClusterError>>;
}

/// Delivers broadcasts that came from other nodes to this node's clients.
/// Handed to [`Backplane::attach`]; cheap to clone; does nothing once the
/// app is gone.
#[derive(Clone)]
pub struct ClusterSink {
    hub: Weak<Hub>,
}

impl std::fmt::Debug for ClusterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSink").field("attached", &(self.hub.strong_count() > 0)).finish()
    }
}

impl ClusterSink {
    /// Frames `message` once and queues it on every local connection on
    /// `target`, without publishing it again. Returns how many it was
    /// queued for.
    pub fn deliver(&self, target: &Target, message: &Message) -> usize {
        let Some(hub) = self.hub.upgrade() else {
            return 0;
        };
        // Counted in `App::encodings`: one per message per node.
        let Ok(prepared) = hub.prepare(message.clone()) else {
            return 0;
        };
        match target {
            Target::Path(path) => hub.deliver_local_path(path, &prepared, None),
            Target::Topic(topic) => hub.deliver_local_topic(topic, &prepared, None),
        }
    }
}

/// Tells the backplane about every place `id` is registered, before the
/// registry forgets it (a connection closing leaves its path and topics).
pub(crate) fn announce_removal(registry: &Registry<Arc<ConnShared>>, id: ConnId, backplane: &dyn Backplane) {
    if let Some(path) = registry.path_of(id) {
        backplane.left(&Target::Path(path.to_owned()), id);
    }
    for topic in registry.topics_of(id) {
        backplane.left(&Target::Topic(topic.to_owned()), id);
    }
}

/// Hands a locally delivered broadcast to the backplane.
pub(crate) fn forward(backplane: &dyn Backplane, target: Target, prepared: &PreparedMessage) {
    let text = prepared.opcode() == blaze_proto::frame::OpCode::Text;
    backplane.publish(ClusterMessage { target, text, payload: prepared.payload() });
}

impl App {
    /// Joins this app to a cluster: broadcasts and topic publishes reach
    /// the matching clients on every node of `backplane`, and the
    /// `cluster_*` queries count the whole cluster.
    ///
    /// Call it before serving; connections already open are announced to
    /// the backplane. A second call is ignored (with a warning): an app
    /// belongs to one cluster.
    pub fn cluster(&self, backplane: impl Backplane) -> &Self {
        let hub = &self.inner.hub;
        let backplane: Arc<dyn Backplane> = Arc::new(backplane);
        if hub.set_backplane(backplane.clone()).is_err() {
            tracing::warn!("App::cluster called twice; the second backplane is ignored");
            return self;
        }
        backplane.attach(ClusterSink { hub: Arc::downgrade(hub) });
        hub.announce_all(&*backplane);
        self
    }

    /// Whether [`App::cluster`] was called.
    pub fn is_clustered(&self) -> bool {
        self.inner.hub.backplane().is_some()
    }

    /// Connections on `path` on every node (this node's count without a
    /// cluster).
    pub async fn cluster_connection_count(&self, path: &str) -> Result<usize, ClusterError> {
        match self.inner.hub.backplane() {
            Some(backplane) => backplane.count(Target::Path(normalize_path(path).into_owned())).await,
            None => Ok(self.connection_count(path)),
        }
    }

    /// Members of `topic` on every node (this node's count without a
    /// cluster).
    pub async fn cluster_topic_count(&self, topic: &str) -> Result<usize, ClusterError> {
        match self.inner.hub.backplane() {
            Some(backplane) => backplane.count(Target::Topic(topic.to_owned())).await,
            None => Ok(self.topic_count(topic)),
        }
    }

    /// The members of `topic` on every node, with their node ids (node 0
    /// for this node's members without a cluster).
    pub async fn cluster_topic_members(&self, topic: &str) -> Result<Vec<ClusterMember>, ClusterError> {
        match self.inner.hub.backplane() {
            Some(backplane) => backplane.members(Target::Topic(topic.to_owned())).await,
            None => Ok(self.inner.hub.local_topic_members(topic)),
        }
    }
}

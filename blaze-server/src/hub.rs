//! The server's registry of live connections and its broadcast paths.
//! Every broadcast is framed once ([`blaze_proto::PreparedMessage`]) and
//! the same bytes are queued on every receiver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use blaze_proto::{ConnId, PreparedMessage, Registry};

use crate::error::SendError;
use crate::outgoing::IntoPrepared;
use crate::socket::{ConnShared, WebSocket};

/// A connection as listed by [`crate::App::connections`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSummary {
    /// Its id.
    pub id: ConnId,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The request path.
    pub path: String,
}

#[derive(Default)]
pub(crate) struct Hub {
    registry: Mutex<Registry<Arc<ConnShared>>>,
    /// Live connections per route pattern (for `max_connections`).
    per_route: Mutex<HashMap<String, usize>>,
    /// Live connections per route pattern and client IP (for `max_connections_per_ip`).
    per_ip: Mutex<HashMap<(String, IpAddr), usize>>,
    encodings: AtomicU64,
    compressions: AtomicU64,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a connection could not be admitted.
pub(crate) enum AdmitError {
    RouteFull,
    IpFull,
}

impl Hub {
    pub(crate) fn next_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Counts a new connection against its route's limits.
    pub(crate) fn admit(
        &self,
        route: &str,
        ip: Option<IpAddr>,
        max_route: Option<usize>,
        max_ip: Option<usize>,
    ) -> Result<(), AdmitError> {
        let mut per_route = lock(&self.per_route);
        let route_count = per_route.get(route).copied().unwrap_or(0);
        if max_route.is_some_and(|max| route_count >= max) {
            return Err(AdmitError::RouteFull);
        }
        if let Some(ip) = ip {
            let mut per_ip = lock(&self.per_ip);
            let key = (route.to_owned(), ip);
            let ip_count = per_ip.get(&key).copied().unwrap_or(0);
            if max_ip.is_some_and(|max| ip_count >= max) {
                return Err(AdmitError::IpFull);
            }
            per_ip.insert(key, ip_count + 1);
        }
        per_route.insert(route.to_owned(), route_count + 1);
        Ok(())
    }

    /// Undoes [`Hub::admit`] when the connection ends.
    pub(crate) fn release(&self, route: &str, ip: Option<IpAddr>) {
        let mut per_route = lock(&self.per_route);
        if let Some(count) = per_route.get_mut(route) {
            *count -= 1;
            if *count == 0 {
                per_route.remove(route);
            }
        }
        if let Some(ip) = ip {
            let mut per_ip = lock(&self.per_ip);
            let key = (route.to_owned(), ip);
            if let Some(count) = per_ip.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&key);
                }
            }
        }
    }

    pub(crate) fn register(&self, shared: Arc<ConnShared>) {
        let path = shared.info.path.clone();
        lock(&self.registry).insert(shared.id, &path, shared);
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        lock(&self.registry).remove(id);
    }

    pub(crate) fn join(&self, id: ConnId, topic: &str) -> bool {
        lock(&self.registry).join(id, topic)
    }

    pub(crate) fn leave(&self, id: ConnId, topic: &str) -> bool {
        lock(&self.registry).leave(id, topic)
    }

    pub(crate) fn topics_of(&self, id: ConnId) -> Vec<String> {
        lock(&self.registry).topics_of(id).map(str::to_owned).collect()
    }

    fn prepare(&self, message: impl IntoPrepared) -> Result<PreparedMessage, SendError> {
        let prepared = message.into_prepared()?;
        self.encodings.fetch_add(1, Ordering::Relaxed);
        Ok(prepared)
    }

    /// Queues `message` on every connection on `path` (but `except`).
    pub(crate) fn broadcast(
        &self,
        path: &str,
        message: impl IntoPrepared,
        except: Option<ConnId>,
    ) -> Result<usize, SendError> {
        let prepared = self.prepare(message)?;
        let registry = lock(&self.registry);
        let sent = deliver(registry.path_members(path), &prepared, except);
        self.compressions.fetch_add(prepared.compressions(), Ordering::Relaxed);
        Ok(sent)
    }

    /// Queues `message` on every member of `topic` (but `except`).
    pub(crate) fn publish(
        &self,
        topic: &str,
        message: impl IntoPrepared,
        except: Option<ConnId>,
    ) -> Result<usize, SendError> {
        let prepared = self.prepare(message)?;
        let registry = lock(&self.registry);
        let sent = deliver(registry.topic_members(topic), &prepared, except);
        self.compressions.fetch_add(prepared.compressions(), Ordering::Relaxed);
        Ok(sent)
    }

    /// Every live connection (for shutdown), oldest first. The registry is
    /// a randomly seeded hash map; sorting makes shutdown close connections
    /// in the same order every run, so a seeded simulation of it replays
    /// exactly (sim-tests).
    pub(crate) fn all(&self) -> Vec<WebSocket> {
        let mut all: Vec<(ConnId, WebSocket)> =
            lock(&self.registry).iter().map(|(id, s)| (id, WebSocket { shared: s.clone() })).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, ws)| ws).collect()
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<WebSocket> {
        lock(&self.registry).get(id).map(|s| WebSocket { shared: s.clone() })
    }

    pub(crate) fn connection_count(&self, path: &str) -> usize {
        lock(&self.registry).path_count(path)
    }

    pub(crate) fn total(&self) -> usize {
        lock(&self.registry).len()
    }

    pub(crate) fn topic_count(&self, topic: &str) -> usize {
        lock(&self.registry).topic_count(topic)
    }

    pub(crate) fn connections(&self, path: &str) -> Vec<ConnectionSummary> {
        lock(&self.registry)
            .path_members(path)
            .map(|(id, s)| ConnectionSummary { id, remote_addr: s.info.remote_addr, path: s.info.path.clone() })
            .collect()
    }

    pub(crate) fn encodings(&self) -> u64 {
        self.encodings.load(Ordering::Relaxed)
    }

    pub(crate) fn compressions(&self) -> u64 {
        self.compressions.load(Ordering::Relaxed)
    }
}

/// Queues the same frame on each member. A member whose queue is full is
/// dealt with by its backpressure policy; a broadcast never waits.
fn deliver<'a>(
    members: impl Iterator<Item = (ConnId, &'a Arc<ConnShared>)>,
    prepared: &PreparedMessage,
    except: Option<ConnId>,
) -> usize {
    members.filter(|(id, _)| Some(*id) != except).filter(|(_, s)| s.send_prepared(prepared).is_ok()).count()
}

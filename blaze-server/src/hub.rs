//! The server's registry of live connections and its broadcast paths.
//! Every broadcast is framed once ([`blaze_proto::PreparedMessage`]) and
//! the same bytes are queued on every receiver, from a member list taken
//! under the registry lock and delivered outside it ([`crate::fanout`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use blaze_proto::{ConnId, PreparedMessage, Registry};

use crate::cluster::{self, Backplane, ClusterMember, Target};
use crate::error::SendError;
use crate::fanout;
use crate::outgoing::IntoPrepared;
use crate::router::normalize_path;
use crate::socket::{ConnShared, WebSocket};

/// A connection as listed by [`crate::App::connections`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSummary {
    /// Its id.
    pub id: ConnId,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The request path, normalized as routing saw it (repeated and
    /// trailing slashes removed, not percent-decoded).
    pub path: String,
}

/// The receivers of a broadcast: each one's id and handle. Listed once
/// per change of membership and shared (one `Arc`) by every broadcast to
/// the same place until the next change, so a broadcast holds the
/// registry lock only to clone it, never while it delivers.
pub(crate) type Members = Arc<[(ConnId, Arc<ConnShared>)]>;

/// A registry and the member lists handed to broadcasts. Reads go through
/// `Deref`; every change goes through a method here, which drops the
/// lists it makes stale.
#[derive(Default)]
struct Listed {
    registry: Registry<Arc<ConnShared>>,
    paths: HashMap<String, Members>,
    topics: HashMap<String, Members>,
    all: Option<Members>,
    /// Lists made stale under the lock, to drop once it is released (the
    /// last holder of a 10,000-member list releases 10,000 handles).
    stale: Vec<Members>,
}

impl Deref for Listed {
    type Target = Registry<Arc<ConnShared>>;
    fn deref(&self) -> &Registry<Arc<ConnShared>> {
        &self.registry
    }
}

impl Listed {
    fn insert(&mut self, id: ConnId, path: &str, shared: Arc<ConnShared>) -> bool {
        let inserted = self.registry.insert(id, path, shared);
        if inserted {
            self.stale_path(path);
        }
        inserted
    }

    fn remove(&mut self, id: ConnId) -> Option<Arc<ConnShared>> {
        if let Some(path) = self.registry.path_of(id) {
            self.stale.extend(self.paths.remove(path));
            self.stale.extend(self.all.take());
            if !self.topics.is_empty() {
                for topic in self.registry.topics_of(id) {
                    self.stale.extend(self.topics.remove(topic));
                }
            }
        }
        self.registry.remove(id)
    }

    fn join(&mut self, id: ConnId, topic: &str) -> bool {
        let joined = self.registry.join(id, topic);
        if joined {
            self.stale_topic(topic);
        }
        joined
    }

    fn leave(&mut self, id: ConnId, topic: &str) -> bool {
        let left = self.registry.leave(id, topic);
        if left {
            self.stale_topic(topic);
        }
        left
    }

    fn stale_path(&mut self, path: &str) {
        self.stale.extend(self.paths.remove(path));
        self.stale.extend(self.all.take());
    }

    fn stale_topic(&mut self, topic: &str) {
        self.stale.extend(self.topics.remove(topic));
    }

    /// The connections on `path` (`None`: nobody), and whether `except` is one.
    fn path_list(&mut self, path: &str, except: Option<ConnId>) -> (Option<Members>, bool) {
        let listed = except.is_some_and(|e| self.registry.path_of(e) == Some(path));
        (cached(&mut self.paths, path, || self.registry.path_members(path)), listed)
    }

    /// The members of `topic`, and whether `except` is one.
    fn topic_list(&mut self, topic: &str, except: Option<ConnId>) -> (Option<Members>, bool) {
        let listed = except.is_some_and(|e| self.registry.topics_of(e).any(|t| t == topic));
        (cached(&mut self.topics, topic, || self.registry.topic_members(topic)), listed)
    }

    /// Every connection, and whether `except` is one.
    fn all_list(&mut self, except: Option<ConnId>) -> (Option<Members>, bool) {
        let listed = except.is_some_and(|e| self.registry.get(e).is_some());
        if self.all.is_none() {
            self.all = list(self.registry.iter());
        }
        (self.all.clone(), listed)
    }
}

/// The list cached under `key`, or one built from `members` (and cached,
/// unless nobody is there). `members` is called only on a miss: looking
/// the members up is a second hash of the key.
fn cached<'a, I: Iterator<Item = (ConnId, &'a Arc<ConnShared>)>>(
    cache: &mut HashMap<String, Members>,
    key: &str,
    members: impl FnOnce() -> I,
) -> Option<Members> {
    if let Some(listed) = cache.get(key) {
        return Some(listed.clone());
    }
    let built = list(members())?;
    cache.insert(key.to_owned(), built.clone());
    Some(built)
}

fn list<'a>(members: impl Iterator<Item = (ConnId, &'a Arc<ConnShared>)>) -> Option<Members> {
    let members: Members = members.map(|(id, s)| (id, s.clone())).collect();
    (!members.is_empty()).then_some(members)
}

#[derive(Default)]
pub(crate) struct Hub {
    registry: Mutex<Listed>,
    /// Connections of routes with parameters, keyed by the route pattern
    /// (`/game/:room_id`), so a broadcast to the pattern reaches every room
    /// without scanning every connection. Routes without parameters need
    /// none: their pattern is their one path.
    by_route: Mutex<Listed>,
    /// Live connections per route pattern (for `max_connections`).
    per_route: Mutex<HashMap<String, usize>>,
    /// Live connections per route pattern and client key ([`ip_key`]; for
    /// `max_connections_per_ip`).
    per_ip: Mutex<HashMap<(String, IpAddr), usize>>,
    encodings: AtomicU64,
    compressions: AtomicU64,
    next_id: AtomicU64,
    /// Set by `App::cluster`: broadcasts also go to the other nodes.
    backplane: OnceLock<Arc<dyn Backplane>>,
    /// The app's shutdown signal, for `WebSocket::is_shutting_down`.
    pub(crate) shutdown: Arc<crate::shutdown::Shutdown>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Changes a registry, dropping the member lists it made stale after the
/// lock is released.
fn change<R>(m: &Mutex<Listed>, f: impl FnOnce(&mut Listed) -> R) -> R {
    let mut listed = lock(m);
    let out = f(&mut listed);
    let stale = std::mem::take(&mut listed.stale);
    drop(listed);
    drop(stale);
    out
}

/// The default of `WsConfig::ipv6_prefix_len`: how many leading bits of
/// an IPv6 address make one client for `max_connections_per_ip`. A /64 is
/// the smallest prefix a site is normally given (one LAN, one SLAAC
/// subnet), so a single host can take as many addresses from it as it
/// likes; counting per address would let it walk straight past the limit.
pub(crate) const IPV6_PREFIX_LEN: u8 = 64;

/// The key a client's address is counted under by `max_connections_per_ip`:
///
/// * an IPv4 address is itself;
/// * an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack
///   `[::]` listener reports for an IPv4 client) is the IPv4 address, so
///   the same client counts once whichever socket family it arrived on;
/// * any other IPv6 address is its /`prefix_len` network (the remaining
///   bits zeroed; `WsConfig::ipv6_prefix_len`, default
///   [`IPV6_PREFIX_LEN`]), so every address in one /64 shares one count.
///
/// The key is only for counting. Connections without a remote address (a
/// transport that has none, such as a Unix socket) are not counted per IP
/// at all: `max_connections_per_ip` never rejects them, though
/// `max_connections` and `max_total_connections` still do. Behind a
/// reverse proxy the address is the proxy's unless the proxy is listed in
/// `WsConfig::trusted_proxies` (then it is the forwarded client's).
pub(crate) fn ip_key(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len.min(128))).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        },
    }
}

/// Why a connection could not be admitted.
pub(crate) enum AdmitError {
    RouteFull,
    IpFull,
}

impl Hub {
    /// A hub reporting `shutdown` to its connections' handles.
    pub(crate) fn with_shutdown(shutdown: Arc<crate::shutdown::Shutdown>) -> Hub {
        Hub { shutdown, ..Hub::default() }
    }

    pub(crate) fn next_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Counts a new connection against its route's limits. `ip` is the
    /// client's key ([`ip_key`]: mapped IPv4 as IPv4, IPv6 by its prefix).
    /// With no address (`None`) only the route's `max_connections` applies.
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
        // `info.path` was normalized when the request was routed.
        let path = shared.info.path().to_owned();
        let id = shared.id;
        if shared.info.route() != path {
            let route = shared.info.route().to_owned();
            let shared = shared.clone();
            change(&self.by_route, |by_route| by_route.insert(id, &route, shared));
        }
        change(&self.registry, |registry| {
            // Told under the lock, so the backplane sees joins and leaves
            // in the registry's order.
            if registry.insert(id, &path, shared) {
                if let Some(backplane) = self.backplane() {
                    backplane.joined(&Target::Path(path), id);
                }
            }
        });
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        let removed = change(&self.registry, |registry| {
            if let Some(backplane) = self.backplane() {
                cluster::announce_removal(registry, id, &**backplane);
            }
            registry.remove(id)
        });
        if let Some(shared) = removed {
            if shared.info.route() != shared.info.path() {
                change(&self.by_route, |by_route| by_route.remove(id));
            }
        }
    }

    pub(crate) fn join(&self, id: ConnId, topic: &str) -> bool {
        change(&self.registry, |registry| {
            let joined = registry.join(id, topic);
            if let (true, Some(backplane)) = (joined, self.backplane()) {
                backplane.joined(&Target::Topic(topic.to_owned()), id);
            }
            joined
        })
    }

    pub(crate) fn leave(&self, id: ConnId, topic: &str) -> bool {
        change(&self.registry, |registry| {
            let left = registry.leave(id, topic);
            if let (true, Some(backplane)) = (left, self.backplane()) {
                backplane.left(&Target::Topic(topic.to_owned()), id);
            }
            left
        })
    }

    pub(crate) fn backplane(&self) -> Option<&Arc<dyn Backplane>> {
        self.backplane.get()
    }

    pub(crate) fn set_backplane(&self, backplane: Arc<dyn Backplane>) -> Result<(), Arc<dyn Backplane>> {
        self.backplane.set(backplane)
    }

    /// Tells a just-attached backplane about every connection already open.
    pub(crate) fn announce_all(&self, backplane: &dyn Backplane) {
        let registry = lock(&self.registry);
        for (id, shared) in registry.iter() {
            backplane.joined(&Target::Path(shared.info.path().to_owned()), id);
            for topic in registry.topics_of(id) {
                backplane.joined(&Target::Topic(topic.to_owned()), id);
            }
        }
    }

    /// This node's members of `topic` (node 0), for the cluster queries
    /// without a cluster.
    pub(crate) fn local_topic_members(&self, topic: &str) -> Vec<ClusterMember> {
        lock(&self.registry).topic_members(topic).map(|(id, _)| ClusterMember { node: 0, id }).collect()
    }

    pub(crate) fn topics_of(&self, id: ConnId) -> Vec<String> {
        lock(&self.registry).topics_of(id).map(str::to_owned).collect()
    }

    pub(crate) fn prepare(&self, message: impl IntoPrepared) -> Result<PreparedMessage, SendError> {
        let prepared = message.into_prepared()?;
        self.encodings.fetch_add(1, Ordering::Relaxed);
        Ok(prepared)
    }

    /// Queues `message` on every connection on `path` (but `except`);
    /// `path` is already normalized like request paths (`/chat/` is
    /// `/chat`): a connection's own path is, and `App::broadcast`
    /// normalizes what it is given.
    pub(crate) fn broadcast(
        self: &Arc<Self>,
        path: &str,
        message: impl IntoPrepared,
        except: Option<ConnId>,
    ) -> Result<usize, SendError> {
        debug_assert_eq!(normalize_path(path), path);
        let prepared = self.prepare(message)?;
        let sent = self.deliver_local_path(path, &prepared, except);
        if let Some(backplane) = self.backplane() {
            cluster::forward(&**backplane, Target::Path(path.to_owned()), &prepared);
        }
        Ok(sent)
    }

    /// Queues a framed message on this node's connections on `path`
    /// (already normalized).
    pub(crate) fn deliver_local_path(
        self: &Arc<Self>,
        path: &str,
        prepared: &PreparedMessage,
        except: Option<ConnId>,
    ) -> usize {
        let (members, listed) = lock(&self.registry).path_list(path, except);
        fanout::send(self, members, prepared, except, listed)
    }

    /// Queues `message` on every connection of the route with pattern
    /// `pattern` (as written in `app.ws`, normalized), whatever its path.
    pub(crate) fn broadcast_route(
        self: &Arc<Self>,
        pattern: &str,
        message: impl IntoPrepared,
        except: Option<ConnId>,
    ) -> Result<usize, SendError> {
        let prepared = self.prepare(message)?;
        let (members, listed) = lock(&self.by_route).path_list(pattern, except);
        Ok(fanout::send(self, members, &prepared, except, listed))
    }

    /// Queues `message` on every live connection of every route (but `except`).
    pub(crate) fn broadcast_all(
        self: &Arc<Self>,
        message: impl IntoPrepared,
        except: Option<ConnId>,
    ) -> Result<usize, SendError> {
        let prepared = self.prepare(message)?;
        let (members, listed) = lock(&self.registry).all_list(except);
        Ok(fanout::send(self, members, &prepared, except, listed))
    }

    /// Queues `message` on every member of `topic` (but `except`).
    pub(crate) fn publish(
        self: &Arc<Self>,
        topic: &str,
        message: impl IntoPrepared,
        except: Option<ConnId>,
    ) -> Result<usize, SendError> {
        let prepared = self.prepare(message)?;
        let sent = self.deliver_local_topic(topic, &prepared, except);
        if let Some(backplane) = self.backplane() {
            cluster::forward(&**backplane, Target::Topic(topic.to_owned()), &prepared);
        }
        Ok(sent)
    }

    /// Queues a framed message on this node's members of `topic`.
    pub(crate) fn deliver_local_topic(
        self: &Arc<Self>,
        topic: &str,
        prepared: &PreparedMessage,
        except: Option<ConnId>,
    ) -> usize {
        let (members, listed) = lock(&self.registry).topic_list(topic, except);
        fanout::send(self, members, prepared, except, listed)
    }

    /// Counts a broadcast queued on `sent` receivers (and what compressing
    /// it cost), once it has been.
    pub(crate) fn record_delivery(&self, prepared: &PreparedMessage, sent: usize) {
        self.compressions.fetch_add(prepared.compressions(), Ordering::Relaxed);
        crate::metrics::broadcast(sent, prepared.compressions());
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

    /// Live connections on `path`, normalized like request paths.
    pub(crate) fn connection_count(&self, path: &str) -> usize {
        lock(&self.registry).path_count(&normalize_path(path))
    }

    pub(crate) fn total(&self) -> usize {
        lock(&self.registry).len()
    }

    pub(crate) fn topic_count(&self, topic: &str) -> usize {
        lock(&self.registry).topic_count(topic)
    }

    pub(crate) fn connections(&self, path: &str) -> Vec<ConnectionSummary> {
        lock(&self.registry)
            .path_members(&normalize_path(path))
            .map(|(id, s)| ConnectionSummary { id, remote_addr: s.info.remote_addr, path: s.info.path().to_owned() })
            .collect()
    }

    pub(crate) fn encodings(&self) -> u64 {
        self.encodings.load(Ordering::Relaxed)
    }

    pub(crate) fn compressions(&self) -> u64 {
        self.compressions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(ip: IpAddr) -> IpAddr {
        ip_key(ip, IPV6_PREFIX_LEN)
    }

    #[test]
    fn prefix_length_is_a_parameter() {
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 48), ip("2001:db8:1::"));
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 128), ip("2001:db8:1:2::1"));
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 0), ip("::"));
        assert_eq!(ip_key(ip("2001:db8:1:2::1"), 200), ip("2001:db8:1:2::1"));
    }

    #[test]
    fn ipv4_is_its_own_key() {
        assert_eq!(key(ip("1.2.3.4")), ip("1.2.3.4"));
        assert_ne!(key(ip("1.2.3.4")), key(ip("1.2.3.5")));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert_eq!(key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(key(ip("::ffff:127.0.0.1")), key(ip("127.0.0.1")));
        // IPv4-compatible (deprecated, `::1.2.3.4`) is not mapped: an IPv6 /64.
        assert_eq!(key(ip("::1.2.3.4")), ip("::"));
    }

    #[test]
    fn ipv6_in_one_slash_64_share_a_key() {
        assert_eq!(key(ip("2001:db8:1:2::1")), key(ip("2001:db8:1:2:ffff:eeee:dddd:cccc")));
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(key(ip("::1")), ip("::"));
    }

    #[test]
    fn ipv6_in_different_slash_64s_do_not() {
        assert_ne!(key(ip("2001:db8:1:2::1")), key(ip("2001:db8:1:3::1")));
        assert_ne!(key(ip("2001:db8:1:2::1")), key(ip("2001:db9:1:2::1")));
    }

    #[test]
    fn admit_counts_mapped_and_plain_ipv4_together() {
        let hub = Hub::default();
        assert!(hub.admit("/r", Some(key(ip("127.0.0.1"))), None, Some(1)).is_ok());
        assert!(matches!(hub.admit("/r", Some(key(ip("::ffff:127.0.0.1"))), None, Some(1)), Err(AdmitError::IpFull)));
        hub.release("/r", Some(key(ip("::ffff:127.0.0.1"))));
        assert!(hub.admit("/r", Some(key(ip("::ffff:127.0.0.1"))), None, Some(1)).is_ok());
        assert!(hub.admit("/r", Some(key(ip("2001:db8::1"))), None, Some(1)).is_ok());
        assert!(matches!(hub.admit("/r", Some(key(ip("2001:db8::2"))), None, Some(1)), Err(AdmitError::IpFull)));
        assert!(hub.admit("/r", Some(key(ip("2001:db8:0:1::1"))), None, Some(1)).is_ok());
    }

    #[test]
    fn no_address_is_not_counted_per_ip() {
        let hub = Hub::default();
        for _ in 0..3 {
            assert!(hub.admit("/r", None, None, Some(1)).is_ok());
        }
        assert!(matches!(hub.admit("/r", None, Some(3), Some(1)), Err(AdmitError::RouteFull)));
    }
}

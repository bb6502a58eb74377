//! Who is connected where: connection ids by route path and by topic
//! (rooms), each operation O(1) (leaving on close is O(topics joined)).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A connection's id, unique for the life of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hashes a [`ConnId`] with one multiply. Ids are the server's own
/// counter, never chosen by a peer, so SipHash's resistance to crafted
/// keys buys nothing here, and it cost ~150 instructions per lookup: 16%
/// of a many-publisher broadcast walk (BENCHMARKS.md, issue 13). Keys a
/// peer can choose (paths, topics) keep the default hasher.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: an odd multiplier spreads a counter over the
        // high bits (hashbrown's tag) while keeping the low bits distinct.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by connection id, hashed with [`IdHasher`].
type IdMap<V> = HashMap<ConnId, V, BuildHasherDefault<IdHasher>>;

/// A set of ids with O(1) insert and remove that iterates a dense `Vec`
/// (fan-out walks it for every broadcast, so iteration must be fast).
#[derive(Debug, Default, Clone)]
pub struct IdSet {
    ids: Vec<ConnId>,
    positions: IdMap<usize>,
}

impl IdSet {
    fn insert(&mut self, id: ConnId) -> bool {
        match self.positions.entry(id) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(self.ids.len());
                self.ids.push(id);
                true
            }
        }
    }

    fn remove(&mut self, id: ConnId) -> bool {
        let Some(pos) = self.positions.remove(&id) else { return false };
        self.ids.swap_remove(pos);
        if let Some(&moved) = self.ids.get(pos) {
            self.positions.insert(moved, pos);
        }
        true
    }

    /// The ids, in no particular order.
    pub fn as_slice(&self) -> &[ConnId] {
        &self.ids
    }

    /// How many ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: ConnId) -> bool {
        self.positions.contains_key(&id)
    }
}

#[derive(Debug)]
struct Member<V> {
    path: Arc<str>,
    /// Boxed and created on the first join: most connections never join a
    /// topic, and an empty set inline would cost every one of them 48 bytes.
    #[allow(clippy::box_collection)]
    topics: Option<Box<HashSet<Arc<str>>>>,
    value: V,
}

/// Live connections by route path and by topic, each holding a value of
/// the driver's choosing (a handle to queue bytes on the connection).
///
/// ```
/// use blaze_proto::{ConnId, Registry};
/// let mut registry = Registry::new();
/// registry.insert(ConnId(1), "/chat", "alice");
/// registry.insert(ConnId(2), "/chat", "bob");
/// registry.join(ConnId(1), "room-1");
/// assert_eq!(registry.path_count("/chat"), 2);
/// assert_eq!(registry.topic_count("room-1"), 1);
/// registry.remove(ConnId(1)); // leaves every topic too
/// assert_eq!(registry.topic_count("room-1"), 0);
/// ```
#[derive(Debug)]
pub struct Registry<V> {
    members: IdMap<Member<V>>,
    paths: HashMap<Arc<str>, IdSet>,
    topics: HashMap<Arc<str>, IdSet>,
}

impl<V> Default for Registry<V> {
    fn default() -> Self {
        Registry { members: IdMap::default(), paths: HashMap::new(), topics: HashMap::new() }
    }
}

impl<V> Registry<V> {
    /// An empty registry.
    pub fn new() -> Registry<V> {
        Registry::default()
    }

    /// Adds a connection on a route path. Returns `false` (and changes
    /// nothing) if the id is already registered.
    pub fn insert(&mut self, id: ConnId, path: &str, value: V) -> bool {
        if self.members.contains_key(&id) {
            return false;
        }
        let path = intern(&mut self.paths, path);
        self.paths.get_mut(&path).expect("interned").insert(id);
        self.members.insert(id, Member { path, topics: None, value });
        true
    }

    /// Removes a connection from its path and every topic it joined.
    pub fn remove(&mut self, id: ConnId) -> Option<V> {
        let member = self.members.remove(&id)?;
        remove_from(&mut self.paths, &member.path, id);
        for topic in member.topics.iter().flat_map(|t| t.iter()) {
            remove_from(&mut self.topics, topic, id);
        }
        Some(member.value)
    }

    /// Removes every id in `dead` (connections the driver found dead);
    /// returns how many were registered.
    pub fn prune(&mut self, dead: impl IntoIterator<Item = ConnId>) -> usize {
        dead.into_iter().filter(|&id| self.remove(id).is_some()).count()
    }

    /// Subscribes a connection to a topic. `false` if not registered or
    /// already a member.
    pub fn join(&mut self, id: ConnId, topic: &str) -> bool {
        let Some(member) = self.members.get_mut(&id) else { return false };
        let topic = intern(&mut self.topics, topic);
        if !member.topics.get_or_insert_with(Box::default).insert(topic.clone()) {
            return false;
        }
        self.topics.get_mut(&topic).expect("interned").insert(id)
    }

    /// Unsubscribes a connection from a topic. `false` if it was not a member.
    pub fn leave(&mut self, id: ConnId, topic: &str) -> bool {
        let Some(member) = self.members.get_mut(&id) else { return false };
        if !member.topics.as_mut().is_some_and(|t| t.remove(topic)) {
            return false;
        }
        remove_from(&mut self.topics, topic, id)
    }

    /// The value registered for a connection.
    pub fn get(&self, id: ConnId) -> Option<&V> {
        self.members.get(&id).map(|m| &m.value)
    }

    /// The path a connection is registered on.
    pub fn path_of(&self, id: ConnId) -> Option<&str> {
        self.members.get(&id).map(|m| &*m.path)
    }

    /// The topics a connection has joined.
    pub fn topics_of(&self, id: ConnId) -> impl Iterator<Item = &str> {
        self.members.get(&id).into_iter().flat_map(|m| m.topics.iter().flat_map(|t| t.iter()).map(|t| &**t))
    }

    /// The connections on a path, with their values.
    pub fn path_members(&self, path: &str) -> impl Iterator<Item = (ConnId, &V)> {
        self.members_of(self.paths.get(path))
    }

    /// The members of a topic, with their values.
    pub fn topic_members(&self, topic: &str) -> impl Iterator<Item = (ConnId, &V)> {
        self.members_of(self.topics.get(topic))
    }

    fn members_of<'a>(&'a self, set: Option<&'a IdSet>) -> impl Iterator<Item = (ConnId, &'a V)> + 'a {
        set.into_iter()
            .flat_map(|s| s.as_slice().iter())
            .filter_map(move |id| self.members.get(id).map(|m| (*id, &m.value)))
    }

    /// How many connections are on a path.
    pub fn path_count(&self, path: &str) -> usize {
        self.paths.get(path).map_or(0, IdSet::len)
    }

    /// How many connections joined a topic.
    pub fn topic_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, IdSet::len)
    }

    /// How many connections in all.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every registered connection with its value.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &V)> {
        self.members.iter().map(|(id, m)| (*id, &m.value))
    }

    /// Paths and topics that have at least one member (empty ones are
    /// dropped as they empty, so this stays bounded by live connections).
    pub fn key_counts(&self) -> (usize, usize) {
        (self.paths.len(), self.topics.len())
    }
}

/// Returns the map's own `Arc<str>` for `key`, inserting an empty set.
fn intern(map: &mut HashMap<Arc<str>, IdSet>, key: &str) -> Arc<str> {
    if let Some((existing, _)) = map.get_key_value(key) {
        return existing.clone();
    }
    let key: Arc<str> = Arc::from(key);
    map.insert(key.clone(), IdSet::default());
    key
}

/// Removes `id` from the set under `key`, dropping the set once empty.
fn remove_from(map: &mut HashMap<Arc<str>, IdSet>, key: &str, id: ConnId) -> bool {
    let Some(set) = map.get_mut(key) else { return false };
    let removed = set.remove(id);
    if set.is_empty() {
        map.remove(key);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_isolate_members() {
        let mut r = Registry::new();
        for i in 0..4 {
            r.insert(ConnId(i), "/game", ());
            r.join(ConnId(i), if i % 2 == 0 { "even" } else { "odd" });
        }
        let even: Vec<u64> = r.topic_members("even").map(|(id, _)| id.0).collect();
        assert_eq!(even.len(), 2);
        assert!(even.iter().all(|id| id % 2 == 0));
    }

    #[test]
    fn remove_leaves_every_topic_and_drops_empty_keys() {
        let mut r = Registry::new();
        r.insert(ConnId(1), "/a", 1);
        r.join(ConnId(1), "x");
        r.join(ConnId(1), "y");
        assert_eq!(r.remove(ConnId(1)), Some(1));
        assert_eq!((r.topic_count("x"), r.topic_count("y"), r.path_count("/a")), (0, 0, 0));
        assert_eq!(r.key_counts(), (0, 0));
        assert!(r.is_empty());
    }

    #[test]
    fn join_twice_and_leave_unknown_are_noops() {
        let mut r = Registry::new();
        r.insert(ConnId(1), "/a", ());
        assert!(r.join(ConnId(1), "t"));
        assert!(!r.join(ConnId(1), "t"));
        assert!(!r.leave(ConnId(1), "other"));
        assert!(!r.join(ConnId(9), "t"));
        assert_eq!(r.topic_count("t"), 1);
    }

    #[test]
    fn prune_removes_only_registered_ids() {
        let mut r = Registry::new();
        for i in 0..10 {
            r.insert(ConnId(i), "/p", ());
        }
        assert_eq!(r.prune([ConnId(1), ConnId(2), ConnId(99)]), 2);
        assert_eq!(r.path_count("/p"), 8);
    }

    #[test]
    fn swap_remove_keeps_positions_consistent() {
        let mut r = Registry::new();
        for i in 0..100 {
            r.insert(ConnId(i), "/p", i);
        }
        for i in (0..100).step_by(3) {
            r.remove(ConnId(i));
        }
        let mut left: Vec<u64> = r.path_members("/p").map(|(id, v)| {
            assert_eq!(id.0, *v);
            id.0
        }).collect();
        left.sort();
        assert_eq!(left, (0..100).filter(|i| i % 3 != 0).collect::<Vec<_>>());
    }
}

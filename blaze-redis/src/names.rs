//! Redis channel and key names. One channel per path or topic, so a node
//! subscribes to exactly the traffic its local clients want.
//!
//! | what | name |
//! | --- | --- |
//! | broadcasts to a path | `{prefix}:p:{path}` |
//! | publishes to a topic | `{prefix}:t:{topic}` |
//! | nodes with members on a target (SET of node ids) | `{prefix}:pn:{p or t}:{name}` |
//! | one node's members on a target (SET of conn ids, with TTL) | `{prefix}:pm:{p or t}:{node, 16 hex digits}:{name}` |
//!
//! The name is last and the node id fixed-width, so no two targets share
//! a key whatever characters their names contain.

use blaze_server::Target;

fn kind_and_name(target: &Target) -> (&'static str, &str) {
    match target {
        Target::Path(path) => ("p", path),
        Target::Topic(topic) => ("t", topic),
    }
}

/// The pub/sub channel of a target.
pub(crate) fn channel(prefix: &str, target: &Target) -> String {
    let (kind, name) = kind_and_name(target);
    format!("{prefix}:{kind}:{name}")
}

/// The target of a channel this node subscribed to; `None` for any other.
pub(crate) fn target_of(prefix: &str, channel: &str) -> Option<Target> {
    let rest = channel.strip_prefix(prefix)?.strip_prefix(':')?;
    if let Some(path) = rest.strip_prefix("p:") {
        Some(Target::Path(path.to_owned()))
    } else {
        rest.strip_prefix("t:").map(|topic| Target::Topic(topic.to_owned()))
    }
}

/// The set of nodes that have (or had, until the next query) members on
/// a target.
pub(crate) fn nodes_key(prefix: &str, target: &Target) -> String {
    let (kind, name) = kind_and_name(target);
    format!("{prefix}:pn:{kind}:{name}")
}

/// One node's members on a target.
pub(crate) fn members_key(prefix: &str, target: &Target, node: u64) -> String {
    let (kind, name) = kind_and_name(target);
    format!("{prefix}:pm:{kind}:{}:{name}", node_hex(node))
}

/// The parts of [`members_key`] around the node id, for the Lua scripts
/// that walk a target's nodes.
pub(crate) fn members_key_parts(prefix: &str, target: &Target) -> (String, String) {
    let (kind, name) = kind_and_name(target);
    (format!("{prefix}:pm:{kind}:"), format!(":{name}"))
}

pub(crate) fn node_hex(node: u64) -> String {
    format!("{node:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip() {
        for target in [Target::Path("/chat".into()), Target::Topic("room:1".into()), Target::Topic(String::new())] {
            assert_eq!(target_of("app", &channel("app", &target)), Some(target));
        }
        assert_eq!(target_of("app", "other:t:x"), None);
        assert_eq!(target_of("app", "app:x:y"), None);
        assert_eq!(target_of("app", "apple:t:y"), None);
    }

    #[test]
    fn keys_do_not_collide() {
        let a = members_key("b", &Target::Topic("x".into()), 1);
        let b = members_key("b", &Target::Topic(format!("{}:x", node_hex(1))), 1);
        assert_ne!(a, b);
        assert_ne!(nodes_key("b", &Target::Path("/x".into())), nodes_key("b", &Target::Topic("/x".into())));
        let (head, tail) = members_key_parts("b", &Target::Topic("x".into()));
        assert_eq!(format!("{head}{}{tail}", node_hex(1)), a);
    }
}

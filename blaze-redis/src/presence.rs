//! Presence in Redis: per target, a SET of the nodes with members there
//! and, per node, a SET of its connection ids with a TTL
//! ([`crate::RedisConfig::presence_ttl`]) that the node's heartbeat
//! renews. A crashed node stops renewing, so its members vanish within the
//! TTL; queries skip (and remove) nodes whose set expired.
//!
//! The task writes state, not events: it compares what this node has
//! locally with what it last wrote and sends the difference, so an update
//! lost to an outage is repaired by the next one, and after a reconnect
//! (Redis may have restarted empty) it rewrites everything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use blaze_server::{ClusterError, ClusterMember, ConnId, Target};
use redis::aio::MultiplexedConnection;

use crate::{link, names, Shared};

/// Counts a target's members over all nodes, dropping expired nodes.
/// KEYS[1] = the nodes set; ARGV = the member key around the node id.
const COUNT: &str = r"
local nodes = redis.call('SMEMBERS', KEYS[1])
local total = 0
for _, node in ipairs(nodes) do
  local n = redis.call('SCARD', ARGV[1] .. node .. ARGV[2])
  if n == 0 then redis.call('SREM', KEYS[1], node) else total = total + n end
end
return total
";

/// Lists a target's members over all nodes as [node, id, node, id, ...].
const MEMBERS: &str = r"
local nodes = redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, node in ipairs(nodes) do
  local ids = redis.call('SMEMBERS', ARGV[1] .. node .. ARGV[2])
  if #ids == 0 then redis.call('SREM', KEYS[1], node) end
  for _, id in ipairs(ids) do
    out[#out + 1] = node
    out[#out + 1] = id
  end
end
return out
";

/// How long a change waits for others before it is written.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(20);

/// Keeps this node's presence in Redis in line with its local members.
pub(crate) async fn run(shared: Arc<Shared>) {
    let config = &shared.config;
    // What Redis holds for this node, as far as we know.
    let mut written: HashMap<Target, HashSet<ConnId>> = HashMap::new();
    let mut generation = 0;
    let mut heartbeat = tokio::time::interval(config.heartbeat());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let beat = tokio::select! {
            () = shared.presence_dirty.notified() => false,
            () = shared.link.reconnected.notified() => false,
            _ = heartbeat.tick() => true,
        };
        if !beat {
            // Let a burst of joins (a reconnect storm) become one write.
            tokio::time::sleep(COALESCE).await;
        }
        let Some((current, mut conn)) = shared.link.get() else {
            continue;
        };
        if current != generation {
            // A new connection: Redis may have lost everything.
            generation = current;
            written.clear();
            shared.mark_all_dirty();
        }
        let dirty = shared.take_dirty();
        if let Err(err) = write_changes(&shared, &mut conn, &dirty, &mut written).await {
            tracing::debug!("redis backplane: presence update failed: {err}");
            shared.mark_dirty(dirty);
            shared.link.broken(generation);
            continue;
        }
        if beat {
            match renew(&shared, &mut conn, &written).await {
                Ok(missing) if !missing.is_empty() => {
                    // Expired or lost (Redis restarted): write them again.
                    for target in &missing {
                        written.remove(target);
                    }
                    shared.mark_dirty(missing);
                    shared.presence_dirty.notify_one();
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!("redis backplane: presence heartbeat failed: {err}");
                    shared.link.broken(generation);
                }
            }
        }
    }
}

/// Sends the difference between the local members of `dirty` targets and
/// what was written, as one transaction.
async fn write_changes(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    dirty: &[Target],
    written: &mut HashMap<Target, HashSet<ConnId>>,
) -> redis::RedisResult<()> {
    if dirty.is_empty() {
        return Ok(());
    }
    let config = &shared.config;
    let ttl = config.presence_ttl.as_millis() as u64;
    let node = names::node_hex(shared.node);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut next = Vec::with_capacity(dirty.len());
    for target in dirty {
        let local = shared.local_members(target);
        let members_key = names::members_key(&config.prefix, target, shared.node);
        let nodes_key = names::nodes_key(&config.prefix, target);
        match written.get(target) {
            // Never written (or lost): replace whatever is there.
            None => {
                pipe.del(&members_key).ignore();
            }
            Some(old) => {
                let gone: Vec<u64> = old.difference(&local).map(|id| id.0).collect();
                if !gone.is_empty() {
                    pipe.srem(&members_key, gone).ignore();
                }
            }
        }
        if local.is_empty() {
            pipe.del(&members_key).ignore();
            pipe.srem(&nodes_key, &node).ignore();
        } else {
            let new: Vec<u64> = match written.get(target) {
                None => local.iter().map(|id| id.0).collect(),
                Some(old) => local.difference(old).map(|id| id.0).collect(),
            };
            if !new.is_empty() {
                pipe.sadd(&members_key, new).ignore();
            }
            pipe.pexpire(&members_key, ttl as i64).ignore();
            pipe.sadd(&nodes_key, &node).ignore();
            pipe.pexpire(&nodes_key, ttl as i64).ignore();
        }
        next.push((target.clone(), local));
    }
    link::within(config.response_timeout, pipe.query_async::<()>(conn)).await?;
    for (target, local) in next {
        if local.is_empty() {
            written.remove(&target);
        } else {
            written.insert(target, local);
        }
    }
    Ok(())
}

/// Renews the TTL of everything written; returns the targets whose member
/// set was gone.
async fn renew(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    written: &HashMap<Target, HashSet<ConnId>>,
) -> redis::RedisResult<Vec<Target>> {
    if written.is_empty() {
        return Ok(Vec::new());
    }
    let config = &shared.config;
    let ttl = config.presence_ttl.as_millis() as i64;
    let targets: Vec<&Target> = written.keys().collect();
    let mut pipe = redis::pipe();
    for target in &targets {
        pipe.pexpire(names::members_key(&config.prefix, target, shared.node), ttl);
        pipe.pexpire(names::nodes_key(&config.prefix, target), ttl).ignore();
    }
    let renewed: Vec<bool> = link::within(config.response_timeout, pipe.query_async(conn)).await?;
    Ok(targets.into_iter().zip(renewed).filter(|(_, ok)| !ok).map(|(t, _)| t.clone()).collect())
}

fn query_error(err: redis::RedisError) -> ClusterError {
    if err.is_timeout() {
        ClusterError::Timeout
    } else {
        ClusterError::Unavailable(err.to_string())
    }
}

fn connection(shared: &Shared) -> Result<MultiplexedConnection, ClusterError> {
    shared.link.get().map(|(_, conn)| conn).ok_or_else(|| ClusterError::Unavailable("not connected to Redis".into()))
}

/// Members of `target` on every node.
pub(crate) async fn count(shared: &Shared, target: &Target) -> Result<usize, ClusterError> {
    let mut conn = connection(shared)?;
    let prefix = &shared.config.prefix;
    let (head, tail) = names::members_key_parts(prefix, target);
    let script = redis::Script::new(COUNT);
    let mut call = script.key(names::nodes_key(prefix, target));
    call.arg(head).arg(tail);
    let n: usize =
        link::within(shared.config.response_timeout, call.invoke_async(&mut conn)).await.map_err(query_error)?;
    Ok(n)
}

/// Every member of `target` on every node.
pub(crate) async fn members(shared: &Shared, target: &Target) -> Result<Vec<ClusterMember>, ClusterError> {
    let mut conn = connection(shared)?;
    let prefix = &shared.config.prefix;
    let (head, tail) = names::members_key_parts(prefix, target);
    let script = redis::Script::new(MEMBERS);
    let mut call = script.key(names::nodes_key(prefix, target));
    call.arg(head).arg(tail);
    let flat: Vec<String> =
        link::within(shared.config.response_timeout, call.invoke_async(&mut conn)).await.map_err(query_error)?;
    let mut out: Vec<ClusterMember> = flat
        .chunks_exact(2)
        .filter_map(|pair| {
            let node = u64::from_str_radix(&pair[0], 16).ok()?;
            let id = pair[1].parse().ok()?;
            Some(ClusterMember { node, id: ConnId(id) })
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Removes this node's presence (a clean leave).
pub(crate) async fn clear(shared: &Shared, targets: &[Target]) -> redis::RedisResult<()> {
    let Some((_, mut conn)) = shared.link.get() else {
        return Ok(());
    };
    let node = names::node_hex(shared.node);
    let mut pipe = redis::pipe();
    for target in targets {
        pipe.del(names::members_key(&shared.config.prefix, target, shared.node)).ignore();
        pipe.srem(names::nodes_key(&shared.config.prefix, target), &node).ignore();
    }
    link::within(shared.config.response_timeout, pipe.query_async::<()>(&mut conn)).await
}

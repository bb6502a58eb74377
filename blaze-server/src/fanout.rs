//! Delivering a broadcast to its receivers, batched (issue 13).
//!
//! A broadcast made while a connection's driver hands a batch of events to
//! its handler (one read's worth of messages, `Driver::dispatch_events`)
//! is *corked*: it is framed at once and its receivers are looked up at
//! once, but queueing it on each receiver waits until the batch ends. The
//! broadcasts of one batch to the same receivers are then joined into one
//! buffer ([`PreparedBatch`]) and each receiver takes them all under one
//! lock, as one shared chunk (one reference count, one iovec), with at
//! most one wake-up. This is what uWebSockets does with its publications:
//! drained once per event-loop iteration, corked per socket. A 10,000
//! subscriber fan-out of 100 messages read in one go touches each receiver
//! once instead of 100 times.
//!
//! What stays exactly as without the cork:
//!
//! * every receiver gets every message once, in the order the broadcasts
//!   were made (corked broadcasts leave in call order; consecutive ones to
//!   the same receivers are joined, others are not reordered around them);
//! * the receivers are those on the target *when the broadcast is made*
//!   (the member list is taken then), so a `join` or `leave` right after a
//!   broadcast does not change who gets it;
//! * each receiver's backpressure policy applies to each message as
//!   `send_prepared` would apply it: a batch that would not fit whole, or
//!   that a receiver compresses, is queued message by message;
//! * anything else this thread sends, closes, spawns or asks of a queue
//!   first flushes the cork ([`uncork`]), so a handler's direct sends and
//!   its broadcasts reach a receiver in program order;
//! * cluster forwarding happens at the call, as before.
//!
//! What changes: a corked broadcast returns the number of connections it
//! is addressed to (the target's members, but `except`); one of them that
//! refuses it at the end of the batch (closed, over its bound) applies its
//! policy then and is not subtracted. Broadcasts outside a driver's batch
//! (`app.broadcast` from any task, stream-style handlers, cluster
//! deliveries) are queued at once, as before, and return the exact count.
//!
//! Delivery never holds the hub's registry lock: the member list is an
//! `Arc`'d snapshot ([`crate::hub::Members`]) shared by every broadcast
//! until the membership changes, so connects, disconnects and other
//! broadcasts never wait for a fan-out to finish.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use blaze_proto::{ConnId, PreparedBatch, PreparedMessage};

use crate::error::SendError;
use crate::hub::{Hub, Members};
use crate::socket::{ConnInner, ConnShared};

/// Corked messages past which the cork is flushed early (bounds the memory
/// one handler batch can hold back).
const MAX_CORKED_MESSAGES: usize = 1024;
/// Corked frame bytes past which the cork is flushed early: also the most
/// a joined batch copies.
const MAX_CORKED_BYTES: usize = 256 * 1024;
/// Receivers from which joining a run of broadcasts pays for its copy.
const MIN_RECEIVERS_TO_JOIN: usize = 2;

thread_local! {
    /// A driver is dispatching a batch of events on this thread.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// The cork holds broadcasts (a plain flag: the check on every send
    /// is one thread-local load).
    static PENDING: Cell<bool> = const { Cell::new(false) };
    static CORK: RefCell<Option<Cork>> = const { RefCell::new(None) };
}

/// The broadcasts held back on this thread, all of one hub.
struct Cork {
    hub: Arc<Hub>,
    entries: Vec<Corked>,
    bytes: usize,
}

struct Corked {
    members: Members,
    except: Option<ConnId>,
    prepared: PreparedMessage,
}

/// Corks the broadcasts made on this thread until it is dropped, which
/// delivers them. Nested corks do nothing; a panic unwinding through the
/// holder still delivers.
#[must_use]
pub(crate) struct CorkGuard {
    outermost: bool,
}

/// Starts corking this thread's broadcasts (see the module docs).
pub(crate) fn cork() -> CorkGuard {
    let outermost = !ACTIVE.replace(true);
    CorkGuard { outermost }
}

impl Drop for CorkGuard {
    fn drop(&mut self) {
        if self.outermost {
            ACTIVE.set(false);
            uncork();
        }
    }
}

/// Delivers whatever this thread has corked. Called before any other
/// operation that must come after them (a direct send, a close, a spawn,
/// a look at a queue).
#[inline]
pub(crate) fn uncork() {
    if PENDING.get() {
        flush();
    }
}

#[cold]
fn flush() {
    PENDING.set(false);
    let Some(cork) = CORK.with(|c| c.borrow_mut().take()) else { return };
    let entries = cork.entries;
    let mut start = 0;
    while start < entries.len() {
        let first = &entries[start];
        let end = start
            + entries[start..]
                .iter()
                .take_while(|e| Arc::ptr_eq(&e.members, &first.members) && e.except == first.except)
                .count();
        let run: Vec<PreparedMessage> = entries[start..end].iter().map(|e| e.prepared.clone()).collect();
        deliver(&cork.hub, &first.members, first.except, run);
        start = end;
    }
}

/// Queues `prepared` on `members` but `except` (`except_listed`: it is one
/// of them), now or, corked, at the end of this thread's batch. Returns how
/// many it was queued for (corked: addressed to).
pub(crate) fn send(
    hub: &Arc<Hub>,
    members: Option<Members>,
    prepared: &PreparedMessage,
    except: Option<ConnId>,
    except_listed: bool,
) -> usize {
    let Some(members) = members else {
        hub.record_delivery(prepared, 0);
        return 0;
    };
    if !ACTIVE.get() {
        uncork();
        return deliver(hub, &members, except, vec![prepared.clone()]);
    }
    let addressed = members.len() - usize::from(except_listed);
    let len = prepared.frame().len();
    let goes_after = |c: &Cork| !Arc::ptr_eq(&c.hub, hub) || c.bytes + len > MAX_CORKED_BYTES;
    if CORK.with(|c| c.borrow().as_ref().is_some_and(goes_after)) {
        // Another hub's broadcasts, or no room left: those go first.
        flush();
    }
    let full = CORK.with(|c| {
        let mut c = c.borrow_mut();
        let cork = c.get_or_insert_with(|| Cork { hub: hub.clone(), entries: Vec::new(), bytes: 0 });
        cork.entries.push(Corked { members, except, prepared: prepared.clone() });
        cork.bytes += len;
        cork.entries.len() >= MAX_CORKED_MESSAGES || cork.bytes >= MAX_CORKED_BYTES
    });
    PENDING.set(true);
    if full {
        flush();
    }
    addressed
}

/// Queues a run of broadcasts with the same receivers on each of them, in
/// order. Returns how many receivers took the first.
fn deliver(hub: &Hub, members: &Members, except: Option<ConnId>, messages: Vec<PreparedMessage>) -> usize {
    let receivers = members.iter().filter(|(id, _)| Some(*id) != except);
    if messages.len() == 1 || members.len() < MIN_RECEIVERS_TO_JOIN {
        let mut first = 0;
        for (i, prepared) in messages.iter().enumerate() {
            let sent = receivers.clone().filter(|(_, s)| s.send_prepared(prepared).is_ok()).count();
            hub.record_delivery(prepared, sent);
            if i == 0 {
                first = sent;
            }
        }
        return first;
    }
    let batch = PreparedBatch::new(messages);
    let mut sent = vec![0; batch.messages().len()];
    for (_, shared) in receivers {
        shared.send_batch(&batch, &mut sent);
    }
    for (prepared, &n) in batch.messages().iter().zip(&sent) {
        hub.record_delivery(prepared, n);
    }
    sent[0]
}

impl ConnShared {
    /// Queues every message of a batch of broadcasts under one lock, with
    /// at most one wake-up: as one shared chunk when it fits whole, else
    /// one by one, each as `send_prepared` would. Counts each message this
    /// connection took in `sent`.
    fn send_batch(&self, batch: &PreparedBatch, sent: &mut [usize]) {
        self.update(|inner| {
            if inner.pending_close.is_none() && inner.conn.send_prepared_batch(batch) {
                inner.metrics.sent_many(batch.messages().len());
                sent.iter_mut().for_each(|n| *n += 1);
                return;
            }
            for (message, n) in batch.messages().iter().zip(sent) {
                if queue_prepared(inner, message).is_ok() {
                    *n += 1;
                }
            }
        })
    }
}

/// What `ConnShared::send_prepared` does, under a lock already held.
fn queue_prepared(inner: &mut ConnInner, message: &PreparedMessage) -> Result<(), SendError> {
    if inner.pending_close.is_some() {
        return Err(SendError::Closed);
    }
    let result = inner.conn.send_prepared(message).map_err(SendError::from);
    inner.metrics.sent(&result, inner.conn.is_open());
    result
}

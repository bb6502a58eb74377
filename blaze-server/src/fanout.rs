//! Delivering a broadcast to its receivers, batched (issue 13).
//!
//! A broadcast made while a connection's driver hands a batch of events to
//! its handler (one read's worth of messages, `Driver::dispatch_events`)
//! is *corked*: it is framed at once and its receivers are looked up at
//! once, but queueing it on each receiver waits until the end of the
//! worker thread's scheduler tick: the driver whose batch opened the cork
//! yields when its batch ends (it wakes itself, which queues it behind
//! every task already ready on the worker), again while those added
//! broadcasts to the cork (at most [`MAX_FLUSH_YIELDS`] passes: tokio's
//! mid-tick reactor polls queue newly read messages behind it, and one
//! pass split a chat round into a third more writes), and then delivers
//! the cork ([`PendingFlush`]). No task is spawned for it: a lone
//! publisher pays one extra poll of its own driver, which then writes
//! its own copy of the broadcast in the same poll. A self-wake, not
//! `tokio::task::yield_now`: tokio wakes its deferred tasks into the LIFO
//! slot after a reactor poll, ahead of the drivers that poll woke, and
//! each flush then cost an extra `epoll_wait` (chat-32: twice the epolls,
//! a quarter more writes).
//! The drivers woken by one poll of the reactor (every client of a chat
//! room that published at once) thus add their broadcasts to one cork. The
//! broadcasts of a cork to the same receivers are then joined into one
//! buffer ([`PreparedBatch`]) and each receiver takes them all under one
//! lock, as one shared chunk (one reference count, one iovec), with at
//! most one wake-up. This is what uWebSockets does with its publications:
//! drained once per event-loop iteration, corked per socket. A 10,000
//! subscriber fan-out of 100 messages read in one go touches each receiver
//! once instead of 100 times, and 32 publishers that each publish once
//! to 32 receivers wake each receiver once instead of 32 times.
//!
//! What stays exactly as without the cork:
//!
//! * every receiver gets every message once, in the order each publisher
//!   made its broadcasts (corked broadcasts leave in call order;
//!   consecutive ones to the same receivers are joined, others are not
//!   reordered around them; a driver that moves to another worker thread
//!   delivers what it left corked on the first before its next batch,
//!   [`catch_up`]);
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
//! refuses it when the cork is delivered (closed, over its bound) applies
//! its policy then and is not subtracted. Broadcasts outside a driver's
//! batch (`app.broadcast` from any task, stream-style handlers, cluster
//! deliveries) are queued at once, as before, and return the exact count.
//! A cork holds at most 1,024 messages or 256 KiB of frames: past either
//! it is delivered at once.
//!
//! Delivery never holds the hub's registry lock: the member list is an
//! `Arc`'d snapshot ([`crate::hub::Members`]) shared by every broadcast
//! until the membership changes, so connects, disconnects and other
//! broadcasts never wait for a fan-out to finish.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use blaze_proto::{ConnId, PreparedBatch, PreparedMessage};

use crate::error::SendError;
use crate::hub::{Hub, Members};
use crate::socket::{ConnInner, ConnShared};

/// Corked messages past which the cork is flushed early (bounds the memory
/// one tick's broadcasts can hold back).
const MAX_CORKED_MESSAGES: usize = 1024;
/// Corked frame bytes past which the cork is flushed early: also the most
/// a joined batch copies.
const MAX_CORKED_BYTES: usize = 256 * 1024;
/// Receivers from which joining a run of broadcasts pays for its copy.
const MIN_RECEIVERS_TO_JOIN: usize = 2;

thread_local! {
    /// A driver is dispatching a batch of events on this thread.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// `CORK` may hold broadcasts (a plain flag: the check on every send
    /// is one thread-local load).
    static PENDING: Cell<bool> = const { Cell::new(false) };
    /// The cork this thread's drivers add their broadcasts to.
    static CORK: RefCell<Option<Arc<Cork>>> = const { RefCell::new(None) };
}

/// The broadcasts the drivers of one worker thread made during one
/// scheduler tick, all of one hub. Only that thread adds to it; any thread
/// may flush it (the driver that owes its delivery, or one that moved to another
/// thread and must deliver its earlier broadcasts first).
pub(crate) struct Cork {
    held: Mutex<Held>,
}

struct Held {
    hub: Arc<Hub>,
    entries: Vec<Corked>,
    bytes: usize,
    /// Flushed: nothing more is added (the thread starts a new cork).
    closed: bool,
    /// A driver owes its delivery ([`PendingFlush`]).
    flush_scheduled: bool,
}

struct Corked {
    members: Members,
    except: Option<ConnId>,
    prepared: PreparedMessage,
}

impl Cork {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // Only our own short sections run under it.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers what the cork holds, once. Delivery happens under the
    /// cork's lock: the thread that owns it, wanting to add to it or flush
    /// it meanwhile, waits, so its later broadcasts (in a new cork) cannot
    /// overtake these.
    fn flush(&self) {
        let mut held = self.lock();
        if held.closed {
            return;
        }
        held.closed = true;
        let entries = std::mem::take(&mut held.entries);
        let mut start = 0;
        while start < entries.len() {
            let first = &entries[start];
            let end = start
                + entries[start..]
                    .iter()
                    .take_while(|e| Arc::ptr_eq(&e.members, &first.members) && e.except == first.except)
                    .count();
            let run: Vec<PreparedMessage> = entries[start..end].iter().map(|e| e.prepared.clone()).collect();
            deliver(&held.hub, &first.members, first.except, run);
            start = end;
        }
    }
}

/// Corks the broadcasts made on this thread while a driver dispatches a
/// batch. [`CorkGuard::finish`] ends the batch and leaves them corked until
/// the end of the scheduler tick; dropped without it (a panic unwinding
/// through the holder), it delivers at once. Nested corks do nothing.
#[must_use]
pub(crate) struct CorkGuard {
    outermost: bool,
}

/// Starts corking this thread's broadcasts (see the module docs).
pub(crate) fn cork() -> CorkGuard {
    let outermost = !ACTIVE.replace(true);
    CorkGuard { outermost }
}

impl CorkGuard {
    /// Ends the batch, leaving what this thread has corked in the cork.
    /// Returns the cork this driver's broadcasts may still be waiting in,
    /// for [`catch_up`], and, when this batch is the cork's first to end,
    /// its delivery: the caller yields (lets every task already ready on
    /// this worker run, so the drivers woken by the same poll of the
    /// reactor add their broadcasts to the same cork and each receiver
    /// takes them all at once) and then delivers it.
    pub(crate) fn finish(mut self) -> (Option<Arc<Cork>>, Option<PendingFlush>) {
        if !std::mem::take(&mut self.outermost) {
            return (None, None);
        }
        ACTIVE.set(false);
        if !PENDING.get() {
            return (None, None);
        }
        let Some(cork) = CORK.with(|c| c.borrow().clone()) else { return (None, None) };
        let mut held = cork.lock();
        if held.closed {
            drop(held);
            forget(&cork);
            return (None, None);
        }
        if std::mem::replace(&mut held.flush_scheduled, true) {
            drop(held);
            return (Some(cork), None);
        }
        let seen = held.entries.len();
        drop(held);
        (Some(cork.clone()), Some(PendingFlush { cork, seen, yields: 0 }))
    }
}

impl Drop for CorkGuard {
    fn drop(&mut self) {
        if self.outermost {
            ACTIVE.set(false);
            uncork();
        }
    }
}

/// A cork's delivery, owed by the driver whose batch opened it: the
/// driver yields, calls [`PendingFlush::after_yield`] when polled again
/// and delivers once that says so. Dropped (the driver ended first), it
/// delivers at once: the other drivers' broadcasts in it are not lost.
#[must_use]
pub(crate) struct PendingFlush {
    cork: Arc<Cork>,
    /// Broadcasts in the cork at the last look.
    seen: usize,
    yields: usize,
}

/// The most times a driver lets the ready tasks run before delivering its
/// cork.
pub(crate) const MAX_FLUSH_YIELDS: usize = 4;

impl PendingFlush {
    /// Called after each yield: whether to deliver now (nothing was added
    /// to the cork during that pass, or this was the last pass allowed).
    pub(crate) fn after_yield(&mut self) -> bool {
        self.yields += 1;
        let held = self.cork.lock();
        let now = if held.closed { 0 } else { held.entries.len() };
        drop(held);
        let grew = std::mem::replace(&mut self.seen, now) < now;
        !grew || self.yields >= MAX_FLUSH_YIELDS
    }

    /// Delivers the cork, unless something flushed it already.
    pub(crate) fn run(self) {
        drop(self);
    }
}

impl Drop for PendingFlush {
    fn drop(&mut self) {
        self.cork.flush();
        forget(&self.cork);
    }
}

/// Drops this thread's hold on `cork` once it is delivered, so that the
/// thread's next sends and batches do not each look into a closed cork
/// (a mutex lock and an `Arc` clone on every driver round: callgrind on
/// a chat-room run, ~1,100 instructions per message).
fn forget(cork: &Arc<Cork>) {
    let ours = CORK.with(|c| {
        let Ok(mut slot) = c.try_borrow_mut() else { return false };
        let ours = slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, cork));
        if ours {
            *slot = None;
        }
        ours
    });
    if ours {
        PENDING.set(false);
    }
}

/// Called by a driver before its next batch with the cork its previous
/// batch's broadcasts went to: on another thread's cork (the task moved
/// between worker threads), they are delivered now, so they stay ahead of
/// what this batch sends. This thread's own cork keeps its order anyway.
pub(crate) fn catch_up(previous: &Arc<Cork>) {
    let ours = CORK.with(|c| c.borrow().as_ref().is_some_and(|c| Arc::ptr_eq(c, previous)));
    if !ours {
        previous.flush();
    }
}

/// Delivers whatever this thread has corked. Called before any other
/// operation that must come after them (a direct send, a close, a spawn,
/// a look at a queue).
#[inline]
pub(crate) fn uncork() {
    if PENDING.get() {
        flush_thread();
    }
}

#[cold]
fn flush_thread() {
    PENDING.set(false);
    if let Some(cork) = CORK.with(|c| c.borrow_mut().take()) {
        cork.flush();
    }
}

/// Queues `prepared` on `members` but `except` (`except_listed`: it is one
/// of them), now or, corked, at the end of this thread's tick. Returns how
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
    let entry = Corked { members, except, prepared: prepared.clone() };
    // Added to this thread's cork unless another thread flushed it, it is
    // another hub's or it has no room left (then it is flushed first).
    let added = CORK.with(|c| {
        let slot = c.borrow();
        let Some(cork) = slot.as_ref() else { return Err(entry) };
        let mut held = cork.lock();
        if held.closed || !Arc::ptr_eq(&held.hub, hub) || held.bytes + len > MAX_CORKED_BYTES {
            return Err(entry);
        }
        held.entries.push(entry);
        held.bytes += len;
        Ok(held.entries.len() >= MAX_CORKED_MESSAGES || held.bytes >= MAX_CORKED_BYTES)
    });
    let full = match added {
        Ok(full) => full,
        Err(entry) => {
            uncork();
            let held =
                Held { hub: hub.clone(), bytes: len, entries: vec![entry], closed: false, flush_scheduled: false };
            CORK.with(|c| *c.borrow_mut() = Some(Arc::new(Cork { held: Mutex::new(held) })));
            len >= MAX_CORKED_BYTES
        }
    };
    PENDING.set(true);
    if full {
        flush_thread();
    }
    addressed
}

/// Queues a run of broadcasts with the same receivers on each of them, in
/// order. Returns how many receivers took the first. Runs under a cork's
/// lock, so it queues with `update`, never `with_conn` (whose uncork could
/// flush that same cork again).
fn deliver(hub: &Hub, members: &Members, except: Option<ConnId>, messages: Vec<PreparedMessage>) -> usize {
    let receivers = members.iter().filter(|(id, _)| Some(*id) != except);
    if messages.len() == 1 || members.len() < MIN_RECEIVERS_TO_JOIN {
        let mut first = 0;
        for (i, prepared) in messages.iter().enumerate() {
            let sent =
                receivers.clone().filter(|(_, s)| s.update(|inner| queue_prepared(inner, prepared)).is_ok()).count();
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

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::sync::Mutex;
    use std::time::Instant;

    use blaze_proto::{Config, Connection, Role};

    use super::*;
    use crate::info::RequestInfo;
    use crate::socket::WebSocket;

    /// A registered server connection on `/r` that no driver writes for:
    /// what is queued on it stays in its outbound queue.
    fn member(hub: &Arc<Hub>) -> WebSocket {
        let shared = Arc::new(ConnShared {
            id: hub.next_id(),
            info: RequestInfo::new(Arc::from("/r"), "/r", &[], &[], &[], None, None, None),
            inner: Mutex::new(ConnInner {
                conn: Connection::new(Role::Server, Config::default(), Instant::now()),
                driver_waker: None,
                pending_close: None,
                pending_abort: false,
                inbox: None,
                metrics: Default::default(),
            }),
            locals: Mutex::new(Default::default()),
            hub: Some(hub.clone()),
            spawner: Arc::new(|_| {}),
        });
        hub.register(shared.clone());
        WebSocket { shared }
    }

    /// The payloads queued on `ws`, in order (server frames: unmasked
    /// text frames of fewer than 126 bytes).
    fn queued(ws: &WebSocket) -> Vec<String> {
        let inner = ws.shared.lock();
        let mut slices = [IoSlice::new(&[]); 64];
        let count = inner.conn.transmit_slices(&mut slices);
        let bytes: Vec<u8> = slices[..count].iter().flat_map(|s| s.iter().copied()).collect();
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 2 {
            let len = usize::from(rest[1] & 0x7f);
            out.push(String::from_utf8(rest[2..2 + len].to_vec()).unwrap());
            rest = &rest[2 + len..];
        }
        out
    }

    #[test]
    fn a_batchs_broadcasts_wait_for_its_delivery_which_comes_once() {
        let hub = Arc::new(Hub::default());
        let receiver = member(&hub);
        let guard = cork();
        assert_eq!(hub.broadcast("/r", "one", None).unwrap(), 1);
        assert_eq!(hub.broadcast("/r", "two", None).unwrap(), 1);
        let (last, flusher) = guard.finish();
        assert!(last.is_some());
        assert!(queued(&receiver).is_empty(), "corked until the tick ends");
        flusher.expect("this batch owes the delivery").run();
        assert_eq!(queued(&receiver), ["one", "two"]);
        // Flushed once: this thread's next send finds nothing left.
        uncork();
        assert_eq!(queued(&receiver), ["one", "two"]);
    }

    #[test]
    fn a_driver_on_another_thread_delivers_its_last_batchs_broadcasts_first() {
        // A driver's batch broadcasts on one worker thread and ends; its
        // next batch runs on another before the first's delivery.
        let hub = Arc::new(Hub::default());
        let receiver = member(&hub);
        let (last, flusher) = std::thread::scope(|s| {
            s.spawn(|| {
                let guard = cork();
                hub.broadcast("/r", "broadcast first", None).unwrap();
                let (last, flusher) = guard.finish();
                (last.expect("corked"), flusher.expect("this batch owes the delivery"))
            })
            .join()
            .unwrap()
        });
        std::thread::scope(|s| {
            s.spawn(|| {
                catch_up(&last);
                let guard = cork();
                receiver.send("direct second").unwrap();
                drop(guard);
            });
        });
        assert_eq!(queued(&receiver), ["broadcast first", "direct second"]);
        // The first driver's delivery comes late and delivers nothing twice.
        flusher.run();
        assert_eq!(queued(&receiver), ["broadcast first", "direct second"]);
    }
}

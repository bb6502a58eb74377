//! A one-shot, many-waiter shutdown signal, runtime-independent.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    triggered: AtomicBool,
    /// How many times it has been triggered: a signal that was waiting
    /// when it fired completes even if `reset` ran before it was polled.
    epoch: AtomicU64,
    waiters: Mutex<Vec<Waker>>,
    /// Waiters that come and go (each handshake in flight): removed when
    /// their [`Triggered`] is dropped, so they do not pile up.
    transient: Mutex<HashMap<u64, Waker>>,
    next_key: AtomicU64,
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.triggered.store(true, Ordering::SeqCst);
        for waker in self.waiters.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            waker.wake();
        }
        for (_, waker) in self.transient.lock().unwrap_or_else(PoisonError::into_inner).drain() {
            waker.wake();
        }
    }

    /// Completes once `trigger` has been called; unlike [`Shutdown::wait`]
    /// its waker is forgotten when it is dropped (for the many short-lived
    /// waiters, such as each handshake in flight).
    pub(crate) fn triggered(&self) -> Triggered<'_> {
        Triggered { shutdown: self, key: None }
    }

    pub(crate) fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::SeqCst)
    }

    /// Completes once `trigger` has been called.
    pub(crate) async fn wait(&self) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        self.wait_since(epoch).await
    }

    /// Completes once triggered, or once triggered after `epoch` (even if
    /// reset since).
    async fn wait_since(&self, epoch: u64) {
        let fired = || self.is_triggered() || self.epoch.load(Ordering::SeqCst) != epoch;
        poll_fn(|cx| {
            if fired() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if fired() {
                return Poll::Ready(());
            }
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// A future owning the signal: completes once a shutdown has started
    /// (now or later; one that started and ended since this call counts).
    pub(crate) fn signal(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let shutdown = self.clone();
        let epoch = shutdown.epoch.load(Ordering::SeqCst);
        async move { shutdown.wait_since(epoch).await }
    }

    /// How many times the signal has fired so far.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether it has fired since [`Shutdown::epoch`] returned `epoch`
    /// (even if re-armed since: a serve that ended meanwhile).
    pub(crate) fn fired_since(&self, epoch: u64) -> bool {
        self.epoch() != epoch
    }

    /// Re-arms the signal so the app can be served again.
    pub(crate) fn reset(&self) {
        self.triggered.store(false, Ordering::SeqCst);
    }
}

/// See [`Shutdown::triggered`].
pub(crate) struct Triggered<'a> {
    shutdown: &'a Shutdown,
    key: Option<u64>,
}

impl Future for Triggered<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown.is_triggered() {
            return Poll::Ready(());
        }
        let shutdown = self.shutdown;
        let key = *self.key.get_or_insert_with(|| shutdown.next_key.fetch_add(1, Ordering::Relaxed));
        let mut transient = self.shutdown.transient.lock().unwrap_or_else(PoisonError::into_inner);
        if self.shutdown.is_triggered() {
            return Poll::Ready(());
        }
        transient.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Triggered<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.shutdown.transient.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
        }
    }
}

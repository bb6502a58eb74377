//! A one-shot, many-waiter shutdown signal, runtime-independent.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    triggered: AtomicBool,
    /// How many times it has been triggered: a signal that was waiting
    /// when it fired completes even if `reset` ran before it was polled.
    epoch: AtomicU64,
    waiters: Mutex<Vec<Waker>>,
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.triggered.store(true, Ordering::SeqCst);
        for waker in self.waiters.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            waker.wake();
        }
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

    /// Re-arms the signal so the app can be served again.
    pub(crate) fn reset(&self) {
        self.triggered.store(false, Ordering::SeqCst);
    }
}

//! A one-shot, many-waiter shutdown signal, runtime-independent.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Poll, Waker};

#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    triggered: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
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
        poll_fn(|cx| {
            if self.is_triggered() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if self.is_triggered() {
                return Poll::Ready(());
            }
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Re-arms the signal so the app can be served again.
    pub(crate) fn reset(&self) {
        self.triggered.store(false, Ordering::SeqCst);
    }
}

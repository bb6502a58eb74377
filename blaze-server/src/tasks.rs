//! Background tasks of an app (`app.spawn`): counted while they run (a
//! finished task leaves the set at once, however it finished), and stopped
//! and awaited when the server shuts down, on every runtime.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::handler::CatchUnwind;
use crate::runtime::{timeout, BoxFuture, Runtime};

/// How long shutdown waits for stopped background tasks to be dropped. A
/// stopped task is dropped at its next poll, which its runtime schedules at
/// once; only a task blocking its thread can hold shutdown this long.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct BackgroundTasks {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    live: HashMap<u64, Arc<Control>>,
    /// Waiting for `live` to become empty.
    idle_waiters: Vec<Waker>,
}

#[derive(Debug, Default)]
struct Control {
    stopped: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BackgroundTasks {
    /// Runs `future` on `rt` as a background task of this set.
    pub(crate) fn spawn<R: Runtime>(self: &Arc<Self>, rt: &R, future: BoxFuture<()>) {
        let control = Arc::new(Control::default());
        let id = {
            let mut state = lock(&self.state);
            state.next_id += 1;
            let id = state.next_id;
            state.live.insert(id, control.clone());
            id
        };
        rt.spawn(Box::pin(Task { id, control, tasks: self.clone(), future: Some(CatchUnwind(future)) }));
    }

    /// Background tasks still running.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).live.len()
    }

    /// Stops every running task (each is dropped at its next poll, which
    /// this wakes it for) and waits until all are dropped, at most
    /// [`STOP_TIMEOUT`].
    pub(crate) async fn stop_all<R: Runtime>(&self, rt: &R) {
        let controls: Vec<Arc<Control>> = lock(&self.state).live.values().cloned().collect();
        if controls.is_empty() {
            return;
        }
        tracing::debug!(tasks = controls.len(), "stopping background tasks");
        for control in controls {
            control.stopped.store(true, Ordering::SeqCst);
            if let Some(waker) = lock(&control.waker).take() {
                waker.wake();
            }
        }
        let idle = poll_fn(|cx| {
            let mut state = lock(&self.state);
            if state.live.is_empty() {
                return Poll::Ready(());
            }
            state.idle_waiters.push(cx.waker().clone());
            Poll::Pending
        });
        if timeout(rt, rt.now() + STOP_TIMEOUT, idle).await.is_none() {
            tracing::warn!(tasks = self.len(), "background tasks still running after being stopped (blocking their thread?)");
        }
    }

    fn finished(&self, id: u64) {
        let waiters = {
            let mut state = lock(&self.state);
            state.live.remove(&id);
            if !state.live.is_empty() {
                return;
            }
            std::mem::take(&mut state.idle_waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

/// A background task: the user's future until it finishes or is stopped.
struct Task {
    id: u64,
    control: Arc<Control>,
    tasks: Arc<BackgroundTasks>,
    future: Option<CatchUnwind>,
}

impl Future for Task {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.control.stopped.load(Ordering::SeqCst) {
            self.future = None;
            return Poll::Ready(());
        }
        *lock(&self.control.waker) = Some(cx.waker().clone());
        // Checked again: a stop between the first check and storing the
        // waker found no waker to wake.
        if self.control.stopped.load(Ordering::SeqCst) {
            self.future = None;
            return Poll::Ready(());
        }
        let Some(future) = self.future.as_mut() else { return Poll::Ready(()) };
        match Pin::new(future).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(panic) = result {
                    tracing::error!("background task panicked: {panic}");
                }
                self.future = None;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // The user's future is dropped before the task counts as finished,
        // so "stopped and awaited" means its destructors have run.
        self.future = None;
        self.tasks.finished(self.id);
    }
}

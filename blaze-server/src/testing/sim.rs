//! A [`Runtime`] that runs every task on the calling thread, on a virtual
//! clock that moves only when the test moves it.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::runtime::{BoxFuture, Runtime};

/// Polls one task may take in one [`TestRuntime::run_until_idle`] before
/// it is taken for a livelock (a task that wakes itself forever without
/// waiting on time or input).
const MAX_POLLS_PER_RUN: usize = 1_000_000;

/// A single-threaded executor with a virtual clock: the [`Runtime`] of
/// [`crate::testing`].
///
/// Tasks run only inside [`run_until_idle`](Self::run_until_idle) and
/// [`advance`](Self::advance), on the calling thread, in the order they
/// were woken, so a test (or a fuzz input) runs the same way every time.
/// [`now`](Runtime::now) starts at the instant the runtime was made and
/// moves only in `advance`, which fires each timer at its own deadline:
/// a 90-second heartbeat timeout takes microseconds.
///
/// Cheap to clone: every clone is the same executor and clock.
#[derive(Clone)]
pub struct TestRuntime {
    sim: Arc<Sim>,
}

impl std::fmt::Debug for TestRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRuntime")
            .field("elapsed", &self.elapsed())
            .field("tasks", &lock(&self.sim.tasks).len())
            .finish_non_exhaustive()
    }
}

struct Sim {
    start: Instant,
    elapsed: Mutex<Duration>,
    /// Tasks woken and not yet polled, in wake order.
    ready: Mutex<VecDeque<Arc<Task>>>,
    /// Every live task, so `clear` can drop them (tasks hold the runtime:
    /// without this a finished test would leak its whole server).
    tasks: Mutex<BTreeMap<u64, Arc<Task>>>,
    /// Pending sleeps by (deadline, id).
    timers: Mutex<BTreeMap<(Instant, u64), Waker>>,
    next_id: AtomicU64,
}

struct Task {
    id: u64,
    future: Mutex<Option<BoxFuture<()>>>,
    queued: AtomicBool,
    sim: Weak<Sim>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            if let Some(sim) = self.sim.upgrade() {
                lock(&sim.ready).push_back(self.clone());
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for TestRuntime {
    fn default() -> TestRuntime {
        TestRuntime::new()
    }
}

impl TestRuntime {
    /// A runtime with no tasks; its clock starts now.
    pub fn new() -> TestRuntime {
        TestRuntime {
            sim: Arc::new(Sim {
                start: Instant::now(),
                elapsed: Mutex::new(Duration::ZERO),
                ready: Mutex::default(),
                tasks: Mutex::default(),
                timers: Mutex::default(),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Virtual time passed since the runtime was made.
    pub fn elapsed(&self) -> Duration {
        *lock(&self.sim.elapsed)
    }

    /// Polls every woken task until none is left to run (all are waiting
    /// on input, on a timer, or finished). Returns how many polls it took.
    ///
    /// # Panics
    ///
    /// If the tasks never settle (over a million polls): a livelock.
    pub fn run_until_idle(&self) -> usize {
        let mut polls = 0;
        loop {
            let Some(task) = lock(&self.sim.ready).pop_front() else { return polls };
            polls += 1;
            assert!(
                polls <= MAX_POLLS_PER_RUN,
                "TestRuntime: tasks keep waking each other without settling (livelock)"
            );
            task.queued.store(false, Ordering::SeqCst);
            let Some(mut future) = lock(&task.future).take() else { continue };
            let waker = Waker::from(task.clone());
            let done = future.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
            if done {
                lock(&self.sim.tasks).remove(&task.id);
            } else {
                *lock(&task.future) = Some(future);
            }
        }
    }

    /// Moves the clock forward by `duration`, firing every timer due on
    /// the way at its own deadline (and running what it wakes) before the
    /// next, so tasks see time pass as it would.
    pub fn advance(&self, duration: Duration) {
        let target = self.now().checked_add(duration).expect("TestRuntime::advance: the clock overflowed");
        loop {
            self.run_until_idle();
            let next = lock(&self.sim.timers).keys().next().map(|(at, _)| *at);
            let step_to = match next {
                Some(at) if at <= target => at.max(self.now()),
                _ => target,
            };
            *lock(&self.sim.elapsed) = step_to - self.sim.start;
            let due = {
                let mut timers = lock(&self.sim.timers);
                let later = timers.split_off(&(step_to, u64::MAX));
                std::mem::replace(&mut *timers, later)
            };
            for waker in due.into_values() {
                waker.wake();
            }
            if step_to >= target {
                self.run_until_idle();
                return;
            }
        }
    }

    /// The earliest pending timer, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        lock(&self.sim.timers).keys().next().map(|(at, _)| *at)
    }

    /// Live tasks (spawned and not finished).
    pub fn task_count(&self) -> usize {
        lock(&self.sim.tasks).len()
    }

    /// Drops every task and timer: what a test's server held is freed.
    pub fn clear(&self) {
        let tasks = std::mem::take(&mut *lock(&self.sim.tasks));
        lock(&self.sim.ready).clear();
        let timers = std::mem::take(&mut *lock(&self.sim.timers));
        // Dropped outside the locks: a future's destructor may wake others.
        let futures: Vec<_> = tasks.values().filter_map(|t| lock(&t.future).take()).collect();
        drop(futures);
        drop(timers);
        lock(&self.sim.ready).clear();
    }
}

impl Runtime for TestRuntime {
    fn now(&self) -> Instant {
        self.sim.start + self.elapsed()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        let id = self.sim.next_id.fetch_add(1, Ordering::Relaxed);
        Box::pin(Sleep { sim: Arc::downgrade(&self.sim), deadline, id, registered: false })
    }

    fn spawn(&self, future: BoxFuture<()>) {
        let id = self.sim.next_id.fetch_add(1, Ordering::Relaxed);
        let task = Arc::new(Task {
            id,
            future: Mutex::new(Some(future)),
            queued: AtomicBool::new(false),
            sim: Arc::downgrade(&self.sim),
        });
        lock(&self.sim.tasks).insert(id, task.clone());
        task.wake_by_ref();
    }
}

/// A timer of the virtual clock. Holds the runtime weakly: a sleeping
/// task does not keep its executor alive.
struct Sleep {
    sim: Weak<Sim>,
    deadline: Instant,
    id: u64,
    registered: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sim) = self.sim.upgrade() else { return Poll::Pending };
        if sim.start + *lock(&sim.elapsed) >= self.deadline {
            lock(&sim.timers).remove(&(self.deadline, self.id));
            self.registered = false;
            return Poll::Ready(());
        }
        lock(&sim.timers).insert((self.deadline, self.id), cx.waker().clone());
        self.registered = true;
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.registered {
            if let Some(sim) = self.sim.upgrade() {
                lock(&sim.timers).remove(&(self.deadline, self.id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn timers_fire_at_their_deadline_in_order() {
        let rt = TestRuntime::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for secs in [3u64, 1, 2] {
            let (rt2, log) = (rt.clone(), log.clone());
            rt.spawn(Box::pin(async move {
                rt2.sleep_until(rt2.now() + Duration::from_secs(secs)).await;
                log.lock().unwrap().push((secs, rt2.elapsed()));
            }));
        }
        rt.run_until_idle();
        assert!(log.lock().unwrap().is_empty());
        rt.advance(Duration::from_millis(1500));
        assert_eq!(*log.lock().unwrap(), vec![(1, Duration::from_secs(1))]);
        rt.advance(Duration::from_secs(10));
        let log = log.lock().unwrap().clone();
        assert_eq!(log, vec![(1, Duration::from_secs(1)), (2, Duration::from_secs(2)), (3, Duration::from_secs(3))]);
        assert_eq!(rt.elapsed(), Duration::from_millis(11_500));
        assert_eq!(rt.task_count(), 0);
    }

    #[test]
    fn clear_drops_pending_tasks() {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let rt = TestRuntime::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        let (rt2, flag) = (rt.clone(), Flag(dropped.clone()));
        rt.spawn(Box::pin(async move {
            let _flag = flag;
            rt2.sleep_until(rt2.now() + Duration::from_secs(3600)).await;
        }));
        rt.run_until_idle();
        assert_eq!(rt.task_count(), 1);
        rt.clear();
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(rt.task_count(), 0);
        assert_eq!(rt.next_timer(), None);
    }
}

//! Shutdown awareness and background tasks on async-std (issue 16), the
//! same behaviour as on tokio: `app.spawn` tasks stopped and awaited when
//! `serve` returns, finished ones pruned from the count, `shutdown_signal()`
//! and `is_shutting_down()`, and `delay`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_async_std::{App, Callbacks, Message};

const WAIT: Duration = Duration::from_secs(10);

async fn serve(app: &App) -> (SocketAddr, async_std::task::JoinHandle<std::io::Result<()>>) {
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    (addr, async_std::task::spawn(async move { app.serve(listener).await }))
}

async fn eventually(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        async_std::task::sleep(Duration::from_millis(10)).await;
    }
    check()
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_std::test]
async fn spawned_tasks_are_stopped_and_dropped_before_serve_returns() {
    let app = App::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(AtomicUsize::new(0));
    let (flag, count) = (DropFlag(dropped.clone()), ticks.clone());
    app.spawn(async move {
        let _flag = flag;
        loop {
            count.fetch_add(1, Ordering::SeqCst);
            blaze_async_std::delay(Duration::from_millis(5)).await;
        }
    });
    let (_addr, server) = serve(&app).await;
    assert!(eventually(WAIT, || ticks.load(Ordering::SeqCst) >= 3).await, "the task runs");
    assert_eq!(app.background_tasks(), 1);
    app.shutdown();
    async_std::future::timeout(WAIT, server).await.expect("serve returns").unwrap();
    assert!(dropped.load(Ordering::SeqCst), "the task's future was dropped before serve returned");
    assert_eq!(app.background_tasks(), 0);
    let after = ticks.load(Ordering::SeqCst);
    async_std::task::sleep(Duration::from_millis(50)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), after, "a stopped task does not run again");
}

#[async_std::test]
async fn finished_tasks_leave_the_count_at_once() {
    let app = App::new();
    for i in 0..100u64 {
        app.spawn(async move { blaze_async_std::delay(Duration::from_millis(i % 10)).await });
    }
    app.spawn(async { panic!("background task failure") });
    app.spawn(std::future::pending());
    assert!(eventually(WAIT, || app.background_tasks() == 1).await, "{}", app.background_tasks());
}

#[async_std::test]
async fn shutdown_signal_ends_a_ticker_cleanly_and_every_handle_reports_shutting_down() {
    let app = App::new();
    let seen_in_on_close = Arc::new(Mutex::new(None));
    let seen = seen_in_on_close.clone();
    app.ws(
        "/market",
        Callbacks::new()
            .on_message(|ws, _| {
                let _ = ws.send(format!("shutting down: {}", ws.is_shutting_down()));
            })
            .on_close(move |ws, code, _| *seen.lock().unwrap() = Some((code, ws.is_shutting_down()))),
    );
    let ended_cleanly = Arc::new(Mutex::new(None));
    let (ticker, stop, ended) = (app.clone(), app.shutdown_signal(), ended_cleanly.clone());
    app.spawn(async move {
        stop.await;
        *ended.lock().unwrap() = Some(ticker.is_shutting_down());
    });
    let (addr, server) = serve(&app).await;
    let handle = app.shutdown_handle();
    assert!(!app.is_shutting_down() && !handle.is_shutting_down());
    let mut client = blaze_async_std::connect(&format!("ws://{addr}/market")).await.unwrap();
    client.send("status").unwrap();
    let reply = async_std::future::timeout(WAIT, client.recv()).await.expect("a reply");
    assert_eq!(reply, Some(Message::text("shutting down: false")));
    handle.shutdown();
    assert!(app.is_shutting_down() && handle.is_shutting_down());
    // Blaze's client answers the 1001 and sees the end.
    assert_eq!(async_std::future::timeout(WAIT, client.recv()).await.expect("the end"), None);
    assert_eq!(client.close_status().map(|(code, _)| code), Some(1001));
    async_std::future::timeout(WAIT, server).await.expect("serve returns").unwrap();
    assert_eq!(*ended_cleanly.lock().unwrap(), Some(true), "the task saw the signal and ended by itself");
    assert_eq!(*seen_in_on_close.lock().unwrap(), Some((1001, true)));
    assert!(!app.is_shutting_down());
}

#[async_std::test]
async fn delay_waits_at_least_its_duration() {
    let start = Instant::now();
    blaze_async_std::delay(Duration::from_millis(50)).await;
    assert!(start.elapsed() >= Duration::from_millis(50));
}

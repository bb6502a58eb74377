//! Shutdown awareness and background tasks (issue 16), on tokio:
//! `app.spawn` tasks are stopped and awaited when `serve` returns, finished
//! ones leave the count, `shutdown_signal()` lets a loop end cleanly,
//! `is_shutting_down()` on the app, the shutdown handle and the
//! connection handle; `delay` sleeps on the runtime's clock.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{App, Callbacks};
use common::*;

/// Sets its flag when dropped: proves a task's future was dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_are_stopped_and_dropped_before_serve_returns() {
    let app = App::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(AtomicUsize::new(0));
    let (flag, count) = (DropFlag(dropped.clone()), ticks.clone());
    app.spawn(async move {
        let _flag = flag;
        loop {
            count.fetch_add(1, Ordering::SeqCst);
            blaze_tokio::delay(Duration::from_millis(5)).await;
        }
    });
    let (_addr, server) = serve(&app).await;
    assert!(eventually(Duration::from_secs(5), || ticks.load(Ordering::SeqCst) >= 3).await, "the task runs");
    assert_eq!(app.background_tasks(), 1);
    app.shutdown();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("serve returns").unwrap().unwrap();
    // Stopped *and awaited*: by the time serve has returned the future is gone.
    assert!(dropped.load(Ordering::SeqCst), "the task's future was dropped before serve returned");
    assert_eq!(app.background_tasks(), 0);
    let after = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), after, "a stopped task does not run again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_leave_the_count_at_once() {
    let app = App::new();
    for i in 0..100u64 {
        app.spawn(async move { blaze_tokio::delay(Duration::from_millis(i % 10)).await });
    }
    // One that panics counts as finished too (and does not take the app down).
    app.spawn(async { panic!("background task failure") });
    app.spawn(std::future::pending());
    assert!(eventually(Duration::from_secs(5), || app.background_tasks() == 1).await, "{}", app.background_tasks());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        tokio::pin!(stop);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = blaze_tokio::delay(Duration::from_millis(10)) => {
                    ticks += 1;
                    let _ = ticker.broadcast("/market", format!("tick {ticks}"));
                }
            }
        }
        // Reached only through the signal, not by being stopped.
        *ended.lock().unwrap() = Some(ticker.is_shutting_down());
    });
    let (addr, server) = serve(&app).await;
    let handle = app.shutdown_handle();
    assert!(!app.is_shutting_down() && !handle.is_shutting_down());
    let mut client = blocking(move || connect(addr, "/market")).await;
    client = blocking(move || {
        assert!(next_text(&mut client).starts_with("tick "), "the ticker broadcasts");
        client.send(tungstenite::Message::Text("status".into())).unwrap();
        loop {
            let text = next_text(&mut client);
            if !text.starts_with("tick ") {
                assert_eq!(text, "shutting down: false");
                break;
            }
        }
        client
    })
    .await;
    handle.shutdown();
    assert!(app.is_shutting_down() && handle.is_shutting_down());
    let (code, _) = blocking(move || {
        let close = expect_close(&mut client);
        // Answer the close (tungstenite queued the reply) and read to the end.
        let _ = client.flush();
        while client.read().is_ok() {}
        close
    })
    .await;
    assert_eq!(code, 1001);
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("serve returns").unwrap().unwrap();
    assert_eq!(*ended_cleanly.lock().unwrap(), Some(true), "the ticker saw the signal and ended by itself");
    assert_eq!(*seen_in_on_close.lock().unwrap(), Some((1001, true)), "ws.is_shutting_down() in on_close");
    assert!(!app.is_shutting_down(), "re-armed once serve has returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_taken_before_a_shutdown_completes_even_if_polled_after_serve_returned() {
    let app = App::new();
    let signal = app.shutdown_signal();
    let (_addr, server) = serve(&app).await;
    app.shutdown();
    server.await.unwrap().unwrap();
    assert!(!app.is_shutting_down());
    tokio::time::timeout(Duration::from_secs(5), signal).await.expect("the shutdown that happened is seen");
    // A signal taken now waits for the next shutdown.
    let next = app.shutdown_signal();
    assert!(tokio::time::timeout(Duration::from_millis(50), next).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn delay_sleeps_on_the_runtime_clock() {
    let start = tokio::time::Instant::now();
    blaze_tokio::delay(Duration::from_secs(3600)).await;
    // Paused time: an hour passes at once, exactly, on tokio's clock.
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
}

#[tokio::test]
async fn delay_waits_at_least_its_duration_in_real_time() {
    let start = std::time::Instant::now();
    blaze_tokio::delay(Duration::from_millis(50)).await;
    assert!(start.elapsed() >= Duration::from_millis(50));
}

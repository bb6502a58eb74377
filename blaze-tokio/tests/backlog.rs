//! A client that stops reading and floods small messages its handler does
//! not answer: the server stops reading once its undispatched events pass
//! a bound (TCP pushes back), so memory stays bounded, and the stalled
//! client is dropped by the write timeout rather than kept alive by its
//! own input. (Issue 10; before the bound, 20 MB of empty frames queued
//! millions of events.) Its own test binary: a counting allocator measures
//! the server's peak memory.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks, WsConfig};
use common::*;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_that_does_not_read_is_bounded_and_dropped() {
    let handled = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = App::new();
    let (count, seen) = (handled.clone(), closes.clone());
    app.ws_with_config(
        "/count",
        WsConfig::default().write_timeout(Some(Duration::from_secs(2))).ping_interval(None),
        Callbacks::new()
            .on_open(|ws| {
                // 512 KiB the client never reads: the output stays over
                // write_buffer_size (64 KiB) and under max_backpressure.
                for _ in 0..8 {
                    let _ = ws.send_binary(vec![0u8; 64 * 1024]);
                }
            })
            .on_binary(move |_ws, _data| {
                count.fetch_add(1, Ordering::Relaxed);
            })
            .on_close(move |_ws, code, _reason| seen.lock().unwrap().push(code)),
    );
    // A small send buffer: the 512 KiB the client never reads stays queued.
    let (addr, _server) = serve_with_sndbuf(&app, 4096).await;
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let started = Instant::now();
    let sent = blocking(move || {
        // A small receive buffer, never read: the server's output stalls.
        let mut stream = raw_ws_connect(addr, "/count", Some(4096), "");
        stream.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
        let batch: Vec<u8> = (0..10_000).flat_map(|_| masked_frame(true, 2, b"")).collect();
        let mut sent = 0usize;
        // Up to 20 MB of empty binary frames, until the server pushes back.
        while sent < 20 << 20 {
            match stream.write(&batch) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        // Hold the connection (unread) until the server gives up on it.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_secs(4));
        sent
    })
    .await;
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    // Pushed back long before 20 MB: the kernel's buffers hold a few MB.
    assert!(sent < 16 << 20, "the server kept reading: {sent} bytes taken");
    // 1,024 events of empty frames, the read buffer, the 512 KiB queued:
    // a few MiB at most, never one event per frame sent (tens of MB).
    assert!(peak < 16 << 20, "peak allocation {peak} bytes for {sent} bytes of frames");
    assert!(
        eventually(Duration::from_secs(10), || closes.lock().unwrap().as_slice() == [1006]).await,
        "closes {:?} after {:?}",
        closes.lock().unwrap(),
        started.elapsed()
    );
    assert!(handled.load(Ordering::Relaxed) > 0);
}

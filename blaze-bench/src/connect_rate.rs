//! `connect-rate`: handshakes per second from C concurrent connectors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{open, Target};
use crate::report::{progress, Report};

pub async fn run(target: Target, concurrency: usize, secs: f64, server_pid: Option<String>) -> Result<(), String> {
    let mut report = Report::start("connect-rate", server_pid);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(secs);
    let ticker = progress("connect-rate", duration, done.clone(), "handshakes");
    report.restart_clocks();
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (target, done, failed) = (target.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                let mut index = worker;
                while start.elapsed() < duration {
                    match open(&target, index % 60_000, None).await {
                        Ok(conn) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            drop(conn);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    index += concurrency;
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    report.line(format!("{concurrency} connectors: {:.0} handshakes/s ({failed} failed)", total as f64 / elapsed));
    report.field("concurrency", concurrency);
    report.field("handshakes", total);
    report.field("handshakes_per_s", (total as f64 / elapsed).round());
    report.field("failed", failed);
    report.finish(total, "handshake");
    Ok(())
}

//! `idle`: hold N idle connections and measure the server's resident
//! memory per connection.

use std::time::Duration;

use crate::conn::{open, Target};
use crate::proc::rss_kib;
use crate::report::{round, Report};

pub async fn run(target: Target, conns: usize, hold: f64, pid: String) -> Result<(), String> {
    let mut report = Report::start("idle", Some(pid.clone()));
    let before = rss_kib(&pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"))?;
    let mut held = Vec::with_capacity(conns);
    let mut failed = 0;
    for i in 0..conns {
        match open(&target, i).await {
            Ok(conn) => held.push(conn),
            Err(_) => failed += 1,
        }
        if i % 1000 == 999 {
            eprint!("\r[idle] {} connected", i + 1);
        }
    }
    eprintln!();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let after = rss_kib(&pid).ok_or("server exited")?;
    let per_conn = (after.saturating_sub(before)) as f64 / held.len().max(1) as f64;
    report.line(format!(
        "{} idle connections held {hold} s: server RSS {before} KiB → {after} KiB, {per_conn:.2} KiB per connection{}",
        held.len(),
        if failed > 0 { format!(" ({failed} failed to connect)") } else { String::new() }
    ));
    report.field("conns", held.len());
    report.field("failed", failed);
    report.field("rss_before_kib", before);
    report.field("rss_after_kib", after);
    report.field("kib_per_conn", round(per_conn));
    report.finish(held.len() as u64, "connection");
    drop(held);
    if failed > 0 {
        return Err(format!("{failed} connections failed"));
    }
    Ok(())
}

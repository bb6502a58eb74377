//! CPU time and resident memory from /proc, for ourselves and the server.

use std::time::Duration;

/// Clock ticks per second for /proc/*/stat times (always 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU time of a process (`self` or a pid).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces: utime, stime are 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / TICKS))
}

/// Resident set size in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// How many CPUs this process may run on (respects taskset).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// CPU used by a process between two samples, with the wall time between them.
#[derive(Clone, Copy)]
pub struct CpuSample {
    pub wall: std::time::Instant,
    pub cpu: Option<Duration>,
}

impl CpuSample {
    pub fn take(pid: &str) -> CpuSample {
        CpuSample { wall: std::time::Instant::now(), cpu: cpu_time(pid) }
    }

    /// (CPU seconds used, utilization as a fraction of one core) since `self`.
    pub fn since(&self, later: &CpuSample) -> Option<(f64, f64)> {
        let cpu = (later.cpu? - self.cpu?).as_secs_f64();
        let wall = (later.wall - self.wall).as_secs_f64().max(1e-9);
        Some((cpu, cpu / wall))
    }
}

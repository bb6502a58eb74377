//! What every scenario reports: a human summary, a JSON line, the load
//! tool's own CPU (and whether it saturated), and the server's CPU per
//! operation when its pid is known.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::proc::{cpus, CpuSample};

/// Collects figures for one run.
pub struct Report {
    pub scenario: &'static str,
    fields: Map<String, Value>,
    lines: Vec<String>,
    self_start: CpuSample,
    /// The server's processes (`--pid A,B`: two cluster nodes count as one server).
    server: Vec<(String, CpuSample)>,
}

impl Report {
    pub fn start(scenario: &'static str, server_pid: Option<String>) -> Report {
        Report {
            scenario,
            fields: Map::new(),
            lines: Vec::new(),
            self_start: CpuSample::take("self"),
            server: server_pid
                .iter()
                .flat_map(|pids| pids.split(','))
                .map(|pid| (pid.to_owned(), CpuSample::take(pid)))
                .collect(),
        }
    }

    /// Restarts the CPU clocks (after connecting, so setup is not counted).
    pub fn restart_clocks(&mut self) {
        self.self_start = CpuSample::take("self");
        for (pid, sample) in &mut self.server {
            *sample = CpuSample::take(pid);
        }
    }

    pub fn field(&mut self, name: &str, value: impl Into<Value>) {
        self.fields.insert(name.to_owned(), value.into());
    }

    pub fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// Latency percentiles of `samples` (µs) as field `name` and a line
    /// "{what}: p50 … p99 …".
    pub fn latency(&mut self, name: &str, what: &str, samples: &mut [u32]) {
        let n = samples.len();
        let pct = percentiles(samples);
        self.line(format!(
            "{what} ({n} samples): p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            pct["p50_us"], pct["p99_us"], pct["p999_us"], pct["max_us"]
        ));
        self.field(name, pct);
    }

    /// Prints the summary and the JSON line. `ops` is what CPU per op is
    /// measured against (messages, deliveries, handshakes).
    pub fn finish(mut self, ops: u64, op_name: &str) {
        let now_self = CpuSample::take("self");
        if let Some((cpu, util)) = self.self_start.since(&now_self) {
            let saturated = util > 0.9 * cpus() as f64;
            self.field("client_cpu_s", round(cpu));
            self.field("client_cpu_util", round(util));
            self.field("client_saturated", saturated);
            self.line(format!(
                "load tool CPU: {:.0}% of {} core(s){}",
                util * 100.0,
                cpus(),
                if saturated { " — SATURATED: throughput is a lower bound; compare server CPU per op" } else { "" }
            ));
        }
        let used: Option<Vec<(f64, f64)>> =
            self.server.iter().map(|(pid, start)| start.since(&CpuSample::take(pid))).collect();
        if let Some(used) = used.filter(|u| !u.is_empty()) {
            let (cpu, util) = used.iter().fold((0.0, 0.0), |(c, u), (c1, u1)| (c + c1, u + u1));
            let per_op_us = if ops > 0 { cpu * 1e6 / ops as f64 } else { 0.0 };
            self.field("server_cpu_s", round(cpu));
            self.field("server_cpu_util", round(util));
            self.field("server_cpu_us_per_op", round(per_op_us));
            let processes = if used.len() > 1 {
                let each: Vec<String> = used.iter().map(|(c, _)| format!("{c:.3} s")).collect();
                self.field("server_cpu_s_each", used.iter().map(|(c, _)| round(*c)).collect::<Vec<_>>());
                format!(" ({} processes: {})", used.len(), each.join(" + "))
            } else {
                String::new()
            };
            self.line(format!(
                "server CPU: {:.0}% of a core, {per_op_us:.3} µs per {op_name}{processes}",
                util * 100.0
            ));
        }
        println!("== {}", self.scenario);
        for line in &self.lines {
            println!("  {line}");
        }
        self.fields.insert("scenario".into(), self.scenario.into());
        println!("{}", Value::Object(self.fields));
    }
}

pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Latency percentiles from microsecond samples.
pub fn percentiles(samples: &mut [u32]) -> Value {
    samples.sort_unstable();
    let at = |p: f64| -> u32 {
        if samples.is_empty() {
            return 0;
        }
        samples[((samples.len() as f64 - 1.0) * p).round() as usize]
    };
    json!({"p50_us": at(0.50), "p99_us": at(0.99), "p999_us": at(0.999), "max_us": at(1.0)})
}

/// A progress line on stderr, once a second, for runs a person watches.
pub fn progress(
    label: &'static str,
    total: Duration,
    counter: Arc<AtomicU64>,
    unit: &'static str,
) -> Option<tokio::task::JoinHandle<()>> {
    if total < Duration::from_secs(3) || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let start = Instant::now();
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let elapsed = start.elapsed();
            let now = counter.load(Ordering::Relaxed);
            let done = (elapsed.as_secs_f64() / total.as_secs_f64()).min(1.0);
            let bar: String = (0..30).map(|i| if (i as f64) < done * 30.0 { '#' } else { '.' }).collect();
            eprint!("\r[{label}] [{bar}] {:>4.0}s  {:>12} {unit}/s ", elapsed.as_secs_f64(), now - last);
            last = now;
        }
    }))
}

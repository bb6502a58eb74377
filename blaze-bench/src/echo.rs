//! `echo`: N connections each keep W messages in flight; messages per
//! second and round-trip percentiles.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_proto::frame::{encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::{open, Target};
use crate::report::{percentiles, progress, Report};

pub struct EchoParams {
    pub target: Target,
    pub conns: usize,
    pub size: usize,
    pub window: usize,
    pub secs: f64,
    pub server_pid: Option<String>,
}

pub async fn run(p: EchoParams) -> Result<(), String> {
    let mut report = Report::start("echo", p.server_pid.clone());
    let mut streams = Vec::with_capacity(p.conns);
    for i in 0..p.conns {
        streams.push(open(&p.target, i).await.map_err(|e| format!("connect {i}: {e}"))?);
    }
    // One masked frame, built once and copied W times per write.
    let mut frame = BytesMut::new();
    encode_frame(FrameHeader::new(OpCode::Binary), &vec![b'x'; p.size], Some([1, 2, 3, 4]), &mut frame);
    let frame = frame.freeze();
    let received = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(p.secs);
    let ticker = progress("echo", duration, received.clone(), "msg");
    report.restart_clocks();
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(stream, leftover)| {
            let frame = frame.clone();
            let received = received.clone();
            let (window, size) = (p.window, p.size);
            tokio::spawn(async move { connection(stream, leftover, frame, window, size, deadline, received).await })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(mut l)) => latencies.append(&mut l),
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed().min(duration).as_secs_f64();
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let total = received.load(Ordering::Relaxed);
    let rate = total as f64 / elapsed;
    let pct = percentiles(&mut latencies);
    report.line(format!(
        "{} conns × window {} × {} B: {:.0} msg/s ({:.1} MB/s), rtt p50 {} µs p99 {} µs p999 {} µs{}",
        p.conns,
        p.window,
        p.size,
        rate,
        rate * p.size as f64 / 1e6,
        pct["p50_us"],
        pct["p99_us"],
        pct["p999_us"],
        if errors > 0 { format!(", {errors} connections failed") } else { String::new() }
    ));
    report.field("conns", p.conns);
    report.field("size", p.size);
    report.field("window", p.window);
    report.field("secs", elapsed);
    report.field("messages", total);
    report.field("msgs_per_s", rate.round());
    report.field("rtt", pct);
    report.field("errors", errors);
    report.finish(total, "message");
    if errors > 0 {
        return Err(format!("{errors} connections failed"));
    }
    Ok(())
}

async fn connection(
    mut stream: tokio::net::TcpStream,
    mut buf: BytesMut,
    frame: bytes::Bytes,
    window: usize,
    size: usize,
    deadline: Instant,
    received: Arc<AtomicU64>,
) -> std::io::Result<Vec<u32>> {
    let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut latencies = Vec::new();
    let mut out = BytesMut::with_capacity(frame.len() * window);
    for _ in 0..window {
        out.extend_from_slice(&frame);
    }
    let now = Instant::now();
    sent_at.extend(std::iter::repeat_n(now, window));
    stream.write_all(&out).await?;
    buf.reserve(64 * 1024);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await;
        let Ok(n) = n else { break };
        if n? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let now = Instant::now();
        let mut done = 0;
        while let Some(f) = decoder.decode(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))? {
            if f.header.opcode != OpCode::Binary || f.payload.len() != size {
                continue; // pings and the like
            }
            if let Some(t) = sent_at.pop_front() {
                latencies.push((now - t).as_micros().min(u32::MAX as u128) as u32);
            }
            done += 1;
        }
        if done == 0 {
            continue;
        }
        received.fetch_add(done, Ordering::Relaxed);
        if now >= deadline {
            break;
        }
        out.clear();
        for _ in 0..done {
            out.extend_from_slice(&frame);
            sent_at.push_back(now);
        }
        stream.write_all(&out).await?;
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
    }
    Ok(latencies)
}

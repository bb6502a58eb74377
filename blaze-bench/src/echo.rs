//! `echo`: N connections each keep W messages in flight; messages per
//! second and round-trip percentiles.
//!
//! Plain (`--deflate off`): frames pre-encoded once, copied per write.
//! With `--deflate shared|dedicated` every connection runs blaze-proto's
//! client `Connection` with permessage-deflate: each message is compressed
//! as it is sent (context kept between messages in dedicated mode if the
//! server agreed to it), every echo is inflated and compared with what was
//! sent. Both report the bytes that crossed the wire against the payload
//! bytes, each direction.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_proto::deflate::DeflateConfig;
use blaze_proto::frame::{encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use blaze_proto::{Event, Message, Utf8Bytes};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::{closed_error, open, Negotiated, Session, Target};
use crate::payload::Payload;
use crate::report::{percentiles, progress, round, Report};

pub struct EchoParams {
    pub target: Target,
    pub conns: usize,
    pub size: usize,
    pub window: usize,
    pub secs: f64,
    pub server_pid: Option<String>,
    pub deflate: Option<DeflateConfig>,
    pub deflate_flag: String,
    pub payload: Payload,
}

/// What one connection did.
#[derive(Default)]
struct Stats {
    latencies: Vec<u32>,
    wire_in: u64,
    wire_out: u64,
    payload_in: u64,
    payload_out: u64,
    mismatched: u64,
}

pub async fn run(p: EchoParams) -> Result<(), String> {
    let mut report = Report::start("echo", p.server_pid.clone());
    let mut opened = Vec::with_capacity(p.conns);
    let mut negotiated = Negotiated::default();
    for i in 0..p.conns {
        let o = open(&p.target, i, p.deflate.as_ref()).await.map_err(|e| format!("connect {i}: {e}"))?;
        negotiated.add(o.deflate.as_ref());
        opened.push(o);
    }
    let variants = p.payload.echo_variants(p.size);
    let opcode = p.payload.opcode();
    // Plain: masked frames, built once and copied per write.
    let frames: Arc<Vec<Bytes>> = Arc::new(
        variants
            .iter()
            .map(|v| {
                let mut frame = BytesMut::new();
                encode_frame(FrameHeader::new(opcode), v, Some([1, 2, 3, 4]), &mut frame);
                frame.freeze()
            })
            .collect(),
    );
    let messages: Arc<Vec<Message>> = Arc::new(
        variants
            .iter()
            .map(|v| match opcode {
                OpCode::Text => Message::Text(Utf8Bytes::try_from_bytes(Bytes::from(v.clone())).expect("ASCII")),
                _ => Message::Binary(Bytes::from(v.clone())),
            })
            .collect(),
    );
    let received = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(p.secs);
    let ticker = progress("echo", duration, received.clone(), "msg");
    report.restart_clocks();
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let received = received.clone();
            let (window, size) = (p.window, p.size);
            let (frames, messages) = (frames.clone(), messages.clone());
            let deflate = p.deflate;
            tokio::spawn(async move {
                match deflate {
                    None => plain(o.stream, o.leftover, frames, i, opcode, window, size, deadline, received).await,
                    Some(config) => {
                        let session = Session::new(o, i, Some(&config));
                        compressed(session, messages, i, window, size, deadline, received).await
                    }
                }
            })
        })
        .collect();
    let mut total = Stats::default();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(mut s)) => {
                total.latencies.append(&mut s.latencies);
                total.wire_in += s.wire_in;
                total.wire_out += s.wire_out;
                total.payload_in += s.payload_in;
                total.payload_out += s.payload_out;
                total.mismatched += s.mismatched;
            }
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let elapsed = start.elapsed().min(duration).as_secs_f64();
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let total_msgs = received.load(Ordering::Relaxed);
    let rate = total_msgs as f64 / elapsed;
    let pct = percentiles(&mut total.latencies);
    let ratio = |wire: u64, payload: u64| if payload > 0 { wire as f64 / payload as f64 } else { 0.0 };
    let (up, down) = (ratio(total.wire_out, total.payload_out), ratio(total.wire_in, total.payload_in));
    report.line(format!(
        "{} conns × window {} × {} B {}: {:.0} msg/s ({:.1} MB/s payload), rtt p50 {} µs p99 {} µs p999 {} µs{}",
        p.conns,
        p.window,
        p.size,
        p.payload.name(),
        rate,
        rate * p.size as f64 / 1e6,
        pct["p50_us"],
        pct["p99_us"],
        pct["p999_us"],
        if errors > 0 { format!(", {errors} connections failed") } else { String::new() }
    ));
    report.line(format!(
        "permessage-deflate asked: {}; server agreed: {}",
        p.deflate_flag,
        if p.deflate.is_some() { negotiated.describe() } else { "not offered".into() }
    ));
    report.line(format!(
        "wire ÷ payload bytes: client→server {up:.3} ({} → {} B), server→client {down:.3} ({} → {} B)",
        total.payload_out, total.wire_out, total.payload_in, total.wire_in
    ));
    if total.mismatched > 0 {
        report.line(format!("ERRORS: {} echoes differ from the message sent", total.mismatched));
    }
    if let Some(e) = &first_error {
        report.line(format!("first connection error: {e}"));
    }
    report.field("conns", p.conns);
    report.field("size", p.size);
    report.field("window", p.window);
    report.field("payload", p.payload.name());
    report.field("deflate", p.deflate_flag.as_str());
    report.field("deflate_negotiated", if p.deflate.is_some() { negotiated.describe() } else { "off".into() });
    report.field("secs", elapsed);
    report.field("messages", total_msgs);
    report.field("msgs_per_s", rate.round());
    report.field("rtt", pct);
    report.field("payload_bytes_out", total.payload_out);
    report.field("wire_bytes_out", total.wire_out);
    report.field("payload_bytes_in", total.payload_in);
    report.field("wire_bytes_in", total.wire_in);
    report.field("ratio_up", round(up));
    report.field("ratio_down", round(down));
    report.field("mismatched", total.mismatched);
    report.field("errors", errors);
    report.finish(total_msgs, "message");
    if errors > 0 {
        return Err(format!("{errors} connections failed: {}", first_error.unwrap_or_default()));
    }
    if total.mismatched > 0 {
        return Err(format!("{} echoes differ from the message sent", total.mismatched));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn plain(
    mut stream: crate::tls::Stream,
    mut buf: BytesMut,
    frames: Arc<Vec<Bytes>>,
    index: usize,
    opcode: OpCode,
    window: usize,
    size: usize,
    deadline: Instant,
    received: Arc<AtomicU64>,
) -> std::io::Result<Stats> {
    let mut stats = Stats { wire_in: buf.len() as u64, ..Stats::default() };
    let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut next = index % frames.len();
    let mut out = BytesMut::with_capacity(frames[0].len() * window);
    for _ in 0..window {
        out.extend_from_slice(&frames[next]);
        next = (next + 1) % frames.len();
    }
    let now = Instant::now();
    sent_at.extend(std::iter::repeat_n(now, window));
    stream.write_all(&out).await?;
    stream.flush().await?;
    stats.wire_out += out.len() as u64;
    stats.payload_out += (size * window) as u64;
    buf.reserve(64 * 1024);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await;
        let Ok(n) = n else { break };
        let n = n?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        stats.wire_in += n as u64;
        let now = Instant::now();
        let mut done = 0;
        while let Some(f) = decoder.decode(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))? {
            if f.header.opcode != opcode || f.payload.len() != size {
                continue; // pings and the like
            }
            if let Some(t) = sent_at.pop_front() {
                stats.latencies.push((now - t).as_micros().min(u32::MAX as u128) as u32);
            }
            done += 1;
        }
        if done == 0 {
            continue;
        }
        stats.payload_in += done * size as u64;
        received.fetch_add(done, Ordering::Relaxed);
        if now >= deadline {
            break;
        }
        out.clear();
        for _ in 0..done {
            out.extend_from_slice(&frames[next]);
            next = (next + 1) % frames.len();
            sent_at.push_back(now);
        }
        stream.write_all(&out).await?;
        stream.flush().await?;
        stats.wire_out += out.len() as u64;
        stats.payload_out += done * size as u64;
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
    }
    Ok(stats)
}

async fn compressed(
    mut s: Session,
    messages: Arc<Vec<Message>>,
    index: usize,
    window: usize,
    size: usize,
    deadline: Instant,
    received: Arc<AtomicU64>,
) -> std::io::Result<Stats> {
    let mut stats = Stats::default();
    let mut in_flight: VecDeque<(usize, Instant)> = VecDeque::with_capacity(window);
    let mut next = index % messages.len();
    let mut send = |s: &mut Session, in_flight: &mut VecDeque<(usize, Instant)>, now: Instant, stats: &mut Stats| {
        s.conn.send(messages[next].clone()).map_err(|e| std::io::Error::other(e.to_string()))?;
        in_flight.push_back((next, now));
        stats.payload_out += size as u64;
        next = (next + 1) % messages.len();
        Ok::<(), std::io::Error>(())
    };
    let now = Instant::now();
    for _ in 0..window {
        send(&mut s, &mut in_flight, now, &mut stats)?;
    }
    s.flush().await?;
    let mut events = Vec::new();
    s.process(now, &mut events);
    loop {
        let now = Instant::now();
        let mut done = 0;
        for event in events.drain(..) {
            match event {
                Event::Message(m) => {
                    let Some((sent, at)) = in_flight.pop_front() else {
                        stats.mismatched += 1;
                        continue;
                    };
                    if m.as_bytes() != messages[sent].as_bytes() {
                        stats.mismatched += 1;
                    }
                    stats.latencies.push((now - at).as_micros().min(u32::MAX as u128) as u32);
                    stats.payload_in += m.len() as u64;
                    done += 1;
                }
                Event::Closed(info) => return Err(closed_error(&info)),
                _ => {}
            }
        }
        if done > 0 {
            received.fetch_add(done, Ordering::Relaxed);
            if now >= deadline {
                break;
            }
            for _ in 0..done {
                send(&mut s, &mut in_flight, now, &mut stats)?;
            }
        }
        // Echoes, and any pong the core queued.
        s.flush().await?;
        if !s.read_some(Some(deadline.into())).await? {
            break;
        }
        s.process(Instant::now(), &mut events);
    }
    stats.wire_in = s.wire_in;
    stats.wire_out = s.wire_out;
    Ok(stats)
}

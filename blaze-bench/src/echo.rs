//! `echo`: N connections each keep W messages in flight; messages per
//! second and round-trip percentiles.
//!
//! `--rate R` (plain only) instead sends R messages/s on each connection,
//! whatever comes back, each stamped with its send time: the round trip
//! at a fixed offered load the server keeps up with, not at saturation.
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
    /// Messages per second per connection instead of a window.
    pub rate: Option<f64>,
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
    if p.rate.is_some() && (p.deflate.is_some() || p.size < 8) {
        return Err("--rate needs --deflate off and --size of at least 8".into());
    }
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
            let (deflate, rate) = (p.deflate, p.rate);
            tokio::spawn(async move {
                match deflate {
                    None if rate.is_some() => {
                        paced(o.stream, o.leftover, &frames[0], i, rate.unwrap_or(1.0), size, deadline, received).await
                    }
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
    let ratio = |wire: u64, payload: u64| {
        if payload > 0 {
            wire as f64 / payload as f64
        } else {
            0.0
        }
    };
    let (up, down) = (ratio(total.wire_out, total.payload_out), ratio(total.wire_in, total.payload_in));
    let shape = match p.rate {
        Some(r) => format!("at {r} msgs/s each"),
        None => format!("window {}", p.window),
    };
    report.line(format!(
        "{} conns × {shape} × {} B {}: {:.0} msg/s ({:.1} MB/s payload), rtt p50 {} µs p99 {} µs p999 {} µs{}",
        p.conns,
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
    if let Some(rate) = p.rate {
        report.field("rate_per_conn", rate);
    }
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

/// `--rate`: sends on a clock, reads what comes back; the first 8 payload
/// bytes carry the send time (ns since `epoch`), so each echo gives its
/// own round trip whatever the order of sends and reads.
#[allow(clippy::too_many_arguments)]
async fn paced(
    mut stream: crate::tls::Stream,
    mut buf: BytesMut,
    template: &[u8],
    index: usize,
    rate: f64,
    size: usize,
    deadline: Instant,
    received: Arc<AtomicU64>,
) -> std::io::Result<Stats> {
    let epoch = Instant::now();
    let mut stats = Stats { wire_in: buf.len() as u64, ..Stats::default() };
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    let period = Duration::from_secs_f64(1.0 / rate);
    // Connections start spread over one period, not all at once.
    let first = epoch + period.mul_f64((index % 1000) as f64 / 1000.0);
    let header = template.len() - size;
    let (mut wire_out, mut payload_out) = (0u64, 0u64);
    // Shared by the two halves below (one task): how many went out, and
    // whether sending is over.
    let (sent_count, sending) = (AtomicU64::new(0), std::sync::atomic::AtomicBool::new(true));
    let send = async {
        let mut frame = template.to_vec();
        for n in 0u32.. {
            let due = first + period * n;
            if due >= deadline {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            // The payload is masked with a key of 1,2,3,4 (see `frames`):
            // write the stamp masked the same way.
            let stamp = (Instant::now() - epoch).as_nanos() as u64;
            for (i, b) in stamp.to_be_bytes().iter().enumerate() {
                frame[header + i] = b ^ [1, 2, 3, 4][i % 4];
            }
            writer.write_all(&frame).await?;
            wire_out += frame.len() as u64;
            payload_out += size as u64;
            sent_count.fetch_add(1, Ordering::Relaxed);
        }
        sending.store(false, Ordering::Relaxed);
        Ok::<(), std::io::Error>(())
    };
    let read = async {
        let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
        // What is in flight when sending stops may still come back.
        let until = deadline + Duration::from_secs(2);
        loop {
            if !sending.load(Ordering::Relaxed) && stats.latencies.len() as u64 >= sent_count.load(Ordering::Relaxed) {
                break;
            }
            buf.reserve(16 * 1024);
            let wait = (Instant::now() + Duration::from_millis(50)).min(until);
            let Ok(n) = tokio::time::timeout_at(wait.into(), reader.read_buf(&mut buf)).await else {
                if wait >= until {
                    break;
                }
                continue;
            };
            let n = n?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            stats.wire_in += n as u64;
            let now = (Instant::now() - epoch).as_nanos() as u64;
            let mut done = 0;
            while let Some(f) = decoder.decode(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))? {
                if f.payload.len() != size {
                    continue;
                }
                let sent = u64::from_be_bytes(f.payload[..8].try_into().expect("8 bytes"));
                stats.latencies.push((now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32);
                done += 1;
            }
            stats.payload_in += done * size as u64;
            received.fetch_add(done, Ordering::Relaxed);
        }
        Ok::<(), std::io::Error>(())
    };
    let (sent, read) = tokio::join!(send, read);
    sent?;
    read?;
    stats.wire_out = wire_out;
    stats.payload_out = payload_out;
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

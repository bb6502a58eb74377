//! `fanout`: N subscribers on a broadcast endpoint and one publisher.
//! Every subscriber must receive every message exactly once, in order.
//!
//! Delivery latency is the time from the publisher's write of a message to
//! a subscriber's read that holds it (one process, one clock). Unpaced, the
//! publisher writes as fast as it can and latency includes the queueing of
//! a saturated server; `--rate R` paces it to R messages/s so latency is
//! what a message costs at a load the server keeps up with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::IsTerminal;

use blaze_proto::deflate::DeflateConfig;
use blaze_proto::frame::{encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use blaze_proto::{Event, Message, Utf8Bytes};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

use crate::conn::{client_connection, closed_error, open, Negotiated, Session, Target};
use crate::payload::Payload;
use crate::proc::CpuSample;
use crate::report::{progress, round, Report};

pub struct FanoutParams {
    pub target: Target,
    /// A second server (a cluster node): every other subscriber connects
    /// there; the publisher stays on `target`.
    pub also: Option<Target>,
    pub subs: usize,
    pub msgs: u64,
    pub size: usize,
    pub timeout_secs: f64,
    pub server_pid: Option<String>,
    pub deflate: Option<DeflateConfig>,
    pub deflate_flag: String,
    pub payload: Payload,
    /// Messages per second from the publisher; `None`: as fast as it can.
    pub rate: Option<f64>,
    /// A broker (Redis) whose CPU per broadcast is reported.
    pub broker_pid: Option<String>,
}

/// When each message left the publisher, read by every subscriber.
struct SendClock {
    epoch: Instant,
    /// Nanoseconds since `epoch` + 1; 0: not sent yet.
    sent: Vec<AtomicU64>,
}

impl SendClock {
    fn new(msgs: u64) -> SendClock {
        SendClock { epoch: Instant::now(), sent: (0..msgs).map(|_| AtomicU64::new(0)).collect() }
    }

    fn stamp(&self, seqs: std::ops::Range<u64>) {
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        for seq in seqs {
            self.sent[seq as usize].store(now, Ordering::Relaxed);
        }
    }

    /// Microseconds from the send of `seq` to `read_at`.
    fn latency_us(&self, seq: u64, read_at: Instant) -> Option<u32> {
        let sent = self.sent.get(seq as usize)?.load(Ordering::Relaxed).checked_sub(1)?;
        let read = (read_at - self.epoch).as_nanos() as u64;
        Some((read.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32)
    }
}

/// Most latency samples kept (4 bytes each); beyond it every k-th
/// subscriber records.
const MAX_LATENCY_SAMPLES: u64 = 20_000_000;

/// What a subscriber task needs besides its connection.
#[derive(Clone)]
struct Shared {
    ready: Arc<Barrier>,
    delivered: Arc<AtomicU64>,
    clock: Arc<SendClock>,
    timeout: Duration,
}

#[derive(Default)]
struct Outcome {
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    /// Right length and sequence number, wrong bytes (JSON payloads are checked).
    corrupt: u64,
    last_delivery: Option<Instant>,
    wire_in: u64,
    payload_in: u64,
    error: Option<String>,
    /// Delivery latencies in µs, when this subscriber records them.
    latencies: Option<Vec<u32>>,
}

impl Outcome {
    fn latency(&mut self, clock: &SendClock, seq: u64, read_at: Instant) {
        if let (Some(samples), Some(us)) = (&mut self.latencies, clock.latency_us(seq, read_at)) {
            samples.push(us);
        }
    }

    fn count(&mut self, seq: u64, expected: &mut u64) {
        match seq.cmp(expected) {
            std::cmp::Ordering::Equal => *expected += 1,
            std::cmp::Ordering::Less => self.duplicated += 1,
            std::cmp::Ordering::Greater => {
                self.reordered += 1;
                self.lost += seq - *expected;
                *expected = seq + 1;
            }
        }
        self.received += 1;
    }
}

pub async fn run(p: FanoutParams) -> Result<(), String> {
    let mut report = Report::start("fanout", p.server_pid.clone());
    let size = p.size.max(p.payload.min_fanout_size());
    let shared = Shared {
        ready: Arc::new(Barrier::new(p.subs + 1)),
        delivered: Arc::new(AtomicU64::new(0)),
        clock: Arc::new(SendClock::new(p.msgs)),
        timeout: Duration::from_secs_f64(p.timeout_secs),
    };
    let record_every = (p.subs as u64 * p.msgs).div_ceil(MAX_LATENCY_SAMPLES).max(1) as usize;
    let mut subscribers = Vec::with_capacity(p.subs);
    let mut negotiated = Negotiated::default();
    // Every message, built once: the publisher sends them, deflate
    // subscribers compare what they inflate with them.
    let payloads: Arc<Vec<Vec<u8>>> = Arc::new((0..p.msgs).map(|seq| p.payload.fanout_message(seq, size)).collect());
    for i in 0..p.subs {
        let remote = p.also.is_some() && i % 2 == 1;
        let at = match &p.also {
            Some(also) if remote => also,
            _ => &p.target,
        };
        let o = open(at, i + 1, p.deflate.as_ref()).await.map_err(|e| format!("subscriber {i}: {e}"))?;
        negotiated.add(o.deflate.as_ref());
        let records = (i / 2) % record_every == 0;
        let outcome = Outcome { latencies: records.then(Vec::new), ..Outcome::default() };
        let (shared, msgs, kind) = (shared.clone(), p.msgs, p.payload);
        let task = match p.deflate {
            None => tokio::spawn(subscribe(o.stream, o.leftover, outcome, msgs, size, kind, shared)),
            Some(config) => {
                let session = Session::new(o, i + 1, Some(&config));
                tokio::spawn(subscribe_deflate(session, outcome, payloads.clone(), size, kind, shared))
            }
        };
        subscribers.push((remote, task));
        if i % 1000 == 999 && std::io::stderr().is_terminal() {
            eprint!("\r[fanout] {} subscribers connected", i + 1);
        }
    }
    let o = open(&p.target, 0, p.deflate.as_ref()).await.map_err(|e| format!("publisher: {e}"))?;
    negotiated.add(o.deflate.as_ref());
    let params = o.deflate;
    let (mut publisher, leftover) = (o.stream, o.leftover);
    shared.ready.wait().await;
    // Give the server a moment to register the last subscribers' handshakes
    // (and a cluster node to subscribe to the channel).
    tokio::time::sleep(Duration::from_millis(if p.also.is_some() { 1000 } else { 200 })).await;
    let ticker = progress("fanout", Duration::from_secs_f64(p.timeout_secs), shared.delivered.clone(), "delivery");
    report.restart_clocks();
    let broker_start = p.broker_pid.as_deref().map(CpuSample::take);
    let first_send = Instant::now();
    // The publisher reads its own copies too (the sender is a subscriber).
    // With deflate, one client core compresses what it sends and another
    // inflates what it reads: the two directions share no state.
    let (mut reader, mut writer) = tokio::io::split(&mut publisher);
    let opcode = p.payload.opcode();
    let drain = async {
        let mut buf = leftover;
        let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
        let mut rx = p.deflate.map(|c| client_connection(0, params.as_ref(), Some(&c)));
        let mut seen = 0;
        while seen < p.msgs {
            buf.reserve(64 * 1024);
            if reader.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
            match &mut rx {
                None => {
                    while let Ok(Some(f)) = decoder.decode(&mut buf) {
                        if f.header.opcode == opcode {
                            seen += 1;
                        }
                    }
                }
                Some(rx) => loop {
                    rx.handle_read(&mut buf, Instant::now());
                    while let Some(e) = rx.poll_event() {
                        if matches!(e, Event::Message(_)) {
                            seen += 1;
                        }
                    }
                    if !rx.input_paused() {
                        break;
                    }
                },
            }
        }
    };
    let clock = &shared.clock;
    let send = async {
        let mut out = BytesMut::new();
        let mut tx = p.deflate.map(|c| client_connection(0, params.as_ref(), Some(&c)));
        let mut unstamped = 0;
        for seq in 0..p.msgs {
            if let Some(rate) = p.rate {
                let due = first_send + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let payload = payloads[seq as usize].clone();
            match &mut tx {
                None => encode_frame(FrameHeader::new(opcode), &payload, Some([9, 8, 7, 6]), &mut out),
                Some(tx) => {
                    let message = match opcode {
                        OpCode::Text => Message::Text(Utf8Bytes::try_from_bytes(payload.into()).expect("ASCII")),
                        _ => Message::Binary(payload.into()),
                    };
                    tx.send(message).map_err(|e| std::io::Error::other(e.to_string()))?;
                    while tx.wants_write() {
                        let chunk = tx.transmit_bytes();
                        out.extend_from_slice(chunk);
                        let n = chunk.len();
                        tx.advance_transmit(n);
                    }
                }
            }
            if out.len() >= 64 * 1024 || p.rate.is_some() {
                clock.stamp(unstamped..seq + 1);
                unstamped = seq + 1;
                writer.write_all(&out).await?;
                writer.flush().await?;
                out.clear();
            }
        }
        clock.stamp(unstamped..p.msgs);
        writer.write_all(&out).await?;
        writer.flush().await
    };
    let (sent, ()) = tokio::join!(send, async {
        let _ = tokio::time::timeout(Duration::from_secs_f64(p.timeout_secs), drain).await;
    });
    sent.map_err(|e| format!("publisher: {e}"))?;

    let broker = broker_start.zip(p.broker_pid.as_deref()).and_then(|(start, pid)| start.since(&CpuSample::take(pid)));
    let mut total = Outcome::default();
    let mut incomplete = 0;
    let (mut local_latency, mut remote_latency) = (Vec::new(), Vec::new());
    for (remote, task) in subscribers {
        let mut outcome = task.await.map_err(|e| e.to_string())?;
        if let Some(samples) = outcome.latencies.take() {
            if remote { &mut remote_latency } else { &mut local_latency }.extend(samples);
        }
        if outcome.received + outcome.lost < p.msgs {
            incomplete += 1;
        }
        total.received += outcome.received;
        total.lost += outcome.lost;
        total.duplicated += outcome.duplicated;
        total.reordered += outcome.reordered;
        total.corrupt += outcome.corrupt;
        total.wire_in += outcome.wire_in;
        total.payload_in += outcome.payload_in;
        if total.error.is_none() {
            total.error = outcome.error;
        }
        total.last_delivery = total.last_delivery.max(outcome.last_delivery);
    }
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let span = total.last_delivery.map_or(0.0, |t| (t - first_send).as_secs_f64());
    let rate = if span > 0.0 { total.received as f64 / span } else { 0.0 };
    let expected = p.subs as u64 * p.msgs;
    let missing = expected - total.received.min(expected);
    report.line(format!(
        "{} subscribers × {} msgs × {} B: {:.0} deliveries/s, first send to last delivery {:.3} s",
        p.subs, p.msgs, size, rate, span
    ));
    let ratio = if total.payload_in > 0 { total.wire_in as f64 / total.payload_in as f64 } else { 0.0 };
    report.line(format!(
        "permessage-deflate asked: {}; server agreed: {}; subscribers' wire ÷ payload bytes {ratio:.3} ({} → {} B, {} payload)",
        p.deflate_flag,
        if p.deflate.is_some() { negotiated.describe() } else { "not offered".into() },
        total.payload_in,
        total.wire_in,
        p.payload.name()
    ));
    let errors = total.duplicated + total.reordered + missing + total.corrupt;
    if errors > 0 {
        report.line(format!(
            "ERRORS: {missing} missing, {} duplicated, {} out of order, {} corrupt, {incomplete} subscribers incomplete",
            total.duplicated, total.reordered, total.corrupt
        ));
    }
    if let Some(e) = &total.error {
        report.line(format!("first subscriber error: {e}"));
    }
    let pacing = match p.rate {
        Some(rate) => format!("paced at {rate} msgs/s"),
        None => "unpaced: includes queueing".to_owned(),
    };
    for (name, samples) in [("latency", &mut local_latency), ("latency_remote", &mut remote_latency)] {
        if samples.is_empty() {
            continue;
        }
        let who = match (name, p.also.is_some()) {
            ("latency", true) => "same node as the publisher",
            ("latency", false) => "all",
            _ => "other node",
        };
        report.latency(name, &format!("delivery latency ({who}; {pacing})"), samples);
    }
    if let Some(rate) = p.rate {
        report.field("rate", rate);
    }
    if let Some((cpu, _)) = broker {
        let per = cpu * 1e6 / p.msgs.max(1) as f64;
        report.line(format!("broker CPU: {cpu:.3} s, {per:.2} µs per broadcast"));
        report.field("broker_cpu_s", round(cpu));
        report.field("broker_cpu_us_per_broadcast", round(per));
    }
    report.field("subs", p.subs);
    report.field("msgs", p.msgs);
    report.field("size", size);
    report.field("deliveries", total.received);
    report.field("deliveries_per_s", rate.round());
    report.field("span_s", round(span));
    report.field("missing", missing);
    report.field("duplicated", total.duplicated);
    report.field("reordered", total.reordered);
    report.field("corrupt", total.corrupt);
    report.field("payload", p.payload.name());
    report.field("deflate", p.deflate_flag.as_str());
    report.field("deflate_negotiated", if p.deflate.is_some() { negotiated.describe() } else { "off".into() });
    report.field("payload_bytes_in", total.payload_in);
    report.field("wire_bytes_in", total.wire_in);
    report.field("ratio_down", round(ratio));
    report.finish(total.received, "delivery");
    if errors > 0 {
        return Err(format!("{errors} delivery errors"));
    }
    Ok(())
}

async fn subscribe(
    mut stream: crate::tls::Stream,
    mut buf: BytesMut,
    mut outcome: Outcome,
    msgs: u64,
    size: usize,
    kind: Payload,
    shared: Shared,
) -> Outcome {
    shared.ready.wait().await;
    outcome.wire_in = buf.len() as u64;
    let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
    let mut expected = 0u64;
    let deadline = tokio::time::Instant::now() + shared.timeout;
    let opcode = kind.opcode();
    while expected < msgs {
        buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => outcome.wire_in += n as u64,
            _ => break,
        }
        let read_at = Instant::now();
        let mut batch = 0;
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            if frame.header.opcode != opcode || frame.payload.len() != size {
                continue;
            }
            let Some(seq) = kind.seq_of(&frame.payload) else {
                outcome.corrupt += 1;
                continue;
            };
            outcome.count(seq, &mut expected);
            outcome.latency(&shared.clock, seq, read_at);
            outcome.payload_in += size as u64;
            batch += 1;
        }
        if batch > 0 {
            outcome.last_delivery = Some(read_at);
            shared.delivered.fetch_add(batch, Ordering::Relaxed);
        }
    }
    outcome
}

/// A subscriber whose protocol core inflates what arrives; every message
/// is checked byte for byte against what the publisher sent.
async fn subscribe_deflate(
    mut s: Session,
    mut outcome: Outcome,
    payloads: Arc<Vec<Vec<u8>>>,
    size: usize,
    kind: Payload,
    shared: Shared,
) -> Outcome {
    shared.ready.wait().await;
    let msgs = payloads.len() as u64;
    let mut expected = 0u64;
    let deadline = tokio::time::Instant::now() + shared.timeout;
    let mut events = Vec::new();
    let mut read_at = Instant::now();
    s.process(read_at, &mut events);
    'outer: loop {
        let mut batch = 0;
        for event in events.drain(..) {
            match event {
                Event::Message(m) if m.len() == size => {
                    let Some(seq) = kind.seq_of(m.as_bytes()) else {
                        outcome.corrupt += 1;
                        continue;
                    };
                    if payloads.get(seq as usize).is_none_or(|p| m.as_bytes() != &p[..]) {
                        outcome.corrupt += 1;
                    }
                    outcome.count(seq, &mut expected);
                    outcome.latency(&shared.clock, seq, read_at);
                    outcome.payload_in += size as u64;
                    batch += 1;
                }
                Event::Closed(info) => {
                    outcome.error = Some(closed_error(&info).to_string());
                    break 'outer;
                }
                _ => {}
            }
        }
        if batch > 0 {
            outcome.last_delivery = Some(read_at);
            shared.delivered.fetch_add(batch, Ordering::Relaxed);
        }
        if expected >= msgs {
            break;
        }
        if s.conn.wants_write() {
            if let Err(e) = s.flush().await {
                outcome.error = Some(e.to_string());
                break;
            }
        }
        match s.read_some(Some(deadline)).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                outcome.error = Some(e.to_string());
                break;
            }
        }
        read_at = Instant::now();
        s.process(read_at, &mut events);
    }
    outcome.wire_in = s.wire_in;
    outcome
}

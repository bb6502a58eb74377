//! `fanout`: N subscribers on a broadcast endpoint and one publisher.
//! Every subscriber must receive every message exactly once, in order.

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
}

impl Outcome {
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
    let ready = Arc::new(Barrier::new(p.subs + 1));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::with_capacity(p.subs);
    let mut negotiated = Negotiated::default();
    let deadline = Duration::from_secs_f64(p.timeout_secs);
    // Every message, built once: the publisher sends them, deflate
    // subscribers compare what they inflate with them.
    let payloads: Arc<Vec<Vec<u8>>> = Arc::new((0..p.msgs).map(|seq| p.payload.fanout_message(seq, size)).collect());
    for i in 0..p.subs {
        let at = match &p.also {
            Some(also) if i % 2 == 1 => also,
            _ => &p.target,
        };
        let o = open(at, i + 1, p.deflate.as_ref()).await.map_err(|e| format!("subscriber {i}: {e}"))?;
        negotiated.add(o.deflate.as_ref());
        let (ready, delivered, msgs, kind) = (ready.clone(), delivered.clone(), p.msgs, p.payload);
        subscribers.push(match p.deflate {
            None => tokio::spawn(subscribe(o.stream, o.leftover, msgs, size, kind, ready, delivered, deadline)),
            Some(config) => {
                let session = Session::new(o, i + 1, Some(&config));
                tokio::spawn(subscribe_deflate(session, payloads.clone(), size, kind, ready, delivered, deadline))
            }
        });
        if i % 1000 == 999 && std::io::stderr().is_terminal() {
            eprint!("\r[fanout] {} subscribers connected", i + 1);
        }
    }
    let o = open(&p.target, 0, p.deflate.as_ref()).await.map_err(|e| format!("publisher: {e}"))?;
    negotiated.add(o.deflate.as_ref());
    let params = o.deflate;
    let (mut publisher, leftover) = (o.stream, o.leftover);
    ready.wait().await;
    // Give the server a moment to register the last subscribers' handshakes
    // (and a cluster node to subscribe to the channel).
    tokio::time::sleep(Duration::from_millis(if p.also.is_some() { 1000 } else { 200 })).await;
    let ticker = progress("fanout", Duration::from_secs_f64(p.timeout_secs), delivered.clone(), "delivery");
    report.restart_clocks();
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
    let send = async {
        let mut out = BytesMut::new();
        let mut tx = p.deflate.map(|c| client_connection(0, params.as_ref(), Some(&c)));
        for seq in 0..p.msgs {
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
            if out.len() >= 64 * 1024 {
                writer.write_all(&out).await?;
                writer.flush().await?;
                out.clear();
            }
        }
        writer.write_all(&out).await?;
        writer.flush().await
    };
    let (sent, ()) = tokio::join!(send, async {
        let _ = tokio::time::timeout(Duration::from_secs_f64(p.timeout_secs), drain).await;
    });
    sent.map_err(|e| format!("publisher: {e}"))?;

    let mut total = Outcome::default();
    let mut incomplete = 0;
    for task in subscribers {
        let outcome = task.await.map_err(|e| e.to_string())?;
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

#[allow(clippy::too_many_arguments)]
async fn subscribe(
    mut stream: crate::tls::Stream,
    mut buf: BytesMut,
    msgs: u64,
    size: usize,
    kind: Payload,
    ready: Arc<Barrier>,
    delivered: Arc<AtomicU64>,
    timeout: Duration,
) -> Outcome {
    ready.wait().await;
    let mut outcome = Outcome { wire_in: buf.len() as u64, ..Outcome::default() };
    let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
    let mut expected = 0u64;
    let deadline = tokio::time::Instant::now() + timeout;
    let opcode = kind.opcode();
    while expected < msgs {
        buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => outcome.wire_in += n as u64,
            _ => break,
        }
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
            outcome.payload_in += size as u64;
            batch += 1;
        }
        if batch > 0 {
            outcome.last_delivery = Some(Instant::now());
            delivered.fetch_add(batch, Ordering::Relaxed);
        }
    }
    outcome
}

/// A subscriber whose protocol core inflates what arrives; every message
/// is checked byte for byte against what the publisher sent.
async fn subscribe_deflate(
    mut s: Session,
    payloads: Arc<Vec<Vec<u8>>>,
    size: usize,
    kind: Payload,
    ready: Arc<Barrier>,
    delivered: Arc<AtomicU64>,
    timeout: Duration,
) -> Outcome {
    ready.wait().await;
    let msgs = payloads.len() as u64;
    let mut outcome = Outcome::default();
    let mut expected = 0u64;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    s.process(Instant::now(), &mut events);
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
            outcome.last_delivery = Some(Instant::now());
            delivered.fetch_add(batch, Ordering::Relaxed);
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
        s.process(Instant::now(), &mut events);
    }
    outcome.wire_in = s.wire_in;
    outcome
}

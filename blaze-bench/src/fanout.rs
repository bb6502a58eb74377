//! `fanout`: N subscribers on a broadcast endpoint and one publisher.
//! Every subscriber must receive every message exactly once, in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_proto::frame::{encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

use crate::conn::{open, Target};
use crate::report::{progress, round, Report};

pub struct FanoutParams {
    pub target: Target,
    pub subs: usize,
    pub msgs: u64,
    pub size: usize,
    pub timeout_secs: f64,
    pub server_pid: Option<String>,
}

#[derive(Default)]
struct Outcome {
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    last_delivery: Option<Instant>,
}

pub async fn run(p: FanoutParams) -> Result<(), String> {
    let mut report = Report::start("fanout", p.server_pid.clone());
    let size = p.size.max(8);
    let ready = Arc::new(Barrier::new(p.subs + 1));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::with_capacity(p.subs);
    for i in 0..p.subs {
        let (stream, leftover) = open(&p.target, i + 1).await.map_err(|e| format!("subscriber {i}: {e}"))?;
        let (ready, delivered, msgs) = (ready.clone(), delivered.clone(), p.msgs);
        let deadline = Duration::from_secs_f64(p.timeout_secs);
        subscribers.push(tokio::spawn(subscribe(stream, leftover, msgs, size, ready, delivered, deadline)));
    }
    let (mut publisher, leftover) = open(&p.target, 0).await.map_err(|e| format!("publisher: {e}"))?;
    ready.wait().await;
    // Give the server a moment to register the last subscribers' handshakes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ticker = progress("fanout", Duration::from_secs_f64(p.timeout_secs), delivered.clone(), "delivery");
    report.restart_clocks();
    let first_send = Instant::now();
    // The publisher reads its own copies too (the sender is a subscriber).
    let (mut reader, mut writer) = publisher.split();
    let drain = async {
        let mut buf = leftover;
        let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
        let mut seen = 0;
        while seen < p.msgs {
            buf.reserve(64 * 1024);
            if reader.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
            while let Ok(Some(f)) = decoder.decode(&mut buf) {
                if f.header.opcode == OpCode::Binary {
                    seen += 1;
                }
            }
        }
    };
    let send = async {
        let mut out = BytesMut::new();
        let mut payload = vec![b'.'; size];
        for seq in 0..p.msgs {
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            encode_frame(FrameHeader::new(OpCode::Binary), &payload, Some([9, 8, 7, 6]), &mut out);
            if out.len() >= 64 * 1024 {
                writer.write_all(&out).await?;
                out.clear();
            }
        }
        writer.write_all(&out).await
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
    let errors = total.duplicated + total.reordered + missing;
    if errors > 0 {
        report.line(format!(
            "ERRORS: {missing} missing, {} duplicated, {} out of order, {incomplete} subscribers incomplete",
            total.duplicated, total.reordered
        ));
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
    report.finish(total.received, "delivery");
    if errors > 0 {
        return Err(format!("{errors} delivery errors"));
    }
    Ok(())
}

async fn subscribe(
    mut stream: tokio::net::TcpStream,
    mut buf: BytesMut,
    msgs: u64,
    size: usize,
    ready: Arc<Barrier>,
    delivered: Arc<AtomicU64>,
    timeout: Duration,
) -> Outcome {
    ready.wait().await;
    let mut outcome = Outcome::default();
    let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
    let mut expected = 0u64;
    let deadline = tokio::time::Instant::now() + timeout;
    while expected < msgs {
        buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        let mut batch = 0;
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            if frame.header.opcode != OpCode::Binary || frame.payload.len() != size {
                continue;
            }
            let seq = u64::from_be_bytes(frame.payload[..8].try_into().expect("8 bytes"));
            match seq.cmp(&expected) {
                std::cmp::Ordering::Equal => expected += 1,
                std::cmp::Ordering::Less => outcome.duplicated += 1,
                std::cmp::Ordering::Greater => {
                    outcome.reordered += 1;
                    outcome.lost += seq - expected;
                    expected = seq + 1;
                }
            }
            outcome.received += 1;
            batch += 1;
        }
        if batch > 0 {
            outcome.last_delivery = Some(Instant::now());
            delivered.fetch_add(batch, Ordering::Relaxed);
        }
    }
    outcome
}

//! `idle`: hold N idle connections and measure the server's resident
//! memory per connection.
//!
//! With `--messages K` each connection first sends K messages of `--size`
//! bytes and waits for each echo, so state created on first use (a
//! dedicated permessage-deflate compressor and decompressor, grown
//! buffers) exists while the connections are held.

use std::time::Duration;

use blaze_proto::deflate::DeflateConfig;
use blaze_proto::frame::OpCode;
use blaze_proto::{Event, Message, Utf8Bytes};
use bytes::Bytes;

use crate::conn::{closed_error, is_declined, open, Negotiated, Session, Target};
use crate::payload::Payload;
use crate::proc::rss_kib;
use crate::report::{round, Report};

pub struct IdleParams {
    pub target: Target,
    pub conns: usize,
    pub hold: f64,
    pub pid: String,
    pub messages: usize,
    pub size: usize,
    pub payload: Payload,
    pub deflate: Option<DeflateConfig>,
    pub deflate_flag: String,
}

pub async fn run(p: IdleParams) -> Result<(), String> {
    let pid = p.pid.clone();
    let mut report = Report::start("idle", Some(pid.clone()));
    let before = rss_kib(&pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"))?;
    let variants = p.payload.echo_variants(p.size);
    let message = |i: usize| {
        let v = Bytes::from(variants[i % variants.len()].clone());
        match p.payload.opcode() {
            OpCode::Text => Message::Text(Utf8Bytes::try_from_bytes(v).expect("ASCII")),
            _ => Message::Binary(v),
        }
    };
    let mut held = Vec::with_capacity(p.conns);
    let mut failed = 0;
    let mut first_error = None;
    let mut negotiated = Negotiated::default();
    for i in 0..p.conns {
        match open(&p.target, i, p.deflate.as_ref()).await {
            Ok(o) => {
                negotiated.add(o.deflate.as_ref());
                let mut s = Session::new(o, i, p.deflate.as_ref());
                match tokio::time::timeout(Duration::from_secs(10), exchange(&mut s, p.messages, i, &message)).await {
                    Ok(Ok(())) => held.push(s),
                    Ok(Err(e)) => {
                        failed += 1;
                        first_error.get_or_insert(format!("connection {i}: {e}"));
                    }
                    Err(_) => {
                        failed += 1;
                        first_error.get_or_insert(format!("connection {i}: no echo within 10 s"));
                    }
                }
            }
            Err(e) if is_declined(&e) => return Err(format!("connection {i}: {e}")),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("connection {i}: {e}"));
            }
        }
        if i % 1000 == 999 {
            eprint!("\r[idle] {} connected", i + 1);
        }
    }
    eprintln!();
    tokio::time::sleep(Duration::from_secs_f64(p.hold)).await;
    let after = rss_kib(&pid).ok_or("server exited")?;
    let per_conn = (after.saturating_sub(before)) as f64 / held.len().max(1) as f64;
    report.line(format!(
        "{} idle connections held {} s: server RSS {before} KiB → {after} KiB, {per_conn:.2} KiB per connection{}",
        held.len(),
        p.hold,
        if failed > 0 { format!(" ({failed} failed)") } else { String::new() }
    ));
    report.line(format!(
        "each exchanged {} message(s) of {} B {} first; permessage-deflate asked: {}; server agreed: {}",
        p.messages,
        p.size,
        p.payload.name(),
        p.deflate_flag,
        if p.deflate.is_some() { negotiated.describe() } else { "not offered".into() }
    ));
    if let Some(e) = &first_error {
        report.line(format!("first error: {e}"));
    }
    report.field("conns", held.len());
    report.field("failed", failed);
    report.field("messages_each", p.messages);
    report.field("size", p.size);
    report.field("payload", p.payload.name());
    report.field("deflate", p.deflate_flag.as_str());
    report.field("deflate_negotiated", if p.deflate.is_some() { negotiated.describe() } else { "off".into() });
    report.field("rss_before_kib", before);
    report.field("rss_after_kib", after);
    report.field("kib_per_conn", round(per_conn));
    report.finish(held.len() as u64, "connection");
    drop(held);
    if failed > 0 {
        return Err(format!("{failed} connections failed: {}", first_error.unwrap_or_default()));
    }
    Ok(())
}

/// Sends `n` messages one at a time, each awaiting its (identical) echo.
async fn exchange(s: &mut Session, n: usize, index: usize, message: &impl Fn(usize) -> Message) -> std::io::Result<()> {
    let mut events = Vec::new();
    for k in 0..n {
        let m = message(index + k);
        s.conn.send(m.clone()).map_err(|e| std::io::Error::other(e.to_string()))?;
        s.flush().await?;
        'wait: loop {
            s.process(std::time::Instant::now(), &mut events);
            for event in events.drain(..) {
                match event {
                    Event::Message(echo) if echo == m => break 'wait,
                    Event::Message(_) => return Err(std::io::Error::other("echo differs from the message sent")),
                    Event::Closed(info) => return Err(closed_error(&info)),
                    _ => {}
                }
            }
            s.flush().await?;
            s.read_some(None).await?;
        }
    }
    Ok(())
}

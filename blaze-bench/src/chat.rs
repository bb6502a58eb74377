//! `chat`: many publishers. N clients in R rooms; every client publishes
//! and every message must reach every client of its room (the sender
//! included), exactly once, in each sender's order.
//!
//! With `--rooms 1` every client connects to the URL's path (`/broadcast`
//! in the benchmark contract); with more, client `i` connects to
//! `PATH/{i % R}` (`/room/0`, `/room/1`, ... in the contract).
//!
//! Two ways to drive it:
//! - `--rounds K` (the shape of Bun's `bench/websocket-server`): every
//!   client sends one message, waits until it has received the round's
//!   message from every client of its room, then all start the next round.
//! - `--rate M --secs D`: every client sends M messages/s for D seconds
//!   (starts staggered over one period), reading all the while; delivery
//!   latency is the time from the sender's write to a receiver's read.
//!
//! A message is binary: sender (u32 BE), sequence (u32 BE), send time
//! (u64 BE, ns since the run's start), then `.` up to `--size` (≥ 16).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_proto::frame::{encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

use crate::conn::{open, Target};
use crate::report::{progress, round, Report};

const HEADER: usize = 16;

pub struct ChatParams {
    pub target: Target,
    pub clients: usize,
    pub rooms: usize,
    pub size: usize,
    pub drive: Drive,
    pub server_pid: Option<String>,
}

#[derive(Clone, Copy)]
pub enum Drive {
    /// K rounds; a round that makes no progress for `stall` fails the run.
    Rounds { rounds: u32, stall: Duration },
    Rate { per_client: f64, secs: f64 },
}

/// What every client task shares.
struct Shared {
    epoch: Instant,
    clients: usize,
    rooms: usize,
    size: usize,
    drive: Drive,
    /// Every client's connection is open before anyone sends.
    ready: Barrier,
    /// `Rounds`: the end of each round.
    round_done: Barrier,
    /// Messages each client has sent, final once `senders_done` reaches
    /// `clients` (`Rate`).
    sent: Vec<AtomicU64>,
    senders_done: AtomicUsize,
    delivered: Arc<AtomicU64>,
    /// Set when the run is being abandoned (a round stalled, or the
    /// give-up time passed with messages still missing).
    stop_reading: AtomicBool,
}

impl Shared {
    fn room_of(&self, client: usize) -> usize {
        client % self.rooms
    }

    /// How many clients are in `room`.
    fn room_size(&self, room: usize) -> usize {
        (self.clients - room).div_ceil(self.rooms)
    }

    /// Messages `client` must receive: everything its room's members sent.
    fn expected(&self, client: usize) -> u64 {
        let room = self.room_of(client);
        (room..self.clients).step_by(self.rooms).map(|s| self.sent[s].load(Ordering::Relaxed)).sum()
    }

    /// Message `seq` of `client`, framed and masked, stamped now.
    fn message(&self, client: usize, seq: u32) -> BytesMut {
        let mut payload = vec![b'.'; self.size];
        payload[0..4].copy_from_slice(&(client as u32).to_be_bytes());
        payload[4..8].copy_from_slice(&seq.to_be_bytes());
        let now = self.epoch.elapsed().as_nanos() as u64;
        payload[8..16].copy_from_slice(&now.to_be_bytes());
        let mut frame = BytesMut::with_capacity(self.size + 14);
        encode_frame(FrameHeader::new(OpCode::Binary), &payload, Some([7, 7, 7, 7]), &mut frame);
        frame
    }
}

/// What one client saw.
#[derive(Default)]
struct Outcome {
    received: u64,
    expected: u64,
    duplicated: u64,
    reordered: u64,
    foreign: u64,
    latencies: Vec<u32>,
    last_delivery: Option<Instant>,
    error: Option<String>,
}

pub async fn run(p: ChatParams) -> Result<(), String> {
    if p.size < HEADER {
        return Err(format!("--size must be at least {HEADER}"));
    }
    if p.rooms == 0 || p.rooms > p.clients {
        return Err("--rooms must be between 1 and --clients".into());
    }
    let mut report = Report::start("chat", p.server_pid.clone());
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        clients: p.clients,
        rooms: p.rooms,
        size: p.size,
        drive: p.drive,
        ready: Barrier::new(p.clients + 1),
        round_done: Barrier::new(p.clients),
        sent: (0..p.clients).map(|_| AtomicU64::new(0)).collect(),
        senders_done: AtomicUsize::new(0),
        delivered: Arc::new(AtomicU64::new(0)),
        stop_reading: AtomicBool::new(false),
    });
    let mut tasks = Vec::with_capacity(p.clients);
    for i in 0..p.clients {
        let mut target = p.target.clone();
        if p.rooms > 1 {
            target.path = format!("{}/{}", p.target.path.trim_end_matches('/'), i % p.rooms);
        }
        let o = open(&target, i, None).await.map_err(|e| format!("client {i}: {e}"))?;
        tasks.push(tokio::spawn(client(o.stream, o.leftover, i, shared.clone())));
    }
    let wall = match p.drive {
        Drive::Rounds { .. } => Duration::from_secs(120),
        Drive::Rate { secs, .. } => Duration::from_secs_f64(secs),
    };
    let ticker = progress("chat", wall, shared.delivered.clone(), "delivery");
    // Let the server register the last handshakes before anyone publishes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    report.restart_clocks();
    let start = Instant::now();
    shared.ready.wait().await;
    let mut total = Outcome::default();
    let mut incomplete = 0;
    for task in tasks {
        let mut o = task.await.map_err(|e| e.to_string())?;
        if o.received < o.expected {
            incomplete += 1;
        }
        total.received += o.received;
        total.expected += o.expected;
        total.duplicated += o.duplicated;
        total.reordered += o.reordered;
        total.foreign += o.foreign;
        total.latencies.append(&mut o.latencies);
        total.last_delivery = total.last_delivery.max(o.last_delivery);
        if total.error.is_none() {
            total.error = o.error;
        }
    }
    if let Some(t) = ticker {
        t.abort();
        eprintln!();
    }
    let span = total.last_delivery.map_or(0.0, |t| (t - start).as_secs_f64());
    let rate = if span > 0.0 { total.received as f64 / span } else { 0.0 };
    let sent: u64 = shared.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    let missing = total.expected.saturating_sub(total.received);
    let how = match p.drive {
        Drive::Rounds { rounds, .. } => format!("{rounds} rounds"),
        Drive::Rate { per_client, secs } => format!("{per_client} msgs/s per client for {secs} s"),
    };
    report.line(format!(
        "{} clients in {} room(s), {how}, {} B: {sent} messages sent, {} deliveries, {rate:.0} deliveries/s over {span:.3} s",
        p.clients, p.rooms, p.size, total.received
    ));
    report.latency("latency", "delivery latency (sender's write → receiver's read)", &mut total.latencies);
    let errors = missing + total.duplicated + total.reordered + total.foreign;
    if errors > 0 {
        report.line(format!(
            "ERRORS: {missing} missing, {} duplicated, {} out of order, {} from another room, {incomplete} clients incomplete",
            total.duplicated, total.reordered, total.foreign
        ));
    }
    if let Some(e) = &total.error {
        report.line(format!("first client error: {e}"));
    }
    report.field("clients", p.clients);
    report.field("rooms", p.rooms);
    report.field("size", p.size);
    match p.drive {
        Drive::Rounds { rounds, .. } => report.field("rounds", rounds),
        Drive::Rate { per_client, secs } => {
            report.field("rate_per_client", per_client);
            report.field("secs", secs);
        }
    }
    report.field("sent", sent);
    report.field("deliveries", total.received);
    report.field("deliveries_per_s", rate.round());
    report.field("span_s", round(span));
    report.field("missing", missing);
    report.field("duplicated", total.duplicated);
    report.field("reordered", total.reordered);
    report.field("foreign", total.foreign);
    report.finish(total.received, "delivery");
    if errors > 0 {
        return Err(format!("{errors} delivery errors"));
    }
    Ok(())
}

async fn client(mut stream: crate::tls::Stream, leftover: BytesMut, me: usize, shared: Arc<Shared>) -> Outcome {
    shared.ready.wait().await;
    let (reader, mut writer) = tokio::io::split(&mut stream);
    let mut outcome = Outcome::default();
    let result = match shared.drive {
        Drive::Rounds { rounds, stall } => {
            by_rounds(reader, &mut writer, leftover, me, rounds, stall, &shared, &mut outcome).await
        }
        Drive::Rate { per_client, secs } => {
            let send = async {
                let period = Duration::from_secs_f64(1.0 / per_client);
                // Staggered: client i starts i/N of a period in.
                let first = Instant::now() + period.mul_f64(me as f64 / shared.clients as f64);
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let mut seq = 0u32;
                let result = loop {
                    let due = first + period * seq;
                    if due >= end {
                        break Ok(());
                    }
                    tokio::time::sleep_until(due.into()).await;
                    if let Err(e) = writer.write_all(&shared.message(me, seq)).await {
                        break Err(e);
                    }
                    seq += 1;
                    shared.sent[me].store(seq as u64, Ordering::Relaxed);
                };
                shared.senders_done.fetch_add(1, Ordering::AcqRel);
                result
            };
            let (sent, read) = tokio::join!(send, read_until_done(reader, leftover, me, &shared, &mut outcome));
            sent.and(read)
        }
    };
    if let Err(e) = result {
        outcome.error = Some(e.to_string());
    }
    if outcome.expected == 0 {
        outcome.expected = shared.expected(me);
    }
    outcome
}

/// Per-sender order tracking for one receiver: the next sequence number
/// expected from each member of its room.
struct Order {
    next: Vec<u32>,
}

impl Order {
    fn new(shared: &Shared, me: usize) -> Order {
        Order { next: vec![0; shared.room_size(shared.room_of(me))] }
    }

    /// Checks one message; returns its send time (ns) when it belongs here.
    fn check(&mut self, payload: &[u8], me: usize, shared: &Shared, o: &mut Outcome) -> Option<u64> {
        let sender = u32::from_be_bytes(payload.get(0..4)?.try_into().ok()?) as usize;
        let seq = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
        let sent_ns = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
        if sender >= shared.clients || shared.room_of(sender) != shared.room_of(me) {
            o.foreign += 1;
            return None;
        }
        let next = &mut self.next[sender / shared.rooms];
        match seq.cmp(next) {
            std::cmp::Ordering::Equal => *next += 1,
            std::cmp::Ordering::Less => {
                o.duplicated += 1;
                return None;
            }
            std::cmp::Ordering::Greater => {
                o.reordered += 1;
                *next = seq + 1;
            }
        }
        o.received += 1;
        Some(sent_ns)
    }
}

/// Decodes what is buffered; returns how many messages counted.
fn take_frames(
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    order: &mut Order,
    me: usize,
    shared: &Shared,
    o: &mut Outcome,
    read_at: Instant,
) -> std::io::Result<u64> {
    let now_ns = (read_at - shared.epoch).as_nanos() as u64;
    let mut counted = 0;
    while let Some(frame) = decoder.decode(buf).map_err(|e| std::io::Error::other(e.to_string()))? {
        if frame.header.opcode != OpCode::Binary {
            continue;
        }
        if let Some(sent_ns) = order.check(&frame.payload, me, shared, o) {
            o.latencies.push((now_ns.saturating_sub(sent_ns) / 1000).min(u32::MAX as u64) as u32);
            counted += 1;
        }
    }
    if counted > 0 {
        o.last_delivery = Some(read_at);
        shared.delivered.fetch_add(counted, Ordering::Relaxed);
    }
    Ok(counted)
}

#[allow(clippy::too_many_arguments)]
async fn by_rounds(
    mut reader: impl AsyncReadExt + Unpin,
    writer: &mut (impl AsyncWriteExt + Unpin),
    mut buf: BytesMut,
    me: usize,
    rounds: u32,
    stall: Duration,
    shared: &Shared,
    o: &mut Outcome,
) -> std::io::Result<()> {
    let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
    let mut order = Order::new(shared, me);
    let per_round = shared.room_size(shared.room_of(me)) as u64;
    for round in 0..rounds {
        writer.write_all(&shared.message(me, round)).await?;
        shared.sent[me].store(round as u64 + 1, Ordering::Relaxed);
        let want = per_round * (round as u64 + 1);
        take_frames(&mut buf, &mut decoder, &mut order, me, shared, o, Instant::now())?;
        while o.received < want {
            buf.reserve(16 * 1024);
            match tokio::time::timeout(stall, reader.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Ok(_)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    // A lost message: this client stops, and so does everyone
                    // after this round's end (nobody could finish the next).
                    o.expected = want;
                    shared.stop_reading.store(true, Ordering::Relaxed);
                    shared.round_done.wait().await;
                    let stalled = format!("round {round} stalled for {stall:?}");
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, stalled));
                }
            }
            take_frames(&mut buf, &mut decoder, &mut order, me, shared, o, Instant::now())?;
        }
        shared.round_done.wait().await;
        if shared.stop_reading.load(Ordering::Relaxed) {
            o.expected = want;
            return Ok(());
        }
    }
    o.expected = per_round * rounds as u64;
    Ok(())
}

async fn read_until_done(
    mut reader: impl AsyncReadExt + Unpin,
    mut buf: BytesMut,
    me: usize,
    shared: &Shared,
    o: &mut Outcome,
) -> std::io::Result<()> {
    let mut decoder = FrameDecoder::new(Role::Client, usize::MAX);
    let mut order = Order::new(shared, me);
    let Drive::Rate { secs, .. } = shared.drive else { unreachable!("rate mode only") };
    // After the last send, 10 s for what is still in flight.
    let give_up = tokio::time::Instant::now() + Duration::from_secs_f64(secs + 10.0);
    take_frames(&mut buf, &mut decoder, &mut order, me, shared, o, Instant::now())?;
    loop {
        if shared.senders_done.load(Ordering::Acquire) == shared.clients {
            o.expected = shared.expected(me);
            if o.received >= o.expected || shared.stop_reading.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
        buf.reserve(16 * 1024);
        // Wake now and then to notice that every sender is done.
        let wait = (tokio::time::Instant::now() + Duration::from_millis(100)).min(give_up);
        match tokio::time::timeout_at(wait, reader.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(Err(e)) => return Err(e),
            Err(_) if wait >= give_up => {
                shared.stop_reading.store(true, Ordering::Relaxed);
                o.expected = shared.expected(me);
                return Ok(());
            }
            Err(_) => continue,
        }
        take_frames(&mut buf, &mut decoder, &mut order, me, shared, o, Instant::now())?;
    }
}

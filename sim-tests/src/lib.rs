//! # sim-tests: deterministic turmoil simulations of Blaze
//!
//! The real tokio adapter (`blaze_tokio::App::serve`) and the real client
//! (`blaze_server::connect_with`) run over turmoil's simulated TCP, so
//! latency, jitter, partitions, held links and host crashes are injected
//! deterministically and every deadline of the protocol core runs on
//! turmoil's virtual clock: minutes of heartbeats simulate in milliseconds.
//!
//! This crate is the harness; the scenarios live in `tests/scenarios/`
//! and are described, with how to run and replay them, in `README.md`.
//! The test thread orchestrates: it steps the simulation tick by tick
//! ([`Sim::run_until`]), injects faults, calls the server's `App` to
//! broadcast, and asserts on what the server ([`ServerLog`]) and every
//! client ([`AgentLog`]) recorded, in virtual time.
//!
//! Every simulation is seeded ([`run_seeds`]): a failure prints its seed
//! and the command that replays it. `SIM_SEED=N` runs one seed,
//! `SIM_SEEDS=N` runs seeds `1..=N`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use blaze_tokio::{Accept, Accepted, TokioIo, TokioRuntime};
pub use blaze_tokio::{
    App, BackpressurePolicy, Callbacks, ClientOptions, CloseCode, CompressionMode, ConnId,
    DeflateConfig, Message, WebSocket, WsConfig, WsStream, WsUrl,
};
use rand::rngs::SmallRng;
pub use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The port the simulated server listens on.
pub const PORT: u16 = 9000;
/// The server's host name in every simulation.
pub const SERVER: &str = "server";
/// The WebSocket route every scenario serves.
pub const PATH: &str = "/feed";
/// The topic every connection joins on open.
pub const ALL: &str = "all";

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Locks, ignoring poisoning (a failed assertion elsewhere must not hide
/// behind a second panic here).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Virtual time since the simulation started, from inside a host.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Whether to print a line per simulation (`SIM_VERBOSE=1`).
pub fn verbose() -> bool {
    std::env::var_os("SIM_VERBOSE").is_some()
}

/// A duration in milliseconds, for messages.
pub fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// The seeds to run: `SIM_SEED=N` (one), `SIM_SEEDS=N` (`1..=N`), or the
/// scenario's fixed CI set followed by [`fresh_seeds`]: every run also
/// explores seeds no run has tried before (as TigerBeetle's VOPR does),
/// and a failure on one prints the command that replays it.
pub fn seeds(ci: &[u64]) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return vec![seed.trim().parse().expect("SIM_SEED must be a number")];
    }
    if let Ok(n) = std::env::var("SIM_SEEDS") {
        let n: u64 = n.trim().parse().expect("SIM_SEEDS must be a number");
        return (1..=n).collect();
    }
    let mut seeds = ci.to_vec();
    seeds.extend(fresh_seeds());
    seeds
}

/// How many fresh seeds each scenario tries after its CI set:
/// `SIM_FRESH=N`, default 2 (`SIM_FRESH=0`: the fixed set only).
pub fn fresh_count() -> u64 {
    std::env::var("SIM_FRESH").ok().map_or(2, |n| n.trim().parse().expect("SIM_FRESH must be a number"))
}

/// [`fresh_count`] seeds drawn from the wall clock and the process id
/// (the only place the harness reads either: each seed then drives a
/// fully deterministic run). Kept in `1_000..1_000_000_000` so they never
/// repeat the small CI seeds and stay short to type.
pub fn fresh_seeds() -> Vec<u64> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    (0..fresh_count())
        .map(|_| {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            1_000 + (z ^ (z >> 31)) % 999_999_000
        })
        .collect()
}

/// Runs `scenario` once per seed. A failure (any panic: a failed
/// assertion, a simulation error, a task that panicked inside the
/// simulation) prints the seed and the command that replays it, then
/// fails the test.
pub fn run_seeds(test: &str, ci: &[u64], scenario: impl Fn(u64)) {
    install_panic_hook();
    let seeds = seeds(ci);
    let fresh: Vec<u64> = seeds.iter().copied().filter(|s| !ci.contains(s)).collect();
    if std::env::var_os("SIM_SEED").is_none() && std::env::var_os("SIM_SEEDS").is_none() && !fresh.is_empty() {
        eprintln!("simulation `{test}`: CI seeds {ci:?}, fresh seeds {fresh:?} (replay one: SIM_SEED=<seed> cargo test -p sim-tests {test} -- --exact --nocapture)");
    }
    for seed in seeds {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed)));
        if let Err(panic) = result {
            eprintln!(
                "\n*** simulation `{test}` FAILED with seed {seed}\n*** replay: SIM_SEED={seed} cargo test -p sim-tests {test} -- --exact --nocapture\n"
            );
            std::panic::resume_unwind(panic);
        }
    }
}

thread_local! {
    /// The first panic of a task inside this thread's simulation.
    static TASK_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Tokio swallows the panics of spawned tasks (a driver, an agent): record
/// them so the orchestrator fails the simulation instead of waiting for a
/// condition that a dead task will never bring about. Each simulation runs
/// on one thread, so a thread-local is the simulation's own.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.to_string();
            TASK_PANIC.with(|p| {
                let mut p = p.borrow_mut();
                if p.is_none() {
                    *p = Some(message);
                }
            });
            default(info);
        }));
    });
}

fn take_task_panic() -> Option<String> {
    TASK_PANIC.with(|p| p.borrow_mut().take())
}

// ---------------------------------------------------------------------------
// The simulation
// ---------------------------------------------------------------------------

/// Network parameters of a simulation.
#[derive(Debug, Clone, Copy)]
pub struct Net {
    /// Smallest one-way latency of a segment.
    pub min_latency: Duration,
    /// Largest one-way latency (jitter is the difference; turmoil's TCP
    /// reorders by sequence number, so the stream stays in order).
    pub max_latency: Duration,
}

impl Default for Net {
    fn default() -> Net {
        Net {
            min_latency: Duration::from_millis(1),
            max_latency: Duration::from_millis(20),
        }
    }
}

/// The simulation tick: the resolution of virtual time.
pub const TICK: Duration = Duration::from_millis(1);

/// A turmoil simulation stepped by the test thread.
pub struct Sim {
    /// The turmoil simulation.
    pub sim: turmoil::Sim<'static>,
    /// The seed.
    pub seed: u64,
    /// A generator for the scenario's own choices (which host, when, what),
    /// seeded from the simulation seed.
    pub rng: SmallRng,
    /// The network parameters.
    pub net: Net,
}

impl Sim {
    /// A simulation with the given seed and network.
    pub fn new(seed: u64, net: Net) -> Sim {
        let sim = turmoil::Builder::new()
            .rng_seed(seed)
            .tick_duration(TICK)
            // The orchestrator decides when a scenario ends.
            .simulation_duration(Duration::from_secs(24 * 3600))
            .min_message_latency(net.min_latency)
            .max_message_latency(net.max_latency)
            .build();
        Sim {
            sim,
            seed,
            rng: SmallRng::seed_from_u64(seed ^ 0x5EED_B1A2E),
            net,
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Runs one tick; fails on a simulation error or a panicked task.
    pub fn step(&mut self) {
        if let Err(err) = self.sim.step() {
            panic!("simulation error at {:?}: {err}", self.now());
        }
        if let Some(panic) = take_task_panic() {
            panic!(
                "a task panicked inside the simulation at {:?}: {panic}",
                self.now()
            );
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now() + duration;
        while self.now() < end {
            self.step();
        }
    }

    /// Runs until `done` holds (checked after every tick); returns the
    /// virtual time it took. Fails after `limit`.
    pub fn run_until(&mut self, what: &str, limit: Duration, done: impl FnMut() -> bool) -> Duration {
        self.run_until_with(what, limit, done, |_| {})
    }

    /// [`Sim::run_until`], calling `before_tick` before every tick (to
    /// inject traffic).
    pub fn run_until_with(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut() -> bool,
        mut before_tick: impl FnMut(&mut Sim),
    ) -> Duration {
        let start = self.now();
        loop {
            if done() {
                return self.now() - start;
            }
            if self.now() - start > limit {
                panic!(
                    "timed out after {limit:?} (virtual) at {:?} waiting for: {what}",
                    self.now()
                );
            }
            before_tick(self);
            self.step();
        }
    }

    /// A duration drawn uniformly from `lo..=hi`.
    pub fn random_duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_micros(
            self.rng
                .random_range(lo.as_micros() as u64..=hi.as_micros() as u64),
        )
    }
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/// turmoil's simulated listener as a Blaze acceptor.
pub struct SimListener(pub turmoil::net::TcpListener);

impl Accept for SimListener {
    type Stream = turmoil::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Accepted<Self::Stream>> {
        let (stream, remote) = self.0.accept().await?;
        let local_addr = stream.local_addr().ok();
        Ok(Accepted {
            io: stream,
            remote_addr: Some(remote),
            local_addr,
        })
    }
}

/// What the server saw, in one totally ordered log. Every host of a
/// simulation runs on the test thread, one after another, so the server's
/// callbacks and the orchestrator's broadcasts interleave exactly as they
/// happened: the model of who should receive what is computed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A server process (re)started: generation `generation` of the app.
    Started { generation: u64, at: Duration },
    /// `on_open`: registered, joined [`ALL`], sent its hello.
    Open {
        generation: u64,
        id: u64,
        remote: Option<SocketAddr>,
        at: Duration,
    },
    /// The connection joined a topic (asked for by the client).
    Join {
        generation: u64,
        id: u64,
        topic: String,
    },
    /// The connection left a topic.
    Leave {
        generation: u64,
        id: u64,
        topic: String,
    },
    /// The server started closing the connection (a close frame queued by
    /// shutdown, a backpressure limit, the application): it is still
    /// registered but receives nothing more. Noticed by the orchestrator
    /// just before a broadcast, so the model stays exact.
    Closing { generation: u64, id: u64 },
    /// `on_close` ran.
    Close {
        generation: u64,
        id: u64,
        code: u16,
        at: Duration,
    },
    /// The orchestrator broadcast `text` on [`PATH`]; queued for `count`.
    Broadcast {
        text: String,
        count: usize,
        at: Duration,
    },
    /// The orchestrator published `text` to `topic`; queued for `count`.
    Publish {
        topic: String,
        text: String,
        count: usize,
        at: Duration,
    },
    /// `serve` returned.
    Stopped { generation: u64, at: Duration },
}

/// The shared server log.
pub type ServerLog = Arc<Mutex<Vec<ServerEvent>>>;

/// How a scenario configures its server.
#[derive(Clone)]
pub struct ServerSpec {
    /// The route's configuration.
    pub config: WsConfig,
    /// How long shutdown waits for clients.
    pub drain_timeout: Duration,
}

impl Default for ServerSpec {
    fn default() -> ServerSpec {
        ServerSpec {
            config: sim_config(),
            drain_timeout: Duration::from_secs(3),
        }
    }
}

/// The heartbeats and timeouts of the simulations: short, in virtual time.
pub fn sim_config() -> WsConfig {
    WsConfig::default()
        .ping_interval(Some(PING_INTERVAL))
        .pong_timeout(PONG_TIMEOUT)
        .close_timeout(CLOSE_TIMEOUT)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
}

/// Silence after which the server pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Time a ping may go unanswered.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(2);
/// Time our close frame may go unanswered.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time from accept to a complete upgrade request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The simulated server host: a fresh `App` per (re)start, its log, and
/// what the host's TCP stack holds.
#[derive(Clone)]
pub struct Server {
    /// The running app (replaced when the host restarts).
    pub app: Arc<Mutex<Option<App>>>,
    /// What the server saw.
    pub log: ServerLog,
    /// Established TCP streams on the server host, sampled every tick by a
    /// task on the host (turmoil's socket table: a stream leaves it when
    /// the server has dropped both halves or was reset).
    pub tcp_streams: Arc<AtomicUsize>,
    /// App generations started so far.
    pub generation: Arc<AtomicU64>,
    closing_noted: Arc<Mutex<BTreeSet<ConnKey>>>,
}

impl Server {
    /// Registers the server host. Each start builds a new `App` with the
    /// scenario's handler: on open it joins [`ALL`] and sends `id:<id>`;
    /// it obeys `join:<topic>` / `leave:<topic>` from clients and ignores
    /// anything else (`probe`, chatter).
    pub fn install(sim: &mut Sim, spec: ServerSpec) -> Server {
        let server = Server {
            app: Arc::new(Mutex::new(None)),
            log: Arc::new(Mutex::new(Vec::new())),
            tcp_streams: Arc::new(AtomicUsize::new(0)),
            generation: Arc::new(AtomicU64::new(0)),
            closing_noted: Arc::new(Mutex::new(BTreeSet::new())),
        };
        let handle = server.clone();
        sim.sim.host(SERVER, move || {
            let server = handle.clone();
            let spec = spec.clone();
            async move {
                let generation = server.generation.fetch_add(1, Ordering::SeqCst) + 1;
                let app = build_app(&spec, generation, server.log.clone());
                lock(&server.log).push(ServerEvent::Started {
                    generation,
                    at: now(),
                });
                *lock(&server.app) = Some(app.clone());
                let streams = server.tcp_streams.clone();
                tokio::spawn(async move {
                    loop {
                        streams.store(turmoil::established_tcp_stream_count(), Ordering::SeqCst);
                        tokio::time::sleep(TICK).await;
                    }
                });
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
                app.serve(SimListener(listener)).await?;
                lock(&server.log).push(ServerEvent::Stopped {
                    generation,
                    at: now(),
                });
                // Keep the host running: its TCP stack still has to answer
                // (and the sampler to report) after `serve` returns.
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        server
    }

    /// The current app.
    pub fn app(&self) -> App {
        lock(&self.app).clone().expect("the server has started")
    }

    /// How many times the server process has started (the current app's
    /// generation).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Established TCP streams on the server host.
    pub fn tcp_streams(&self) -> usize {
        self.tcp_streams.load(Ordering::SeqCst)
    }

    /// Broadcasts `text` on [`PATH`] (from the test thread, between ticks)
    /// and logs it; returns how many connections it was queued for.
    pub fn broadcast(&self, text: String, at: Duration) -> usize {
        self.note_closing();
        let count = self
            .app()
            .broadcast(PATH, text.as_str())
            .expect("broadcast");
        // A connection this very message pushed over its backpressure
        // limit was closed instead of being sent it.
        self.note_closing();
        lock(&self.log).push(ServerEvent::Broadcast { text, count, at });
        count
    }

    /// Publishes `text` to `topic` and logs it.
    pub fn publish(&self, topic: &str, text: String, at: Duration) -> usize {
        self.note_closing();
        let count = self.app().publish(topic, text.as_str()).expect("publish");
        self.note_closing();
        lock(&self.log).push(ServerEvent::Publish {
            topic: topic.to_owned(),
            text,
            count,
            at,
        });
        count
    }

    /// Logs [`ServerEvent::Closing`] for every registered connection that
    /// no longer takes messages and was not logged yet.
    fn note_closing(&self) {
        let app = self.app();
        let generation = self.generation();
        let mut log = lock(&self.log);
        let mut noted = lock(&self.closing_noted);
        for summary in app.connections(PATH) {
            let key = (generation, summary.id.0);
            if !noted.contains(&key) && app.connection(summary.id).is_some_and(|ws| !ws.is_open()) {
                noted.insert(key);
                log.push(ServerEvent::Closing {
                    generation,
                    id: key.1,
                });
            }
        }
    }

    /// How a connection's `on_close` ran (code, time), if it did (the last
    /// time, if more than once: [`Model::closes`] counts them).
    pub fn closed(&self, key: ConnKey) -> Option<(u16, Duration)> {
        lock(&self.log).iter().rev().find_map(|e| match e {
            ServerEvent::Close {
                generation,
                id,
                code,
                at,
            } if (*generation, *id) == key => Some((*code, *at)),
            _ => None,
        })
    }

    /// A copy of the log.
    pub fn events(&self) -> Vec<ServerEvent> {
        lock(&self.log).clone()
    }

    /// The model: replays the log (see [`Model::replay`]).
    pub fn model(&self) -> Model {
        Model::replay(&self.events())
    }
}

fn build_app(spec: &ServerSpec, generation: u64, log: ServerLog) -> App {
    let app = App::new();
    // App-wide: the handshake limits apply before routing.
    app.config(spec.config.clone());
    app.drain_timeout(spec.drain_timeout);
    let (open_log, message_log, close_log) = (log.clone(), log.clone(), log);
    app.ws(
        PATH,
        Callbacks::new()
            .on_open(move |ws| {
                ws.join(ALL);
                let id = ws.id().0;
                lock(&open_log).push(ServerEvent::Open {
                    generation,
                    id,
                    remote: ws.remote_addr(),
                    at: now(),
                });
                let _ = ws.send(format!("id:{generation}:{id}"));
            })
            .on_message(move |ws, text| {
                let id = ws.id().0;
                if let Some(topic) = text.strip_prefix("join:") {
                    if ws.join(topic) {
                        lock(&message_log).push(ServerEvent::Join {
                            generation,
                            id,
                            topic: topic.to_owned(),
                        });
                    }
                } else if let Some(topic) = text.strip_prefix("leave:") {
                    if ws.leave(topic) {
                        lock(&message_log).push(ServerEvent::Leave {
                            generation,
                            id,
                            topic: topic.to_owned(),
                        });
                    }
                }
            })
            .on_close(move |ws, code, _reason| {
                lock(&close_log).push(ServerEvent::Close {
                    generation,
                    id: ws.id().0,
                    code,
                    at: now(),
                });
            }),
    );
    app
}

/// A connection as the server knows it: app generation and id.
pub type ConnKey = (u64, u64);

/// What the server's log says.
#[derive(Debug, Default, Clone)]
pub struct Model {
    /// Per connection: every message queued for it, in order.
    pub expected: BTreeMap<ConnKey, Vec<String>>,
    /// Connections open (on_open ran, on_close did not).
    pub open: BTreeSet<ConnKey>,
    /// Open connections the server is closing (they receive nothing more).
    pub closing: BTreeSet<ConnKey>,
    /// Members of each topic, among open connections.
    pub topics: BTreeMap<String, BTreeSet<ConnKey>>,
    /// How often `on_close` ran per connection, with the last code.
    pub closes: BTreeMap<ConnKey, (usize, u16, Duration)>,
    /// When each connection opened.
    pub opened_at: BTreeMap<ConnKey, Duration>,
    /// The peer address of each connection.
    pub remote: BTreeMap<ConnKey, Option<SocketAddr>>,
}

impl Model {
    /// Replays a server log. Panics if a broadcast's or publish's receiver
    /// count differs from the registry the log implies.
    pub fn replay(events: &[ServerEvent]) -> Model {
        let mut m = Model::default();
        let mut generation = 0;
        for event in events {
            match event {
                ServerEvent::Started { generation: g, .. } => {
                    // A restarted process starts with an empty registry.
                    generation = *g;
                    m.open.clear();
                    m.closing.clear();
                    m.topics.clear();
                }
                ServerEvent::Open {
                    generation,
                    id,
                    remote,
                    at,
                } => {
                    let key = (*generation, *id);
                    assert!(m.open.insert(key), "{key:?} opened twice");
                    m.expected.insert(key, Vec::new());
                    m.topics.entry(ALL.to_owned()).or_default().insert(key);
                    m.opened_at.insert(key, *at);
                    m.remote.insert(key, *remote);
                }
                ServerEvent::Join {
                    generation,
                    id,
                    topic,
                } => {
                    m.topics
                        .entry(topic.clone())
                        .or_default()
                        .insert((*generation, *id));
                }
                ServerEvent::Leave {
                    generation,
                    id,
                    topic,
                } => {
                    m.topics
                        .entry(topic.clone())
                        .or_default()
                        .remove(&(*generation, *id));
                }
                ServerEvent::Close {
                    generation,
                    id,
                    code,
                    at,
                } => {
                    let key = (*generation, *id);
                    m.open.remove(&key);
                    m.closing.remove(&key);
                    for members in m.topics.values_mut() {
                        members.remove(&key);
                    }
                    let entry = m.closes.entry(key).or_insert((0, 0, Duration::ZERO));
                    entry.0 += 1;
                    entry.1 = *code;
                    entry.2 = *at;
                }
                ServerEvent::Closing { generation, id } => {
                    m.closing.insert((*generation, *id));
                }
                ServerEvent::Broadcast { text, count, at } => {
                    let receivers: Vec<ConnKey> = m
                        .open
                        .iter()
                        .copied()
                        .filter(|k| k.0 == generation && !m.closing.contains(k))
                        .collect();
                    assert_eq!(
                        *count,
                        receivers.len(),
                        "broadcast {text:?} at {at:?}: queued for {count}, model has {}",
                        receivers.len()
                    );
                    for key in receivers {
                        m.expected.get_mut(&key).expect("opened").push(text.clone());
                    }
                }
                ServerEvent::Publish {
                    topic,
                    text,
                    count,
                    at,
                } => {
                    let receivers: Vec<ConnKey> = m
                        .topics
                        .get(topic)
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|k| !m.closing.contains(k))
                        .collect();
                    assert_eq!(
                        *count,
                        receivers.len(),
                        "publish {text:?} to {topic} at {at:?}: queued for {count}, model has {}",
                        receivers.len()
                    );
                    for key in receivers {
                        m.expected.get_mut(&key).expect("opened").push(text.clone());
                    }
                }
                ServerEvent::Stopped { .. } => {}
            }
        }
        m
    }

    /// Members of a topic.
    pub fn topic_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, BTreeSet::len)
    }
}

// ---------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------

/// Connects a Blaze client to the simulated server over turmoil TCP.
/// Returns the stream and the client's local address.
///
/// `deflate` offers permessage-deflate with that configuration.
pub async fn connect(
    path: &str,
    deflate: Option<DeflateConfig>,
) -> Result<(WsStream, SocketAddr), String> {
    let stream = turmoil::net::TcpStream::connect((SERVER, PORT))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let url = WsUrl::parse(&format!("ws://{SERVER}:{PORT}{path}")).map_err(|e| e.to_string())?;
    let mut options = ClientOptions::default().config(
        WsConfig::default()
            .ping_interval(None)
            .handshake_timeout(HANDSHAKE_TIMEOUT),
    );
    if let Some(deflate) = deflate {
        options = options.deflate(deflate);
    }
    let ws = blaze_server::connect_with(TokioRuntime, TokioIo(stream), &url, options)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok((ws, local))
}

/// One client connection as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLog {
    /// The server's `(generation, id)`, from the hello; `None` until it arrives.
    pub key: Option<ConnKey>,
    /// The client's address.
    pub local: SocketAddr,
    /// When the handshake completed.
    pub opened_at: Duration,
    /// Messages after the hello, with the virtual time each arrived.
    pub received: Vec<(String, Duration)>,
    /// How it ended: the close code `recv` reported and when.
    pub closed: Option<(u16, Duration)>,
}

impl ConnLog {
    /// The texts received.
    pub fn texts(&self) -> Vec<&str> {
        self.received.iter().map(|(t, _)| t.as_str()).collect()
    }
}

/// Everything one client agent saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentLog {
    /// Its connections, in order.
    pub conns: Vec<ConnLog>,
    /// Connection attempts that failed (refused, timed out).
    pub failed_attempts: u32,
}

impl AgentLog {
    /// The latest connection.
    pub fn current(&self) -> Option<&ConnLog> {
        self.conns.last()
    }

    /// Whether the latest connection is open (as far as the client knows).
    pub fn is_open(&self) -> bool {
        self.current().is_some_and(|c| c.closed.is_none())
    }
}

/// A command for a client agent.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Send a text message.
    Send(String),
    /// Close the connection with 1000.
    Close,
    /// Stop reading (the connection's inbox fills, then its socket).
    Stall,
    /// Read again.
    Resume,
    /// Connect again (an agent whose connection ended waits for this
    /// unless it reconnects by itself).
    Reconnect,
}

/// What an agent does when its connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Waits for [`Cmd::Reconnect`].
    OnCommand,
    /// Reconnects by itself: a `ReconnectingClient` with [`AUTO_BACKOFF`].
    Auto,
}

/// How an agent behaves.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Virtual time to wait before the first connection.
    pub start_after: Duration,
    /// What to do when a connection ends.
    pub reconnect: Reconnect,
    /// Seed of the agent's own choices (backoff).
    pub seed: u64,
    /// permessage-deflate to offer, if any.
    pub deflate: Option<DeflateConfig>,
}

/// The test thread's handle on an agent.
#[derive(Clone)]
pub struct Agent {
    /// Index of its host in the fleet.
    pub host: usize,
    /// What it saw.
    pub log: Arc<Mutex<AgentLog>>,
    commands: UnboundedSender<Cmd>,
}

impl Agent {
    /// Sends a command (acted on at the agent host's next tick).
    pub fn send(&self, cmd: Cmd) {
        let _ = self.commands.send(cmd);
    }

    /// A copy of what it saw.
    pub fn snapshot(&self) -> AgentLog {
        lock(&self.log).clone()
    }

    /// Whether its latest connection is open.
    pub fn is_open(&self) -> bool {
        lock(&self.log).is_open()
    }

    /// The server key of its latest connection.
    pub fn key(&self) -> Option<ConnKey> {
        lock(&self.log).current().and_then(|c| c.key)
    }
}

type SpawnRequest = (AgentSpec, Arc<Mutex<AgentLog>>, UnboundedReceiver<Cmd>);

/// Client hosts and the agents running on them.
pub struct Fleet {
    /// Host names.
    pub hosts: Vec<String>,
    spawners: Vec<UnboundedSender<SpawnRequest>>,
    /// Every agent, in spawn order.
    pub agents: Vec<Agent>,
}

impl Fleet {
    /// Registers `count` client hosts named `c0`, `c1`, ...
    pub fn install(sim: &mut Sim, count: usize) -> Fleet {
        let mut fleet = Fleet {
            hosts: Vec::new(),
            spawners: Vec::new(),
            agents: Vec::new(),
        };
        for i in 0..count {
            let name = format!("c{i}");
            let (tx, mut rx) = unbounded_channel::<SpawnRequest>();
            sim.sim.client(name.clone(), async move {
                while let Some((spec, log, commands)) = rx.recv().await {
                    tokio::spawn(agent(spec, log, commands));
                }
                std::future::pending::<()>().await;
                Ok(())
            });
            fleet.hosts.push(name);
            fleet.spawners.push(tx);
        }
        fleet
    }

    /// Starts an agent on host `host`; returns its index.
    pub fn spawn(&mut self, host: usize, spec: AgentSpec) -> usize {
        let log = Arc::new(Mutex::new(AgentLog::default()));
        let (tx, rx) = unbounded_channel();
        self.spawners[host]
            .send((spec, log.clone(), rx))
            .expect("client host running");
        self.agents.push(Agent {
            host,
            log,
            commands: tx,
        });
        self.agents.len() - 1
    }

    /// Starts `per_host` agents on every host, each after a random delay
    /// of up to `stagger` and with a seed of its own (both from the sim's rng).
    pub fn spawn_staggered(&mut self, sim: &mut Sim, per_host: usize, stagger: Duration, reconnect: Reconnect) {
        self.spawn_staggered_with(sim, per_host, stagger, reconnect, |_| None);
    }

    /// [`Fleet::spawn_staggered`], with the `i`-th agent offering
    /// `deflate(i)`.
    pub fn spawn_staggered_with(
        &mut self,
        sim: &mut Sim,
        per_host: usize,
        stagger: Duration,
        reconnect: Reconnect,
        deflate: impl Fn(usize) -> Option<DeflateConfig>,
    ) {
        for host in 0..self.hosts.len() {
            for _ in 0..per_host {
                let start_after = sim.random_duration(Duration::ZERO, stagger);
                let seed = sim.rng.random();
                let deflate = deflate(self.agents.len());
                self.spawn(host, AgentSpec { start_after, reconnect, seed, deflate });
            }
        }
    }

    /// Whether every agent has an open connection.
    pub fn all_connected(&self) -> bool {
        self.agents.iter().all(|a| a.key().is_some())
    }

    /// Agents on a host.
    pub fn on_host(&self, host: usize) -> impl Iterator<Item = (usize, &Agent)> {
        self.agents
            .iter()
            .enumerate()
            .filter(move |(_, a)| a.host == host)
    }

    /// Every agent's log, for comparing runs.
    pub fn snapshot(&self) -> Vec<AgentLog> {
        self.agents.iter().map(Agent::snapshot).collect()
    }
}

/// How long one connection attempt may take (TCP connect and handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A client: connects, records every message and how the connection ended,
/// and obeys commands. It never asserts: the test thread does.
async fn agent(spec: AgentSpec, log: Arc<Mutex<AgentLog>>, mut commands: UnboundedReceiver<Cmd>) {
    if spec.reconnect == Reconnect::Auto {
        return auto_agent(spec, log, commands).await;
    }
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    tokio::time::sleep(spec.start_after).await;
    let mut stalled = false;
    let mut commands_open = true;
    loop {
        let (mut ws, local) = loop {
            match tokio::time::timeout(CONNECT_TIMEOUT, connect(PATH, spec.deflate)).await {
                Ok(Ok(connected)) => break connected,
                _ => {
                    lock(&log).failed_attempts += 1;
                    let backoff = Duration::from_millis(rng.random_range(100..400));
                    tokio::time::sleep(backoff).await;
                }
            }
        };
        lock(&log).conns.push(ConnLog {
            key: None,
            local,
            opened_at: now(),
            received: Vec::new(),
            closed: None,
        });
        loop {
            // `biased`: tokio's default branch order is random, and the
            // same seed must give the same run.
            tokio::select! {
                biased;
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(Cmd::Send(text)) => { let _ = ws.send(text); }
                    Some(Cmd::Close) => { let _ = ws.close(1000u16, ""); }
                    Some(Cmd::Stall) => stalled = true,
                    Some(Cmd::Resume) => stalled = false,
                    Some(Cmd::Reconnect) => {}
                    None => commands_open = false,
                },
                message = ws.recv(), if !stalled => match message {
                    Some(message) => {
                        let text = message.as_text().unwrap_or("<binary>").to_owned();
                        let mut log = lock(&log);
                        let conn = log.conns.last_mut().expect("pushed above");
                        match (conn.key, parse_hello(&text)) {
                            (None, Some(key)) => conn.key = Some(key),
                            _ => conn.received.push((text, now())),
                        }
                    }
                    None => {
                        let code = ws.close_status().map_or(0, |(code, _)| code);
                        lock(&log).conns.last_mut().expect("pushed above").closed = Some((code, now()));
                        break;
                    }
                },
            }
        }
        drop(ws);
        // Reconnect::Auto agents are `auto_agent`.
        loop {
            match commands.recv().await {
                Some(Cmd::Reconnect) => break,
                Some(Cmd::Resume) => stalled = false,
                Some(Cmd::Stall) => stalled = true,
                Some(_) => {}
                None => return,
            }
        }
    }
}

/// The backoff of agents that reconnect by themselves: 100-200 ms after a
/// connection ends, then doubling per failed attempt (jittered by half),
/// up to 2 s.
pub const AUTO_BACKOFF: blaze_tokio::Backoff =
    blaze_tokio::Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(2), multiplier: 2.0, jitter: 0.5 };

/// A [`Reconnect::Auto`] agent: Blaze's own [`blaze_tokio::ReconnectingClient`]
/// does the reconnecting (seeded from the agent's seed, so a run replays).
async fn auto_agent(spec: AgentSpec, log: Arc<Mutex<AgentLog>>, mut commands: UnboundedReceiver<Cmd>) {
    use blaze_tokio::{ClientEvent, Connector, ReconnectingClient};
    tokio::time::sleep(spec.start_after).await;
    let local: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let connector: Connector<TokioIo<turmoil::net::TcpStream>> = {
        let local = local.clone();
        Box::new(move || {
            let local = local.clone();
            Box::pin(async move {
                let stream = turmoil::net::TcpStream::connect((SERVER, PORT)).await?;
                *lock(&local) = Some(stream.local_addr()?);
                Ok(TokioIo(stream))
            })
        })
    };
    let url = WsUrl::parse(&format!("ws://{SERVER}:{PORT}{PATH}")).expect("a valid URL");
    // The client's own heartbeat: a partition is noticed from this side
    // too (within PING_INTERVAL + PONG_TIMEOUT), not only when a write fails.
    let mut options = ClientOptions::default().config(
        WsConfig::default()
            .ping_interval(Some(PING_INTERVAL))
            .pong_timeout(PONG_TIMEOUT)
            .handshake_timeout(HANDSHAKE_TIMEOUT),
    );
    if let Some(deflate) = spec.deflate {
        options = options.deflate(deflate);
    }
    let mut client = ReconnectingClient::new(TokioRuntime, url, options, connector, AUTO_BACKOFF, spec.seed)
        .connect_timeout(CONNECT_TIMEOUT);
    let mut stalled = false;
    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv(), if commands_open => match cmd {
                Some(Cmd::Send(text)) => { let _ = client.send(text); }
                // Ends this connection; the client reconnects by itself.
                Some(Cmd::Close) => { if let Some(ws) = client.stream() { let _ = ws.close(1000u16, ""); } }
                Some(Cmd::Stall) => stalled = true,
                Some(Cmd::Resume) => stalled = false,
                Some(Cmd::Reconnect) => {}
                None => commands_open = false,
            },
            event = client.next(), if !stalled => match event {
                Some(ClientEvent::Connected) => {
                    let local = lock(&local).expect("the connector recorded the address");
                    lock(&log).conns.push(ConnLog { key: None, local, opened_at: now(), received: Vec::new(), closed: None });
                }
                Some(ClientEvent::Message(message)) => {
                    let text = message.as_text().unwrap_or("<binary>").to_owned();
                    let mut log = lock(&log);
                    let conn = log.conns.last_mut().expect("connected first");
                    match (conn.key, parse_hello(&text)) {
                        (None, Some(key)) => conn.key = Some(key),
                        _ => conn.received.push((text, now())),
                    }
                }
                Some(ClientEvent::Disconnected { code, .. }) => {
                    lock(&log).conns.last_mut().expect("connected first").closed = Some((code, now()));
                }
                Some(ClientEvent::ConnectFailed { .. }) => lock(&log).failed_attempts += 1,
                Some(_) => {}
                None => return,
            },
        }
    }
}

fn parse_hello(text: &str) -> Option<ConnKey> {
    let rest = text.strip_prefix("id:")?;
    let (generation, id) = rest.split_once(':')?;
    Some((generation.parse().ok()?, id.parse().ok()?))
}

// ---------------------------------------------------------------------------
// Raw TCP clients (for the handshake and close timeouts)
// ---------------------------------------------------------------------------

/// A well-formed upgrade request.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {SERVER}:{PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Runs a future on a client host of its own (for one-off raw clients).
pub fn raw_client<F>(sim: &mut Sim, name: &str, f: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    sim.sim.client(name.to_owned(), async move {
        f.await;
        std::future::pending::<()>().await;
        Ok(())
    });
}

// ---------------------------------------------------------------------------
// Checks shared by the scenarios
// ---------------------------------------------------------------------------

/// Checks that `received` is a prefix of `expected` (nothing lost in the
/// middle, nothing duplicated, reordered or invented); returns whether it
/// is all of it.
pub fn check_prefix(who: &str, received: &[&str], expected: &[String]) -> bool {
    assert!(
        received.len() <= expected.len(),
        "{who}: received {} messages, the server queued {} (extra: {:?})",
        received.len(),
        expected.len(),
        &received[expected.len()..received.len().min(expected.len() + 5)]
    );
    for (i, (got, want)) in received.iter().zip(expected).enumerate() {
        assert_eq!(
            got, want,
            "{who}: message {i} differs (a message was lost, duplicated or reordered)"
        );
    }
    received.len() == expected.len()
}

/// Checks that the client received exactly what the server queued for it.
pub fn check_exact(who: &str, received: &[&str], expected: &[String]) {
    assert!(
        check_prefix(who, received, expected),
        "{who}: received {} of the {} messages queued for it; first missing: {:?}",
        received.len(),
        expected.len(),
        expected.get(received.len())
    );
}

/// A sequence of `n` broadcast texts: `b:0`, `b:1`, ...
pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}:{i}")).collect()
}

/// Background traffic from the orchestrator: a broadcast (`b:<n>`) or a
/// publish to a random topic (`p:<topic>:<n>`) every few ticks, while the
/// simulation runs.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// The next message number.
    pub next: usize,
    /// Topics to publish to (none: broadcasts only).
    pub topics: Vec<String>,
    /// Smallest and largest gap between two messages.
    pub gap: (Duration, Duration),
    next_at: Duration,
}

impl Traffic {
    /// Broadcasts only, every `lo..=hi`.
    pub fn new(lo: Duration, hi: Duration) -> Traffic {
        Traffic {
            next: 0,
            topics: Vec::new(),
            gap: (lo, hi),
            next_at: Duration::ZERO,
        }
    }

    /// Also publishes to these topics (one message in three).
    pub fn with_topics(mut self, topics: impl IntoIterator<Item = String>) -> Traffic {
        self.topics = topics.into_iter().collect();
        self
    }

    fn send_due(&mut self, sim: &mut Sim, server: &Server) {
        while sim.now() >= self.next_at {
            let n = self.next;
            self.next += 1;
            if !self.topics.is_empty() && sim.rng.random_range(0..3) == 0 {
                let topic = self.topics[sim.rng.random_range(0..self.topics.len())].clone();
                server.publish(&topic, format!("p:{topic}:{n}"), sim.now());
            } else {
                server.broadcast(format!("b:{n}"), sim.now());
            }
            let gap = sim.random_duration(self.gap.0, self.gap.1);
            self.next_at = sim.now() + gap;
        }
    }

    /// Runs the simulation for `duration` with traffic.
    pub fn run_for(&mut self, sim: &mut Sim, server: &Server, duration: Duration) {
        let end = sim.now() + duration;
        while sim.now() < end {
            self.send_due(sim, server);
            sim.step();
        }
    }

    /// Runs with traffic until `done` holds; returns the time it took.
    pub fn run_until(
        &mut self,
        sim: &mut Sim,
        server: &Server,
        what: &str,
        limit: Duration,
        done: impl FnMut() -> bool,
    ) -> Duration {
        sim.run_until_with(what, limit, done, |sim| self.send_due(sim, server))
    }
}

//! What the cluster tests start: a real `redis-server` on a free loopback
//! port in a temp dir (killed on drop), and Blaze nodes each on its own
//! tokio runtime, so dropping one is a crash (its tasks stop without
//! running any cleanup).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blaze_redis::{RedisBackplane, RedisConfig};
use blaze_tokio::{App, Callbacks, Message, WsStream};

/// A `redis-server` of our own. Persistence is off (`--save ''
/// --appendonly no`): a restart comes back empty, like a crashed Redis.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
}

fn redis_binary() -> PathBuf {
    for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("redis-server not found: run scripts/install-test-deps.sh (apt-get install redis-server)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> RedisServer {
        let mut server = RedisServer { child: None, port: free_port(), dir: tempfile::tempdir().unwrap(), password };
        server.restart();
        server
    }

    /// `redis://[:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills it (SIGKILL: no goodbye to its clients beyond the TCP reset).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered,
    /// like a Redis stalled on a slow disk or swapped out.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// Starts it (again) on the same port, empty, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = Command::new(redis_binary());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        self.child = Some(command.spawn().expect("start redis-server"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
    }
}

/// The test app of every node: `/feed` (a path everyone is on; `join X`
/// joins topic X and answers `joined X`, `leave X` likewise), and
/// `/room/:room`, which joins its room on open and publishes what it gets
/// to it.
pub fn test_app() -> App {
    let app = App::new();
    app.ws(
        "/feed",
        Callbacks::new().on_message(|ws, text| {
            if let Some(topic) = text.strip_prefix("join ") {
                ws.join(topic);
                let _ = ws.send(format!("joined {topic}"));
            } else if let Some(topic) = text.strip_prefix("leave ") {
                ws.leave(topic);
                let _ = ws.send(format!("left {topic}"));
            }
        }),
    );
    app.ws(
        "/room/:room",
        Callbacks::new()
            .on_open(|ws| {
                if let Some(room) = ws.param("room") {
                    ws.join(room);
                }
            })
            .on_message(|ws, text| {
                if let Some(room) = ws.param("room") {
                    let _ = ws.publish_others(room, text);
                }
            }),
    );
    app
}

/// A Blaze node in the cluster, on its own runtime.
pub struct Node {
    pub addr: SocketAddr,
    pub app: App,
    pub backplane: RedisBackplane,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    pub async fn start(url: &str, config: RedisConfig) -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let url = url.to_owned();
        runtime.spawn(async move {
            let backplane = RedisBackplane::connect_with(&url, config).await.expect("connect to redis");
            let app = test_app();
            app.cluster(backplane.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let serving = app.clone();
            tokio::spawn(async move { serving.serve(listener).await });
            let _ = tx.send((addr, app, backplane));
        });
        let (addr, app, backplane) = rx.await.expect("node started");
        Node { addr, app, backplane, runtime: Some(runtime) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops the node as a crash would: its runtime goes, with every task
    /// (server, connections, backplane) dropped unpolled; nothing is
    /// removed from Redis.
    pub fn crash(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`eventually`] for an async check.
pub async fn eventually_async<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next text message, failing the test after `timeout`.
#[track_caller]
pub fn next_text(ws: &mut WsStream, timeout: Duration) -> impl std::future::Future<Output = String> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(timeout, ws.recv()).await {
            Ok(Some(Message::Text(text))) => text.as_str().to_owned(),
            Ok(other) => panic!("expected a text message at {caller}, got {other:?}"),
            Err(_) => panic!("no message within {timeout:?} at {caller}"),
        }
    }
}

/// Whether a message arrives within `wait` (for "nothing arrives").
pub async fn arrives_within(ws: &mut WsStream, wait: Duration) -> Option<Message> {
    tokio::time::timeout(wait, ws.recv()).await.ok().flatten()
}

/// A config with a short presence TTL and quick reconnects, for tests.
pub fn quick_config() -> RedisConfig {
    RedisConfig::default()
        .presence_ttl(Duration::from_secs(1))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

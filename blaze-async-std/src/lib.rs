//! # Blaze on async-std
//!
//! The same framework and API as `blaze-tokio`, on async-std: routes,
//! three handler styles, broadcast, heartbeats, backpressure, guards,
//! graceful shutdown and a client. Everything but the runtime glue is
//! shared through `blaze-server`.
//!
//! ```no_run
//! use blaze_async_std::{App, Callbacks};
//!
//! #[async_std::main]
//! async fn main() -> std::io::Result<()> {
//!     let app = App::new();
//!     app.ws("/echo", Callbacks::new().on_message(|ws, msg| { let _ = ws.send(msg); }));
//!     app.listen("127.0.0.1:9001").await
//! }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod async_std_rt;
mod ctrl_c;

use std::future::Future;
use std::io;
use std::ops::Deref;
use std::time::Duration;

pub use async_std_rt::{Accept, AsyncStdIo, AsyncStdRuntime};
pub use blaze_server::*;

use async_std_rt::AcceptLoop;

/// A Blaze application on async-std. Derefs to [`blaze_server::App`] for
/// routes, broadcast and statistics; adds serving and background tasks.
#[derive(Clone, Debug, Default)]
pub struct App {
    app: blaze_server::App,
}

impl Deref for App {
    type Target = blaze_server::App;
    fn deref(&self) -> &blaze_server::App {
        &self.app
    }
}

impl From<blaze_server::App> for App {
    /// Serves an app whose routes were built runtime-independently.
    fn from(app: blaze_server::App) -> App {
        App { app }
    }
}

impl App {
    /// An app with no routes.
    pub fn new() -> App {
        App::default()
    }

    /// Binds `addr` and serves until Ctrl-C or
    /// [`blaze_server::App::shutdown`], then shuts down gracefully (as
    /// `blaze_tokio::App::listen` does).
    pub async fn listen(&self, addr: impl async_std::net::ToSocketAddrs) -> io::Result<()> {
        let listener = async_std::net::TcpListener::bind(addr).await?;
        tracing::info!("listening on {}", listener.local_addr()?);
        let _ctrl_c = ctrl_c::shutdown_on_ctrl_c(self.shutdown_handle());
        self.serve(listener).await
    }

    /// Serves connections from any [`Accept`]or until shutdown. Background
    /// tasks from [`App::spawn`] still running once the connections have
    /// drained are stopped, and `serve` returns after they are dropped.
    pub async fn serve<A: Accept>(&self, listener: A) -> io::Result<()> {
        self.app.serve_with(AsyncStdRuntime, AcceptLoop::new(listener)).await
    }

    /// Runs a background task for the life of the server; it is stopped
    /// and awaited when `serve` shuts down (see
    /// [`blaze_server::App::spawn_with`]; to end cleanly instead, race it
    /// against [`blaze_server::App::shutdown_signal`]).
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.app.spawn_with(&AsyncStdRuntime, future);
    }
}

/// Sleeps without blocking a thread.
pub async fn delay(duration: Duration) {
    async_std::task::sleep(duration).await;
}

/// Connects to a WebSocket server at a `ws://` URL.
pub async fn connect(url: &str) -> Result<WsStream, ClientError> {
    connect_with_options(url, ClientOptions::default()).await
}

/// Connects with subprotocols, headers and limits.
pub async fn connect_with_options(url: &str, options: ClientOptions) -> Result<WsStream, ClientError> {
    let url = WsUrl::parse(url)?;
    let stream = async_std::net::TcpStream::connect((url.host.trim_matches(['[', ']']), url.port)).await?;
    let _ = stream.set_nodelay(true);
    blaze_server::connect_with(AsyncStdRuntime, AsyncStdIo(stream), &url, options).await
}

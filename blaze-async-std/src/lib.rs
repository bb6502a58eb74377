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
#[cfg(feature = "tls")]
pub mod tls;

use std::future::Future;
use std::io;
use std::ops::Deref;
#[cfg(feature = "tls")]
use std::sync::Arc;
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

    /// Binds `addr` and serves `wss://` (and HTTPS routes) with `tls`
    /// until shutdown; each TLS handshake runs in its connection's task
    /// under `handshake_timeout`.
    #[cfg(feature = "tls")]
    pub async fn listen_tls(
        &self,
        addr: impl async_std::net::ToSocketAddrs,
        tls: impl Into<tls::TlsAcceptor>,
    ) -> io::Result<()> {
        let listener = async_std::net::TcpListener::bind(addr).await?;
        tracing::info!("listening on {} (TLS)", listener.local_addr()?);
        self.serve_tls(listener, tls).await
    }

    /// Serves connections from any [`Accept`]or until shutdown. Background
    /// tasks from [`App::spawn`] still running once the connections have
    /// drained are stopped, and `serve` returns after they are dropped.
    pub async fn serve<A: Accept>(&self, listener: A) -> io::Result<()> {
        self.serve_accepting(listener, Plain).await
    }

    /// Serves `wss://` from any [`Accept`]or until shutdown: each accepted
    /// stream's TLS handshake runs in the connection's own task under
    /// `handshake_timeout`, never in the accept loop.
    #[cfg(feature = "tls")]
    pub async fn serve_tls<A: Accept>(&self, listener: A, tls: impl Into<tls::TlsAcceptor>) -> io::Result<()> {
        self.serve_accepting(listener, tls.into()).await
    }

    async fn serve_accepting<A: Accept, C: Acceptor<AsyncStdIo<A::Stream>>>(
        &self,
        listener: A,
        acceptor: C,
    ) -> io::Result<()> {
        self.app.serve_with_acceptor(AsyncStdRuntime, AcceptLoop::new(listener), acceptor).await
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

/// Connects to a WebSocket server at a `ws://` URL, or `wss://` with the
/// `tls` feature (Mozilla's roots, hostname verified; see
/// `ClientOptions::tls`, feature `tls`, for others).
pub async fn connect(url: &str) -> Result<WsStream, ClientError> {
    connect_with_options(url, ClientOptions::default()).await
}

/// Connects with subprotocols, headers and limits.
pub async fn connect_with_options(url: &str, options: ClientOptions) -> Result<WsStream, ClientError> {
    let url = WsUrl::parse(url)?;
    let stream = async_std::net::TcpStream::connect((url.host.trim_matches(['[', ']']), url.port)).await?;
    let _ = stream.set_nodelay(true);
    if url.secure {
        #[cfg(feature = "tls")]
        return tls::connect(stream, &url, options).await;
        #[cfg(not(feature = "tls"))]
        return Err(ClientError::InvalidUrl(format!("{} needs the `tls` feature of blaze-async-std", url.authority)));
    }
    blaze_server::connect_with(AsyncStdRuntime, AsyncStdIo(stream), &url, options).await
}

/// Connects to a `wss://` URL trusting the roots in `config` (a private
/// or test CA: [`tls::client_config_from_pem`]).
#[cfg(feature = "tls")]
pub async fn connect_tls(url: &str, config: Arc<tls::rustls::ClientConfig>) -> Result<WsStream, ClientError> {
    connect_with_options(url, ClientOptions::default().tls(config)).await
}

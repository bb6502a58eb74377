//! # Blaze on tokio
//!
//! A WebSocket server framework: routes with path parameters, three
//! handler styles, broadcast to paths and topics framed once, heartbeats,
//! backpressure, guards, graceful shutdown, and a client.
//!
//! ```no_run
//! use blaze_tokio::{App, Callbacks};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let app = App::new();
//!     app.ws("/chat", Callbacks::new()
//!         .on_open(|ws| { let _ = ws.send("Welcome!"); })
//!         .on_message(|ws, msg| { let _ = ws.broadcast(format!("{}: {msg}", ws.id())); }));
//!     app.listen("127.0.0.1:8080").await
//! }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod guide;
#[cfg(feature = "tls")]
pub mod tls;
mod tokio_rt;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "hyper")]
pub mod hyper;

use std::future::Future;
use std::io;
use std::ops::Deref;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

pub use blaze_server::*;
pub use tokio_rt::{Accept, TokioIo, TokioRuntime};

use tokio_rt::ChannelListener;

/// A Blaze application on tokio. Derefs to [`blaze_server::App`] for
/// routes, broadcast and statistics; adds serving and background tasks.
/// Cheap to clone: every clone is the same app.
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

    /// Binds `addr` and serves until Ctrl-C or [`blaze_server::App::shutdown`],
    /// then shuts down gracefully.
    pub async fn listen(&self, addr: impl tokio::net::ToSocketAddrs) -> io::Result<()> {
        self.listen_accepting(addr, Plain).await
    }

    /// Binds `addr` and serves `wss://` (and HTTPS routes) with `tls` until
    /// Ctrl-C or shutdown, as [`App::listen`] does. Each connection's TLS
    /// handshake runs in its own task under `handshake_timeout`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = blaze_tokio::App::new();
    /// let tls = blaze_tokio::tls::TlsConfig::from_pem_files("cert.pem", "key.pem")?;
    /// app.listen_tls("0.0.0.0:443", tls).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub async fn listen_tls(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
        tls: impl Into<tls::TlsAcceptor>,
    ) -> io::Result<()> {
        self.listen_accepting(addr, tls.into()).await
    }

    async fn listen_accepting<C>(&self, addr: impl tokio::net::ToSocketAddrs, acceptor: C) -> io::Result<()>
    where
        C: Acceptor<TokioIo<tokio::net::TcpStream>>,
    {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!("listening on {}", listener.local_addr()?);
        let shutdown = self.shutdown_handle();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shutdown.shutdown();
            }
        });
        let result = self.serve_accepting(listener, acceptor).await;
        ctrl_c.abort();
        result
    }

    /// Serves connections from any [`Accept`]or (a bound
    /// `tokio::net::TcpListener`, a Unix listener, a turmoil wrapper)
    /// until shutdown. Background tasks from [`App::spawn`] still running
    /// once the connections have drained are stopped, and `serve` returns
    /// after they are dropped.
    pub async fn serve<A: Accept>(&self, listener: A) -> io::Result<()> {
        self.serve_accepting(listener, Plain).await
    }

    /// Serves `wss://` from any [`Accept`]or until shutdown: each accepted
    /// stream's TLS handshake (a [`tls::TlsConfig`] or your own
    /// `tokio_rustls::TlsAcceptor`) runs in the connection's own task
    /// under `handshake_timeout`, never in the accept loop.
    #[cfg(feature = "tls")]
    pub async fn serve_tls<A: Accept>(&self, listener: A, tls: impl Into<tls::TlsAcceptor>) -> io::Result<()> {
        self.serve_accepting(listener, tls.into()).await
    }

    async fn serve_accepting<A: Accept, C: Acceptor<TokioIo<A::Stream>>>(
        &self,
        listener: A,
        acceptor: C,
    ) -> io::Result<()> {
        self.app.serve_with_acceptor(TokioRuntime, ChannelListener::spawn(listener), acceptor).await
    }

    /// Runs a background task for the life of the server (a price ticker, a
    /// cleanup loop); it is stopped and awaited when `serve` shuts down
    /// (see [`blaze_server::App::spawn_with`]). To end cleanly instead,
    /// race its loop against [`blaze_server::App::shutdown_signal`]:
    ///
    /// ```
    /// # async fn demo(app: blaze_tokio::App) {
    /// let ticker = app.clone();
    /// let stop = app.shutdown_signal();
    /// app.spawn(async move {
    ///     tokio::pin!(stop);
    ///     loop {
    ///         tokio::select! {
    ///             _ = &mut stop => break,
    ///             _ = blaze_tokio::delay(std::time::Duration::from_secs(1)) => {
    ///                 let _ = ticker.broadcast("/market", "tick");
    ///             }
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.app.spawn_with(&TokioRuntime, future);
    }
}

/// The workspace README's Rust snippets, compiled as doctests by
/// `cargo test -p blaze-tokio --doc` (its `rust,no_run` blocks must build;
/// `rust,ignore` marks fragments).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Sleeps without blocking a thread.
pub async fn delay(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Connects to a WebSocket server at a `ws://` URL, or `wss://` with the
/// `tls` feature (Mozilla's roots, hostname verified; see
/// `ClientOptions::tls`, feature `tls`, for others).
///
/// ```no_run
/// # async fn demo() -> Result<(), blaze_tokio::ClientError> {
/// let mut ws = blaze_tokio::connect("ws://127.0.0.1:9001/echo").await?;
/// ws.send("hello").unwrap();
/// let reply = ws.recv().await;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<WsStream, ClientError> {
    connect_with_options(url, ClientOptions::default()).await
}

/// Connects with subprotocols, headers and limits.
pub async fn connect_with_options(url: &str, options: ClientOptions) -> Result<WsStream, ClientError> {
    let url = WsUrl::parse(url)?;
    let stream = tokio::net::TcpStream::connect((url.host.trim_matches(['[', ']']), url.port)).await?;
    let _ = stream.set_nodelay(true);
    if url.secure {
        #[cfg(feature = "tls")]
        return tls::connect(stream, &url, options).await;
        #[cfg(not(feature = "tls"))]
        return Err(ClientError::InvalidUrl(format!("{} needs the `tls` feature of blaze-tokio", url.authority)));
    }
    blaze_server::connect_with(TokioRuntime, TokioIo(stream), &url, options).await
}

/// Connects to a `wss://` URL trusting the roots in `config` (a private
/// or test CA: [`tls::client_config_from_pem`]).
#[cfg(feature = "tls")]
pub async fn connect_tls(url: &str, config: Arc<tls::rustls::ClientConfig>) -> Result<WsStream, ClientError> {
    connect_with_options(url, ClientOptions::default().tls(config)).await
}

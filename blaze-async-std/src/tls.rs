//! `wss://` on async-std (feature `tls`): the server's TLS handshake as an
//! [`Acceptor`] run in each connection's own task, and the client's TLS
//! connect, both over `futures-rustls`. Configuration is shared with every
//! runtime ([`blaze_server::tls`], re-exported here).

use std::io;

use blaze_server::{Acceptor, BoxFuture, ClientError, ClientOptions, WsStream, WsUrl};
use futures_io::{AsyncRead, AsyncWrite};

pub use blaze_server::tls::*;

use crate::{AsyncStdIo, AsyncStdRuntime};

/// The server's TLS step: each accepted stream's handshake, run by the
/// server in the connection's task under `handshake_timeout`. Built from
/// a [`TlsConfig`] or a `futures_rustls::TlsAcceptor`.
#[derive(Clone)]
pub struct TlsAcceptor(futures_rustls::TlsAcceptor);

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl From<TlsConfig> for TlsAcceptor {
    fn from(config: TlsConfig) -> TlsAcceptor {
        TlsAcceptor(futures_rustls::TlsAcceptor::from(config.server_config().clone()))
    }
}

impl From<futures_rustls::TlsAcceptor> for TlsAcceptor {
    fn from(acceptor: futures_rustls::TlsAcceptor) -> TlsAcceptor {
        TlsAcceptor(acceptor)
    }
}

impl<S> Acceptor<AsyncStdIo<S>> for TlsAcceptor
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Io = AsyncStdIo<futures_rustls::server::TlsStream<S>>;

    fn accept(&self, io: AsyncStdIo<S>) -> BoxFuture<io::Result<Self::Io>> {
        let handshake = self.0.accept(io.0);
        Box::pin(async move { handshake.await.map(AsyncStdIo) })
    }
}

/// The TLS handshake of a `wss://` client over a connected stream, then
/// the WebSocket handshake.
pub(crate) async fn connect<S>(stream: S, url: &WsUrl, options: ClientOptions) -> Result<WsStream, ClientError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let connector = futures_rustls::TlsConnector::from(client_config(&options));
    let name = server_name(url)?;
    let stream = client_handshake(&AsyncStdRuntime, &options, connector.connect(name, stream)).await?;
    blaze_server::connect_with(AsyncStdRuntime, AsyncStdIo(stream), url, options).await
}

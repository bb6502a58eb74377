//! TLS for `wss://` (feature `tls`): the server's configuration from PEM
//! files or a `rustls::ServerConfig`, and the client's rustls
//! configuration (Mozilla's roots from `webpki-roots`, or roots of your
//! own), both with the `ring` provider and ALPN `http/1.1`.
//!
//! Only configuration and error mapping live here, written once; the TLS
//! streams are the adapters' (`tokio-rustls`, `futures-rustls`), and the
//! server runs their handshake through an [`Acceptor`](crate::Acceptor) in
//! each connection's own task.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use rustls;

use crate::client::{ClientError, ClientOptions, WsUrl};
use crate::runtime::{timeout, Runtime};

/// WebSocket over TLS is HTTP/1.1 (RFC 6455 §4.1: the handshake is an
/// HTTP/1.1 Upgrade); offering `h2` would make browsers speak HTTP/2.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The PEM input holds no certificate.
    #[error("no certificate in the PEM input")]
    NoCertificate,
    /// The PEM input is malformed, or holds no private key.
    #[error("PEM: {0}")]
    Pem(rustls::pki_types::pem::Error),
    /// rustls refused the certificate, key or settings.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    // An explicit provider: nothing depends on a process-wide default
    // being installed, whichever providers the dependency graph enables.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's TLS configuration for `listen_tls`/`serve_tls`: a certificate
/// chain and its key. Cheap to clone.
///
/// ```no_run
/// # fn demo() -> Result<(), blaze_server::tls::TlsError> {
/// let tls = blaze_server::tls::TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<TlsConfig, TlsError> {
        let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Io { path: path.to_owned(), source });
        TlsConfig::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// A certificate chain (leaf first) and a private key, PEM-encoded.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsConfig, TlsError> {
        let certs = CertificateDer::pem_slice_iter(cert_chain).collect::<Result<Vec<_>, _>>().map_err(TlsError::Pem)?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(TlsError::Pem)?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(TlsConfig::from(config))
    }

    /// The rustls configuration the server uses.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }
}

impl From<ServerConfig> for TlsConfig {
    /// Your own rustls configuration (client certificates, resumption,
    /// several certificates by name); ALPN is set to `http/1.1` if it
    /// offers nothing.
    fn from(mut config: ServerConfig) -> TlsConfig {
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        }
        TlsConfig { server: Arc::new(config) }
    }
}

impl From<Arc<ServerConfig>> for TlsConfig {
    /// A shared rustls configuration, used as it is (set its ALPN to
    /// `http/1.1` yourself).
    fn from(server: Arc<ServerConfig>) -> TlsConfig {
        TlsConfig { server }
    }
}

/// The client configuration `wss://` uses unless [`ClientOptions::tls`]
/// sets another: Mozilla's root certificates (`webpki-roots`), hostname
/// verification, ALPN `http/1.1`.
pub fn default_client_config() -> Arc<ClientConfig> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            client_config_with_roots(roots)
        })
        .clone()
}

/// A client configuration trusting only `roots`, with hostname
/// verification and ALPN `http/1.1`.
pub fn client_config_with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Arc::new(config)
}

/// A client configuration trusting only the PEM certificates in
/// `ca_certs` (a private or test CA), with hostname verification.
pub fn client_config_from_pem(ca_certs: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_certs) {
        roots.add(cert.map_err(TlsError::Pem)?)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(client_config_with_roots(roots))
}

/// The name the server's certificate must be valid for: the URL's host
/// (an IP literal must appear among the certificate's IP addresses).
pub fn server_name(url: &WsUrl) -> Result<ServerName<'static>, ClientError> {
    ServerName::try_from(url.host.trim_matches(['[', ']']).to_owned())
        .map_err(|_| ClientError::InvalidUrl(format!("not a valid TLS server name: {}", url.host)))
}

/// The configuration a `wss://` connection uses: the options' or the default.
pub fn client_config(options: &ClientOptions) -> Arc<ClientConfig> {
    options.tls.clone().unwrap_or_else(default_client_config)
}

/// Runs a client's TLS handshake (`handshake`, an adapter's connect
/// future) under the options' `handshake_timeout`, typing its failure: a
/// certificate the client refuses is [`ClientError::Tls`].
pub async fn client_handshake<R: Runtime, T>(
    rt: &R,
    options: &ClientOptions,
    handshake: impl Future<Output = io::Result<T>>,
) -> Result<T, ClientError> {
    let deadline = blaze_proto::deadline_after(rt.now(), options.config.handshake_timeout);
    match timeout(rt, deadline, handshake).await {
        None => Err(ClientError::Timeout),
        Some(Ok(stream)) => Ok(stream),
        Some(Err(err)) => Err(tls_error(err)),
    }
}

/// The rustls error inside an I/O error from a TLS stream, if any
/// (tokio-rustls and futures-rustls wrap them as `InvalidData`).
fn tls_error(err: io::Error) -> ClientError {
    match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => ClientError::Tls(tls.clone()),
        None => ClientError::Io(err),
    }
}

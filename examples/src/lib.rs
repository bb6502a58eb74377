//! What the example binaries share: their `--tls-cert FILE --tls-key FILE`
//! flags, which serve `wss://` (and `https://`) when the examples are
//! built with the `tls` feature:
//!
//! `cargo run -p blaze-examples --features tls --bin echo -- --tls-cert cert.pem --tls-key key.pem`

use std::io;

pub mod chat_room;

/// The value after `--name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[cfg(feature = "tls")]
type Tls = blaze_server::tls::TlsConfig;
/// Without the `tls` feature there is no TLS configuration to hold.
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

/// The TLS configuration `--tls-cert FILE --tls-key FILE` ask for, if any;
/// exits with a message if they are incomplete, unreadable, or the
/// examples were built without the `tls` feature.
pub fn tls_from_args() -> Option<Tls> {
    let (cert, key) = match (arg("--tls-cert"), arg("--tls-key")) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (cert, key),
        _ => exit("--tls-cert FILE and --tls-key FILE go together"),
    };
    #[cfg(feature = "tls")]
    return match blaze_server::tls::TlsConfig::from_pem_files(&cert, &key) {
        Ok(tls) => Some(tls),
        Err(err) => exit(&format!("TLS: {err}")),
    };
    #[cfg(not(feature = "tls"))]
    {
        let _ = (cert, key);
        exit("built without TLS: add `--features tls` to cargo build/run")
    }
}

fn exit(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

/// `ws` or `wss`, for the banner.
pub fn scheme(tls: &Option<Tls>) -> &'static str {
    if tls.is_some() {
        "wss"
    } else {
        "ws"
    }
}

/// Serves `app` on tokio at `addr`, over TLS if `tls` is given.
pub async fn listen_tokio(app: &blaze_tokio::App, addr: &str, tls: Option<Tls>) -> io::Result<()> {
    match tls {
        None => app.listen(addr).await,
        #[cfg(feature = "tls")]
        Some(tls) => app.listen_tls(addr, tls).await,
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    }
}

/// Serves `app` on async-std at `addr`, over TLS if `tls` is given.
pub async fn listen_async_std(app: &blaze_async_std::App, addr: &str, tls: Option<Tls>) -> io::Result<()> {
    match tls {
        None => app.listen(addr).await,
        #[cfg(feature = "tls")]
        Some(tls) => app.listen_tls(addr, tls).await,
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    }
}

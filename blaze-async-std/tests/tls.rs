//! wss on async-std (futures-rustls): our client and server over TLS with
//! a throwaway CA made at test time, an untrusted certificate refused, a
//! stalled TLS handshake holding nobody up. The same seam as on tokio
//! (blaze-tokio/tests/tls.rs has the full set).

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_async_std::tls::rustls::{self, CertificateError};
use blaze_async_std::tls::{client_config_from_pem, TlsConfig};
use blaze_async_std::{App, Callbacks, ClientError, Message, WsConfig, WsStream};

const WAIT: Duration = Duration::from_secs(20);

/// A fresh CA (named `ca_name`) and the PEM leaf certificate and key it
/// signed for `names`; returns (CA, certificate, key).
fn pki(ca_name: &str, names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    client_config_from_pem(ca_pem.as_bytes()).unwrap()
}

async fn serve_tls(app: &App, cert: &str, key: &str) -> (SocketAddr, async_std::task::JoinHandle<std::io::Result<()>>) {
    let tls = TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    (addr, async_std::task::spawn(async move { app.serve_tls(listener, tls).await }))
}

fn echo_app(config: WsConfig) -> App {
    let app = App::new();
    app.config(config.max_message_size(8 << 20).max_frame_size(8 << 20).max_backpressure(16 << 20));
    app.ws(
        "/echo",
        Callbacks::new()
            .on_message(|ws, text| {
                let _ = ws.send(text);
            })
            .on_binary(|ws, data| {
                let _ = ws.send(data);
            }),
    );
    app
}

async fn connect(url: &str, ca_pem: &str) -> Result<WsStream, ClientError> {
    let options = blaze_async_std::ClientOptions::default()
        .tls(client_config(ca_pem))
        .config(WsConfig::default().ping_interval(None).max_message_size(8 << 20).max_frame_size(8 << 20));
    async_std::future::timeout(WAIT, blaze_async_std::connect_with_options(url, options))
        .await
        .expect("connect in time")
}

async fn recv(ws: &mut WsStream) -> Option<Message> {
    async_std::future::timeout(WAIT, ws.recv()).await.expect("a message in time")
}

#[async_std::test]
async fn our_client_echoes_over_wss() {
    let (ca, cert, key) = pki("async-std test CA", &["localhost", "127.0.0.1"]);
    let app = echo_app(WsConfig::default());
    let (addr, server) = serve_tls(&app, &cert, &key).await;
    let mut ws = connect(&format!("wss://localhost:{}/echo", addr.port()), &ca).await.unwrap();
    ws.send("hello").unwrap();
    assert_eq!(recv(&mut ws).await, Some(Message::Text("hello".into())));
    // More than the socket and rustls buffers hold at once.
    let payload: Vec<u8> = (0..(2 << 20)).map(|i| (i % 251) as u8).collect();
    ws.send_binary(payload.clone()).unwrap();
    match recv(&mut ws).await {
        Some(Message::Binary(data)) => assert!(data == payload, "the 2 MiB message came back different"),
        other => panic!("expected the 2 MiB message back, got {:?}", other.is_some()),
    }
    let mut by_ip = connect(&format!("wss://{addr}/echo"), &ca).await.unwrap();
    by_ip.send("by ip").unwrap();
    assert_eq!(recv(&mut by_ip).await, Some(Message::Text("by ip".into())));
    app.shutdown();
    server.await.unwrap();
}

#[async_std::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let (_, cert, key) = pki("the server's CA", &["localhost"]);
    let (other_ca, _, _) = pki("another CA", &["localhost"]);
    let app = echo_app(WsConfig::default());
    let (addr, server) = serve_tls(&app, &cert, &key).await;
    let result = connect(&format!("wss://localhost:{}/echo", addr.port()), &other_ca).await;
    assert!(
        matches!(result, Err(ClientError::Tls(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)))),
        "{:?}",
        result.err()
    );
    app.shutdown();
    server.await.unwrap();
}

fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    match stream.read(&mut [0; 64]) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent bytes to a client that never sent a ClientHello"),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[async_std::test]
async fn a_stalled_tls_handshake_delays_nobody_else_and_ends_at_the_timeout() {
    let (ca, cert, key) = pki("async-std test CA", &["localhost"]);
    let timeout = Duration::from_secs(5);
    let app = echo_app(WsConfig::default().handshake_timeout(timeout));
    let (addr, server) = serve_tls(&app, &cert, &key).await;
    let started = Instant::now();
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    stalled.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut ws = connect(&format!("wss://localhost:{}/echo", addr.port()), &ca).await.unwrap();
    ws.send("not held up").unwrap();
    assert_eq!(recv(&mut ws).await, Some(Message::Text("not held up".into())));
    // Served while the stalled handshake still waits (a handshake in the
    // accept loop would have held this client until the timeout).
    let mut stalled = async_std::task::spawn_blocking(move || {
        assert!(!closed_by_server(&mut stalled), "the stalled handshake ended before the other client was served");
        stalled
    })
    .await;
    assert!(started.elapsed() < timeout, "the other client waited {:?}", started.elapsed());
    let closed = async_std::task::spawn_blocking(move || {
        while started.elapsed() < Duration::from_secs(20) {
            if closed_by_server(&mut stalled) {
                return Some(started.elapsed());
            }
        }
        None
    })
    .await
    .expect("the stalled connection was never closed");
    assert!(closed >= timeout - Duration::from_millis(50), "closed before the timeout: {closed:?}");
    assert!(closed < Duration::from_secs(15), "closed too late: {closed:?}");
    app.shutdown();
    server.await.unwrap();
}

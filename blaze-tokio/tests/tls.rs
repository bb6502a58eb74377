//! wss: our client and server over TLS with a throwaway CA made at test
//! time (rcgen); certificates the client must refuse; a TLS handshake that
//! never starts holding nobody else up.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_tokio::tls::rustls::{self, CertificateError};
use blaze_tokio::tls::{client_config_from_pem, TlsConfig};
use blaze_tokio::{App, Bytes, Callbacks, ClientError, Message, Response, WsConfig};
use common::recv_within;

/// A CA and a leaf certificate it signed, all PEM.
struct TestPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// A fresh CA and a leaf certificate for `names` (DNS names or IPs).
fn pki(names: &[&str]) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // A name of its own: a CA named like another would be "found" and fail
    // as a bad signature instead of an unknown issuer.
    static CAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("Blaze test CA {n}"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    TestPki { ca_pem: ca.pem(), cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem() }
}

fn tls_config(pki: &TestPki) -> TlsConfig {
    TlsConfig::from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap()
}

fn client_config(pki: &TestPki) -> Arc<rustls::ClientConfig> {
    client_config_from_pem(pki.ca_pem.as_bytes()).unwrap()
}

fn echo_app(config: WsConfig) -> App {
    let app = App::new();
    app.config(config.max_message_size(16 << 20).max_frame_size(16 << 20).max_backpressure(32 << 20));
    app.get("/hello", |_req| Response::text(200, "hello over https"));
    app.ws(
        "/room",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.broadcast(text);
        }),
    );
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

/// Serves `app` over TLS on 127.0.0.1:0.
async fn serve_tls(app: &App, tls: TlsConfig) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    (addr, tokio::spawn(async move { app.serve_tls(listener, tls).await }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_echoes_over_wss_by_name_and_by_ip() {
    let pki = pki(&["localhost", "127.0.0.1"]);
    let app = echo_app(WsConfig::default());
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    for url in [format!("wss://localhost:{}/echo", addr.port()), format!("wss://{addr}/echo")] {
        let mut ws = blaze_tokio::connect_tls(&url, client_config(&pki)).await.expect(&url);
        ws.send("hello").unwrap();
        assert_eq!(recv_within(&mut ws).await, Some(Message::Text("hello".into())));
        ws.send_binary(vec![1u8, 2, 3]).unwrap();
        assert_eq!(recv_within(&mut ws).await, Some(Message::Binary(Bytes::from_static(&[1, 2, 3]))));
    }
    app.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_cross_tls_whole() {
    // Larger than the socket buffers and rustls's own: the last bytes of a
    // message wait in the TLS stream until a flush once the socket drains.
    let pki = pki(&["localhost"]);
    let app = echo_app(WsConfig::default());
    // A small kernel send buffer: the socket is full while rustls still
    // holds the end of a message.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(8 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn({
        let (app, tls) = (app.clone(), tls_config(&pki));
        async move { app.serve_tls(listener, tls).await }
    });
    let options = blaze_tokio::ClientOptions::default()
        .tls(client_config(&pki))
        .config(WsConfig::default().ping_interval(None).max_message_size(16 << 20).max_frame_size(16 << 20));
    let url = format!("wss://localhost:{}/echo", addr.port());
    let mut ws = blaze_tokio::connect_with_options(&url, options).await.unwrap();
    for size in [70_000, 200_000, 1 << 20, 4 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ws.send_binary(payload.clone()).unwrap();
        match common::recv_within_for(&mut ws, Duration::from_secs(20)).await {
            Some(Message::Binary(data)) => assert!(data == payload, "{size} bytes came back different"),
            other => panic!("expected {size} bytes back, got {:?}", other.map(|m| format!("{m:?}").len())),
        }
    }
    app.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_wss_client() {
    let pki = pki(&["localhost"]);
    let app = echo_app(WsConfig::default());
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    let url = format!("wss://localhost:{}/room", addr.port());
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(blaze_tokio::connect_tls(&url, client_config(&pki)).await.unwrap());
    }
    assert!(common::eventually(Duration::from_secs(5), || app.connection_count("/room") == 3).await);
    clients[0].send("to all").unwrap();
    for ws in &mut clients {
        assert_eq!(recv_within(ws).await, Some(Message::Text("to all".into())));
    }
    app.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_route_answers_and_alpn_is_http_1_1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = pki(&["localhost"]);
    let app = echo_app(WsConfig::default());
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    // A client offering h2 first, as browsers do: the server must pick http/1.1.
    let mut config = (*client_config(&pki)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    // The server closes after the response (close_notify, then FIN).
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello over https"), "{response}");
    app.shutdown();
    server.await.unwrap().unwrap();
}

fn assert_bad_certificate(result: Result<blaze_tokio::WsStream, ClientError>, want: fn(&CertificateError) -> bool) {
    match result {
        Err(ClientError::Tls(rustls::Error::InvalidCertificate(error))) if want(&error) => {}
        Err(other) => panic!("expected a certificate error, got {other:?}"),
        Ok(_) => panic!("connected to a server the client must not trust"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let pki = pki(&["localhost"]);
    let other_ca = self::pki(&["localhost"]);
    let app = echo_app(WsConfig::default());
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    let url = format!("wss://localhost:{}/echo", addr.port());
    let unknown_issuer = |e: &CertificateError| matches!(e, CertificateError::UnknownIssuer);
    // A private CA we do not trust, and the default roots (Mozilla's).
    assert_bad_certificate(blaze_tokio::connect_tls(&url, client_config(&other_ca)).await, unknown_issuer);
    assert_bad_certificate(blaze_tokio::connect(&url).await, unknown_issuer);
    // Nothing got past the TLS handshake.
    assert_eq!(app.total_connections(), 0);
    app.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused() {
    let pki = pki(&["other.example"]);
    let app = echo_app(WsConfig::default());
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    let wrong_name = |e: &CertificateError| {
        matches!(e, CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })
    };
    for url in [format!("wss://localhost:{}/echo", addr.port()), format!("wss://{addr}/echo")] {
        assert_bad_certificate(blaze_tokio::connect_tls(&url, client_config(&pki)).await, wrong_name);
    }
    app.shutdown();
    server.await.unwrap().unwrap();
}

/// Opens TCP connections that never send a ClientHello.
fn stalled_connections(addr: SocketAddr, count: usize) -> Vec<std::net::TcpStream> {
    (0..count)
        .map(|_| {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            stream
        })
        .collect()
}

/// Whether the server has closed `stream` (EOF or reset) rather than
/// still waiting for its ClientHello.
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    match stream.read(&mut [0; 64]) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent bytes to a client that never sent a ClientHello"),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_delays_nobody_else() {
    let pki = pki(&["localhost"]);
    // Stalled handshakes would be dropped only after a minute.
    let app = echo_app(WsConfig::default().handshake_timeout(Duration::from_secs(60)));
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    let mut stalled = stalled_connections(addr, 8);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Clients arriving after them connect and echo at once: a handshake
    // run in the accept loop would hold them until the stalled ones time out.
    let url = format!("wss://localhost:{}/echo", addr.port());
    for i in 0..3 {
        let connect = blaze_tokio::connect_tls(&url, client_config(&pki));
        let mut ws = tokio::time::timeout(Duration::from_secs(20), connect).await.expect("connect in time").unwrap();
        ws.send(format!("{i}")).unwrap();
        assert_eq!(recv_within(&mut ws).await, Some(Message::Text(format!("{i}").into())));
    }
    // ... while the stalled ones are all still waiting.
    for stream in &mut stalled {
        assert!(!closed_by_server(stream), "a stalled handshake was closed early");
    }
    app.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed_at_the_handshake_timeout() {
    let pki = pki(&["localhost"]);
    let timeout = Duration::from_millis(800);
    let app = echo_app(WsConfig::default().handshake_timeout(timeout));
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    let started = Instant::now();
    let mut stalled = stalled_connections(addr, 1).remove(0);
    let closed = common::blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if closed_by_server(&mut stalled) {
                return Some(started.elapsed());
            }
        }
        None
    })
    .await
    .expect("the stalled connection was never closed");
    assert!(closed >= timeout - Duration::from_millis(50), "closed before the timeout: {closed:?}");
    assert!(closed < Duration::from_secs(10), "closed too late: {closed:?}");
    app.shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_the_http_request_share_one_handshake_deadline() {
    use tokio::io::AsyncReadExt;
    let pki = pki(&["localhost"]);
    let timeout = Duration::from_secs(3);
    let app = echo_app(WsConfig::default().handshake_timeout(timeout));
    let (addr, server) = serve_tls(&app, tls_config(&pki)).await;
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The ClientHello comes 2 s late, then no request at all: the request
    // has the 1 s left, not a fresh 3 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connector = tokio_rustls::TlsConnector::from(client_config(&pki));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut response)).await.unwrap();
    let elapsed = started.elapsed();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(elapsed >= timeout - Duration::from_millis(50), "answered before the deadline: {elapsed:?}");
    // A fresh deadline after TLS would answer at 5 s.
    assert!(elapsed < Duration::from_millis(4500), "answered {elapsed:?} after connecting, past the deadline");
    app.shutdown();
    server.await.unwrap().unwrap();
}

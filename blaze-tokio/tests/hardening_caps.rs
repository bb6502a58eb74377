//! Issue 10, the rest: global caps (503 at accept), shutdown racing
//! handshakes, accepted messages that never reach the socket reported,
//! trusted proxies and the IPv6 prefix for the per-IP limit, and the
//! same-origin check. Real TCP on loopback throughout.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{guard, App, Callbacks, WsConfig, WsError};
use common::*;

const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// An echo route whose guard counts the requests that got as far as it.
fn counted_echo(config: WsConfig) -> (App, Arc<AtomicUsize>) {
    let judged = Arc::new(AtomicUsize::new(0));
    let count = judged.clone();
    let app = App::new();
    app.config(config);
    app.ws(
        "/echo",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(text);
        }),
    )
    .guard(guard(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }));
    (app, judged)
}

/// Tries to open a WebSocket until it succeeds or `timeout` passes.
fn connect_eventually(addr: SocketAddr, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        match tungstenite::connect(format!("ws://{addr}/echo")) {
            Ok((client, _)) => {
                set_timeout(&client, Duration::from_secs(5));
                return client;
            }
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("no connection within {timeout:?}: {err}"),
        }
    }
}

fn echo_once(client: &mut Client) {
    client.send(tungstenite::Message::text("ping?")).unwrap();
    assert_eq!(next_text(client), "ping?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_connection_cap_answers_503_before_reading_the_request() {
    let (app, judged) = counted_echo(WsConfig::default().max_total_connections(Some(3)));
    let (addr, _server) = serve(&app).await;
    let clients = blocking(move || (0..3).map(|_| connect(addr, "/echo")).collect::<Vec<_>>()).await;
    assert!(eventually(Duration::from_secs(5), || app.total_connections() == 3).await);
    let (status, response) = blocking(move || raw_http(addr, UPGRADE)).await;
    assert_eq!(status, 503, "{response}");
    assert!(response.contains("server busy"), "the static answer, not a route's: {response}");
    // A plain HTTP request counts too (it holds a socket), and is refused the same way.
    let (status, _) = blocking(move || raw_http(addr, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 503);
    assert_eq!(judged.load(Ordering::SeqCst), 3, "the rejected request never reached routing or guards");
    // One leaves: a newcomer is served.
    let mut clients = clients;
    drop(clients.pop());
    let mut client = blocking(move || connect_eventually(addr, Duration::from_secs(10))).await;
    client = blocking(move || {
        echo_once(&mut client);
        client
    })
    .await;
    drop((clients, client));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_handshake_cap_holds_slowloris_out_but_not_upgraded_clients() {
    let (app, _) = counted_echo(WsConfig::default().max_pending_handshakes(Some(2)));
    let (addr, _server) = serve(&app).await;
    // Upgraded connections are not pending handshakes: three fit under a cap of two.
    let upgraded = blocking(move || (0..3).map(|_| connect(addr, "/echo")).collect::<Vec<_>>()).await;
    assert!(eventually(Duration::from_secs(5), || app.total_connections() == 3).await);
    // Two clients that start a request and never finish it fill the cap...
    let slow: Vec<TcpStream> = blocking(move || {
        (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").unwrap();
                s
            })
            .collect()
    })
    .await;
    // ... (once the server has accepted them) and the next request is refused at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let (status, _) = blocking(move || raw_http(addr, UPGRADE)).await;
        if status == 503 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503);
    // The upgraded clients were never disturbed.
    let mut upgraded = blocking(move || {
        let mut upgraded = upgraded;
        for c in &mut upgraded {
            echo_once(c);
        }
        upgraded
    })
    .await;
    drop(slow);
    let client = blocking(move || connect_eventually(addr, Duration::from_secs(10))).await;
    upgraded.push(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_at_shutdown_gets_503_and_serve_returns_at_once() {
    let (app, _) = counted_echo(WsConfig::default());
    let (addr, server) = serve(&app).await;
    let mut stream = blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").unwrap();
        s
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    app.shutdown();
    let response = blocking(move || {
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
    .await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response:?}");
    // The drain has nothing to wait for (the handshake timeout is 10 s).
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("serve returned").unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_judged_while_shutdown_starts_gets_503_not_a_connection() {
    let app = App::new();
    let handle = Arc::new(Mutex::new(None::<blaze_tokio::ShutdownHandle>));
    let in_guard = handle.clone();
    app.ws("/echo", Callbacks::new()).guard(guard(move |_, _| {
        // Shutdown starts while the request is being judged (a slow guard:
        // a database lookup), and the drain runs ahead meanwhile.
        if let Some(handle) = in_guard.lock().unwrap().as_ref() {
            handle.shutdown();
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }));
    *handle.lock().unwrap() = Some(app.shutdown_handle());
    let (addr, server) = serve(&app).await;
    let started = Instant::now();
    let (status, response) = blocking(move || raw_http(addr, UPGRADE)).await;
    assert_eq!(status, 503, "{response:?}");
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("serve returned").unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "no connection outlived the drain");
    assert_eq!(app.total_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_lost_to_a_backpressure_close_are_counted_exactly() {
    const SIZE: usize = 1000;
    let accepted = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(Mutex::new(None::<(u64, u64)>));
    let closed = Arc::new(AtomicUsize::new(0));
    let (acc, lost_in, closed_in) = (accepted.clone(), lost.clone(), closed.clone());
    let app = App::new();
    let config = WsConfig::default().max_backpressure(64 * 1024).close_timeout(Duration::from_millis(500));
    app.ws_with_config(
        "/flood",
        config,
        Callbacks::new()
            .on_open(move |ws| {
                let ws = ws.clone();
                let acc = acc.clone();
                ws.clone().spawn(async move {
                    // One message a millisecond-ish, in small bursts, until a
                    // send is refused: some reach the socket before the
                    // client's buffers fill, the rest queue up.
                    let payload = "x".repeat(SIZE);
                    loop {
                        for _ in 0..4 {
                            if ws.send(payload.clone()).is_err() {
                                return;
                            }
                            acc.fetch_add(1, Ordering::SeqCst);
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                });
            })
            .on_close(move |_, _, _| {
                closed_in.fetch_add(1, Ordering::SeqCst);
            })
            .on_error(move |_, err| {
                if let WsError::Lost { messages, bytes } = err {
                    assert!(lost_in.lock().unwrap().replace((*messages, *bytes)).is_none(), "reported once");
                }
            }),
    );
    let (addr, _server) = serve_with_sndbuf(&app, 4096).await;
    // A client that never reads (small receive buffer).
    let stream = blocking(move || raw_ws_connect(addr, "/flood", Some(4096), "")).await;
    assert!(eventually(Duration::from_secs(20), || lost.lock().unwrap().is_some()).await, "no Lost report");
    assert_eq!(closed.load(Ordering::SeqCst), 1, "Lost comes after on_close");
    let (lost_messages, lost_bytes) = lost.lock().unwrap().unwrap();
    let accepted = accepted.load(Ordering::SeqCst);
    assert!(lost_messages > 0 && lost_messages <= accepted, "lost {lost_messages} of {accepted}");
    // Each message is 4 bytes of header + 1000 of payload.
    assert_eq!(lost_bytes, lost_messages * (SIZE as u64 + 4));
    // Now read what did reach the socket: exactly the others, whole.
    let received = blocking(move || {
        let mut frames = RawFrames::new(stream, Duration::from_secs(5));
        let mut whole = 0u64;
        while let Ok(frame) = frames.next() {
            match frame.opcode {
                1 => {
                    assert_eq!(frame.payload.len(), SIZE);
                    whole += 1;
                }
                8 => break,
                _ => {}
            }
        }
        whole
    })
    .await;
    assert_eq!(received + lost_messages, accepted, "every accepted message was written whole or counted lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_reported_lost_when_everything_was_written() {
    let lost = Arc::new(AtomicUsize::new(0));
    let lost_in = lost.clone();
    let app = App::new();
    app.ws(
        "/echo",
        Callbacks::new()
            .on_message(|ws, text| {
                let _ = ws.send(text);
            })
            .on_error(move |_, err| {
                if matches!(err, WsError::Lost { .. }) {
                    lost_in.fetch_add(1, Ordering::SeqCst);
                }
            }),
    );
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/echo");
        for _ in 0..50 {
            echo_once(&mut client);
        }
        client.close(None).unwrap();
        let _ = expect_close_or_end(&mut client);
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || app.total_connections() == 0).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lost.load(Ordering::SeqCst), 0);
}

fn expect_close_or_end(client: &mut Client) -> Option<()> {
    loop {
        match client.read() {
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A route that tells each client the address it was admitted as.
fn whoami(config: WsConfig) -> App {
    let app = App::new();
    app.ws_with_config(
        "/who",
        config.max_connections_per_ip(Some(1)),
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(ws.remote_addr().map(|a| a.to_string()).unwrap_or_default());
        }),
    );
    app
}

fn who(addr: SocketAddr, header: &str) -> (TcpStream, String) {
    let stream = raw_ws_connect(addr, "/who", None, header);
    let mut frames = RawFrames::new(stream, Duration::from_secs(5));
    let frame = frames.next().expect("greeting");
    (frames.stream, String::from_utf8(frame.payload).unwrap())
}

fn status_of(addr: SocketAddr, header: &str) -> u16 {
    status_line(addr, &UPGRADE.replace("/echo", "/who").replace("\r\n\r\n", &format!("\r\n{header}\r\n\r\n")))
}

/// Sends `request` and reads only the status line (a 101 stays open and
/// may be followed by frames, which are not text).
fn status_line(addr: SocketAddr, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let app = whoami(WsConfig::default());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let (_a, seen) = who(addr, "X-Forwarded-For: 203.0.113.1\r\n");
        assert!(seen.starts_with("127.0.0.1:"), "the TCP peer, not the header: {seen}");
        // A different spoofed client is still the same peer: 429.
        assert_eq!(status_of(addr, "X-Forwarded-For: 203.0.113.2"), 429);
        assert_eq!(status_of(addr, "Forwarded: for=203.0.113.3"), 429);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_a_trusted_proxy_decide_the_client() {
    let app = whoami(WsConfig::default().trusted_proxies(["127.0.0.0/8".parse().unwrap()]));
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let (_a, seen) = who(addr, "X-Forwarded-For: 203.0.113.1\r\n");
        assert_eq!(seen, "203.0.113.1:0");
        // Another client behind the same proxy has its own count.
        let (_b, seen) = who(addr, "Forwarded: for=\"203.0.113.2:4711\"\r\n");
        assert_eq!(seen, "203.0.113.2:4711");
        // The same client again: 429, even with a spoofed hop in front
        // (the rightmost untrusted hop decides, not the leftmost).
        assert_eq!(status_of(addr, "X-Forwarded-For: 198.51.100.9, 203.0.113.1"), 429);
        // Trusted hops are skipped.
        assert_eq!(status_of(addr, "X-Forwarded-For: 203.0.113.1, 127.0.0.5"), 429);
        // No header: the proxy itself is the client.
        let (_c, seen) = who(addr, "");
        assert!(seen.starts_with("127.0.0.1:"), "{seen}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_prefix_length_decides_who_shares_a_count() {
    let trusted = || WsConfig::default().trusted_proxies(["127.0.0.1".parse().unwrap()]);
    for (prefix, second_status) in [(64u8, 101u16), (48, 429)] {
        let app = whoami(trusted().ipv6_prefix_len(prefix));
        let (addr, _server) = serve(&app).await;
        let status = blocking(move || {
            let (_a, seen) = who(addr, "X-Forwarded-For: 2001:db8:1:2::1\r\n");
            assert_eq!(seen, "[2001:db8:1:2::1]:0");
            // Same /64: always the same client.
            assert_eq!(status_of(addr, "X-Forwarded-For: 2001:db8:1:2::ffff"), 429);
            // Same /48, another /64.
            status_of(addr, "X-Forwarded-For: 2001:db8:1:3::1")
        })
        .await;
        assert_eq!(status, second_status, "prefix /{prefix}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_check_refuses_cross_site_pages_only() {
    let app = App::new();
    app.ws_with_config("/echo", WsConfig::default().same_origin(), Callbacks::new());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let with = |origin: &str| raw_http(addr, &UPGRADE.replace("\r\n\r\n", &format!("\r\nOrigin: {origin}\r\n\r\n")));
        // Host is `x` in these requests.
        let (status, response) = with("http://evil.example");
        assert_eq!(status, 403, "{response}");
        assert_eq!(with("http://x:8080").0, 403, "another port is another origin");
        assert_eq!(with("null").0, 403);
        assert_eq!(with("http://x").0, 101);
        assert_eq!(with("https://x").0, 101);
        // No Origin: not a browser, allowed.
        assert_eq!(raw_http(addr, UPGRADE).0, 101);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_routes_see_the_forwarded_client_only_from_trusted_proxies() {
    let serve_ip = |trusted: bool| async move {
        let app = App::new();
        let config = WsConfig::default();
        app.config(if trusted { config.trusted_proxies(["127.0.0.1".parse().unwrap()]) } else { config });
        app.get("/ip", |req| {
            blaze_tokio::Response::text(200, req.remote_addr.map(|a| a.ip().to_string()).unwrap_or_default())
        });
        let (addr, server) = serve(&app).await;
        let (_, response) =
            blocking(move || raw_http(addr, "GET /ip HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")).await;
        server.abort();
        response
    };
    assert!(serve_ip(true).await.ends_with("203.0.113.7"));
    assert!(serve_ip(false).await.ends_with("127.0.0.1"));
}

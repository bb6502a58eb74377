//! Admission hardening (issue 10): one normalized path decides routing,
//! guards, the registry and the counts; the per-IP limit counts an
//! IPv4-mapped IPv6 peer as its IPv4 address.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{guard, App, Callbacks, WsConfig};
use common::*;

/// `/chat` greets each client with its `ws.path()`; a guard records the
/// `Request.path` it saw.
fn chat_app() -> (App, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = App::new();
    app.ws(
        "/chat",
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(ws.path().to_owned());
        }),
    )
    .guard(guard(move |req, _| {
        record.lock().unwrap().push(req.path.clone());
        Ok(())
    }));
    app.ws(
        "/room/:id",
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("{} {}", ws.path(), ws.param("id").unwrap_or("-")));
        }),
    );
    (app, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_variants_share_one_path_for_guards_registry_and_broadcast() {
    let (app, seen) = chat_app();
    let (addr, _server) = serve(&app).await;
    let mut clients = blocking(move || {
        ["/chat", "/chat/", "//chat"]
            .into_iter()
            .map(|path| {
                let mut client = connect(addr, path);
                // ws.path() is the normalized path, whatever was asked for.
                assert_eq!(next_text(&mut client), "/chat", "ws.path() for {path}");
                client
            })
            .collect::<Vec<_>>()
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/chat") == 3).await);
    // The lookups normalize their argument the same way.
    assert_eq!(app.connection_count("/chat/"), 3);
    assert_eq!(app.connection_count("//chat"), 3);
    assert_eq!(app.connections("/chat").len(), 3);
    assert!(app.connections("/chat").iter().all(|c| c.path == "/chat"));
    assert_eq!(*seen.lock().unwrap(), vec!["/chat"; 3], "the guard sees the normalized path");

    assert_eq!(app.broadcast("/chat", "hello all").unwrap(), 3);
    clients = blocking(move || {
        for client in &mut clients {
            assert_eq!(next_text(client), "hello all");
        }
        clients
    })
    .await;
    assert_eq!(app.broadcast("/chat/", "again").unwrap(), 3);
    blocking(move || {
        for client in &mut clients {
            assert_eq!(next_text(client), "again");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_and_connection_count_agree_across_slash_variants() {
    let app = App::new();
    app.ws_with_config("/full", WsConfig::default().max_connections(Some(2)), Callbacks::new());
    let (addr, _server) = serve(&app).await;
    let (a, b) = blocking(move || (connect(addr, "/full/"), connect(addr, "//full"))).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/full") == 2).await);
    assert_eq!(blocking(move || connect_rejected(addr, "/full").0).await, 503);
    drop(a);
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/full") == 1).await);
    let c = blocking(move || connect(addr, "/full")).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/full") == 2).await);
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_routes_register_under_the_normalized_request_path() {
    let (app, _) = chat_app();
    let (addr, _server) = serve(&app).await;
    let client = blocking(move || {
        let mut client = connect(addr, "//room//7/");
        assert_eq!(next_text(&mut client), "/room/7 7");
        client
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/room/7") == 1).await);
    assert_eq!(app.broadcast("/room/7", "in seven").unwrap(), 1);
    blocking(move || {
        let mut client = client;
        assert_eq!(next_text(&mut client), "in seven");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_path_is_not_decoded_for_routing() {
    let (app, seen) = chat_app();
    let (addr, _server) = serve(&app).await;
    // `/ch%61t` is not `/chat`: 404, and the guard never ran.
    assert_eq!(blocking(move || connect_rejected(addr, "/ch%61t").0).await, 404);
    let (status, _) = blocking(move || raw_http(addr, "GET /ch%61t HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 404);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv4_mapped_ipv6_share_the_per_ip_count() {
    let peers = Arc::new(Mutex::new(Vec::<SocketAddr>::new()));
    let record = peers.clone();
    let app = App::new();
    app.ws_with_config("/ip", WsConfig::default().max_connections_per_ip(Some(1)), Callbacks::new()).guard(guard(
        move |req, _| {
            record.lock().unwrap().extend(req.remote_addr);
            Ok(())
        },
    ));
    // Plain IPv4 listener: the peer is 127.0.0.1.
    let (v4_addr, _v4_server) = serve(&app).await;
    // Dual-stack listener: an IPv4 peer shows as ::ffff:127.0.0.1.
    let v6_listener = match tokio::net::TcpListener::bind("[::]:0").await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("SKIPPED: cannot bind an IPv6 listener on [::]:0 ({err})");
            return;
        }
    };
    let port = v6_listener.local_addr().unwrap().port();
    let served = app.clone();
    let _v6_server = tokio::spawn(async move { served.serve(v6_listener).await });
    let mapped_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dual_stack = blocking(move || std::net::TcpStream::connect(mapped_addr).is_ok()).await;
    if !dual_stack {
        eprintln!("SKIPPED: [::]:0 does not accept IPv4 (IPV6_V6ONLY / net.ipv6.bindv6only=1)");
        return;
    }
    // That probe was a plain TCP connect that sent nothing; it counted nothing.

    let first = blocking(move || connect(v4_addr, "/ip")).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/ip") == 1).await);
    assert_eq!(blocking(move || connect_rejected(mapped_addr, "/ip").0).await, 429);
    {
        let peers = peers.lock().unwrap();
        assert_eq!(peers.len(), 2, "{peers:?}");
        assert_eq!(peers[0].ip().to_string(), "127.0.0.1");
        assert_eq!(peers[1].ip().to_string(), "::ffff:127.0.0.1", "the second really came in mapped");
    }
    drop(first);
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/ip") == 0).await);
    let second = blocking(move || connect(mapped_addr, "/ip")).await;
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/ip") == 1).await);
    // And the other way round: the mapped peer now blocks plain IPv4.
    assert_eq!(blocking(move || connect_rejected(v4_addr, "/ip").0).await, 429);
    drop(second);
}

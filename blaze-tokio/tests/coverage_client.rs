//! The client's options (`header`, `config`), its handshake timeout,
//! IPv6 literal URLs, and serving over a Unix listener.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks, ClientError, ClientOptions, Message, WsConfig, WsUrl};
use common::*;

fn echo_app(closes: Arc<Mutex<Vec<u16>>>) -> App {
    let app = App::new();
    app.ws(
        "/echo",
        Callbacks::new()
            .on_open(|ws| {
                let _ = ws.send(format!(
                    "token={} host={} remote={:?}",
                    ws.header("x-client-token").unwrap_or("<none>"),
                    ws.header("host").unwrap_or("<none>"),
                    ws.remote_addr().map(|a| (a.ip().is_loopback(), a.is_ipv6())),
                ));
            })
            .on_message(|ws, text| {
                if let Some(n) = text.strip_prefix("give ") {
                    let _ = ws.send("g".repeat(n.parse().unwrap_or(0)));
                } else {
                    let _ = ws.send(text);
                }
            })
            .on_binary(|ws, data| {
                let _ = ws.send_binary(data);
            })
            .on_close(move |_ws, code, _| closes.lock().unwrap().push(code)),
    );
    app
}

fn text(message: Option<Message>) -> String {
    match message {
        Some(Message::Text(text)) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_header_option_reaches_the_server() {
    let app = echo_app(Arc::default());
    let (addr, _server) = serve(&app).await;
    let options = ClientOptions::default().header("X-Client-Token", "t0k-42");
    let mut ws = blaze_tokio::connect_with_options(&format!("ws://{addr}/echo"), options).await.unwrap();
    let greeting = text(recv_within(&mut ws).await);
    assert_eq!(greeting, format!("token=t0k-42 host={addr} remote=Some((true, false))"));
    // Without the option, no such header.
    let mut ws = blaze_tokio::connect(&format!("ws://{addr}/echo")).await.unwrap();
    assert!(text(recv_within(&mut ws).await).starts_with("token=<none> "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_origin_header_is_checked_by_allowed_origins() {
    let app = App::new();
    app.ws_with_config("/o", WsConfig::default().allowed_origins(["http://good.example"]), Callbacks::new());
    let (addr, _server) = serve(&app).await;
    let url = format!("ws://{addr}/o");
    let bad = blaze_tokio::connect_with_options(&url, ClientOptions::default().header("Origin", "http://evil.example")).await;
    match bad {
        Err(ClientError::Handshake(e)) => assert!(e.to_string().contains("403"), "{e}"),
        other => panic!("expected a 403 rejection, got {other:?}"),
    }
    let good = blaze_tokio::connect_with_options(&url, ClientOptions::default().header("Origin", "http://good.example")).await;
    assert!(good.is_ok(), "{good:?}");
    assert!(blaze_tokio::connect(&url).await.is_ok(), "no Origin is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_config_limits_what_the_client_accepts() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let app = echo_app(closes.clone());
    let (addr, _server) = serve(&app).await;
    let options = ClientOptions::default().config(WsConfig::default().ping_interval(None).max_message_size(1000));
    let mut ws = blaze_tokio::connect_with_options(&format!("ws://{addr}/echo"), options).await.unwrap();
    let _greeting = recv_within(&mut ws).await;
    ws.send("give 1000").unwrap();
    assert_eq!(text(recv_within(&mut ws).await), "g".repeat(1000));
    // One byte over the client's own limit (the server's is 1 MiB): 1009.
    ws.send("give 1001").unwrap();
    assert_eq!(recv_within(&mut ws).await, None);
    assert_eq!(ws.close_status().map(|(code, _)| code), Some(1009));
    // The client told the server why.
    assert!(eventually(Duration::from_secs(5), || !closes.lock().unwrap().is_empty()).await);
    assert_eq!(*closes.lock().unwrap(), [1009]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_handshake_timeout_is_client_error_timeout() {
    // Accepts (the kernel completes the TCP handshake) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let accepted = listener.accept().map(|(stream, _)| stream);
        std::thread::sleep(Duration::from_secs(3));
        drop(accepted);
    });
    let options = ClientOptions::default().config(WsConfig::default().ping_interval(None).handshake_timeout(Duration::from_millis(300)));
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(8),
        blaze_tokio::connect_with_options(&format!("ws://{addr}/x"), options),
    )
    .await
    .expect("connect gave up in time");
    let elapsed = started.elapsed();
    assert!(matches!(result, Err(ClientError::Timeout)), "{result:?}");
    assert!(elapsed >= Duration::from_millis(295), "timed out too early: {elapsed:?}");
    // The default handshake timeout (10 s) would miss this.
    assert!(elapsed < Duration::from_millis(2500), "timed out too late: {elapsed:?}");
    holder.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connects_to_an_ipv6_literal() {
    let listener = match tokio::net::TcpListener::bind("[::1]:0").await {
        Ok(listener) => listener,
        Err(e) => {
            println!("NOTE: skipped, IPv6 loopback unavailable: {e}");
            return;
        }
    };
    let addr = listener.local_addr().unwrap();
    let app = echo_app(Arc::default());
    let server = app.clone();
    tokio::spawn(async move { server.serve(listener).await });
    let url = format!("ws://[::1]:{}/echo", addr.port());
    let mut ws = blaze_tokio::connect(&url).await.unwrap();
    // The Host header keeps the brackets (RFC 3986 authority).
    assert_eq!(text(recv_within(&mut ws).await), format!("token=<none> host=[::1]:{} remote=Some((true, true))", addr.port()));
    ws.send("over v6").unwrap();
    assert_eq!(text(recv_within(&mut ws).await), "over v6");
}

/// Regression: `ws://[::1]/chat` was refused (the literal's last ':' was taken for a port).
#[test]
fn ipv6_literal_without_a_port_defaults_to_80() {
    let url = WsUrl::parse("ws://[::1]/chat").expect("valid URL");
    assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("[::1]", 80, "/chat"));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_serves_a_unix_listener() {
    let path = std::env::temp_dir().join(format!(
        "blaze-coverage-{}-{}.sock",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let app = echo_app(Arc::default());
    let server = app.clone();
    let task = tokio::spawn(async move { server.serve(listener).await });
    let socket_path = path.clone();
    let replies = blocking(move || {
        let stream = std::os::unix::net::UnixStream::connect(&socket_path).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (mut client, response) = tungstenite::client("ws://localhost/echo", stream).expect("handshake over Unix");
        let mut replies = vec![response.status().as_u16().to_string()];
        let next = |client: &mut tungstenite::WebSocket<std::os::unix::net::UnixStream>| loop {
            match client.read().expect("read") {
                tungstenite::Message::Text(t) => return t.to_string(),
                tungstenite::Message::Ping(_) => continue,
                other => panic!("{other:?}"),
            }
        };
        replies.push(next(&mut client));
        client.send(tungstenite::Message::text("over unix")).unwrap();
        replies.push(next(&mut client));
        client.send(tungstenite::Message::binary(vec![1u8, 2, 3])).unwrap();
        match client.read().expect("read") {
            tungstenite::Message::Binary(b) => replies.push(format!("{:?}", b.to_vec())),
            other => panic!("{other:?}"),
        }
        replies
    })
    .await;
    // No peer address on a Unix socket.
    assert_eq!(replies, ["101", "token=<none> host=localhost remote=None", "over unix", "[1, 2, 3]"]);
    app.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    let _ = std::fs::remove_file(&path);
}

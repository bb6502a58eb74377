//! Asynchronous admission (issue 16): a guard that awaits (a token looked
//! up in a "database") decides per request: accept with options (a
//! subprotocol chosen from the client's offer, this connection's own
//! configuration, typed locals), reject with a status and body, or answer
//! a plain HTTP request with a page; bounded by the handshake timeout, a
//! panic answers 500, and the server keeps serving.

mod common;

use std::time::Duration;

use blaze_tokio::{Admission, App, Callbacks, Response, WsConfig};
use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

#[derive(Clone)]
struct User(String);

/// A token store that takes a while to answer.
async fn lookup(token: &str) -> Option<User> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    match token {
        "alice-token" => Some(User("alice".into())),
        "bob-token" => Some(User("bob".into())),
        _ => None,
    }
}

fn app() -> App {
    let app = App::new();
    app.config(WsConfig::default().handshake_timeout(Duration::from_millis(500)));
    app.ws(
        "/secure",
        Callbacks::new()
            .on_open(|ws| {
                let user = ws.local::<User>().map(|u| u.0).unwrap_or_default();
                let _ = ws.send(format!("hi {user} ({})", ws.protocol().unwrap_or("no protocol")));
            })
            .on_message(|ws, text| {
                let _ = ws.send(format!("{} bytes", text.len()));
            }),
    )
    .guard_async(|req| async move {
        if !req.is_upgrade() {
            return Admission::respond(Response::with_body(200, "text/html", "<p>connect with a WebSocket</p>"));
        }
        let Some(token) = req.bearer_token() else { return Admission::reject(401, "missing token") };
        let Some(user) = lookup(token).await else { return Admission::reject(403, "unknown token") };
        let mut accept = Admission::accept().local(user.clone());
        if req.protocols().contains(&"chat.v2") {
            accept = accept.protocol("chat.v2");
        }
        if user.0 == "bob" {
            // This connection's own limits: bob may send 8 bytes at most.
            accept = accept.config(WsConfig::default().max_message_size(8));
        }
        accept
    });
    app.ws_stream("/slow", |ws| async move { drop(ws) }).guard_async(|_req| async {
        std::future::pending::<()>().await;
        Admission::accept()
    });
    app.ws_stream("/panics", |ws| async move { drop(ws) }).guard_async(|_req| async { panic!("guard exploded") });
    app.ws_stream("/bad-protocol", |ws| async move { drop(ws) })
        .guard_async(|_req| async { Admission::accept().protocol("never-offered") });
    // Sync guards run first; async ones after.
    app.ws_stream("/both", |mut ws| async move {
        let _ = ws.send(format!("{:?}", ws.local::<User>().map(|u| u.0)));
        let _ = ws.recv().await;
    })
    .guard(blaze_tokio::guard(|req, _| if req.query("sync") == Some("ok") { Ok(()) } else { Err(Response::text(400, "sync guard")) }))
    .guard_async(|_req| async { Admission::accept().local(User("from async".into())) });
    app
}

fn connect_as(addr: std::net::SocketAddr, path: &str, token: Option<&str>, protocols: Option<&str>) -> Result<Client, (u16, String)> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(protocols) = protocols {
        request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    }
    match tungstenite::connect(request) {
        Ok((client, _)) => {
            set_timeout(&client, Duration::from_secs(5));
            Ok(client)
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("{path}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_guard_accepts_with_locals_and_a_protocol_from_the_offer_or_rejects() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut alice = connect_as(addr, "/secure", Some("alice-token"), Some("chat.v1, chat.v2")).expect("alice");
        assert_eq!(next_text(&mut alice), "hi alice (chat.v2)");
        let mut plain = connect_as(addr, "/secure", Some("alice-token"), None).expect("no offer");
        assert_eq!(next_text(&mut plain), "hi alice (no protocol)");
        assert_eq!(connect_as(addr, "/secure", None, None).unwrap_err(), (401, "missing token".into()));
        assert_eq!(connect_as(addr, "/secure", Some("mallory"), None).unwrap_err(), (403, "unknown token".into()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_guard_sets_this_connections_config() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let long = "sixteen bytes!!!";
        let mut alice = connect_as(addr, "/secure", Some("alice-token"), None).unwrap();
        next_text(&mut alice);
        alice.send(Message::text(long)).unwrap();
        assert_eq!(next_text(&mut alice), "16 bytes", "the route's 1 MiB limit");
        let mut bob = connect_as(addr, "/secure", Some("bob-token"), None).unwrap();
        assert_eq!(next_text(&mut bob), "hi bob (no protocol)");
        bob.send(Message::text("short")).unwrap();
        assert_eq!(next_text(&mut bob), "5 bytes");
        bob.send(Message::text(long)).unwrap();
        assert_eq!(expect_close(&mut bob).0, 1009, "bob's own 8-byte limit");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_request_to_the_route_gets_the_guards_page() {
    let (addr, _server) = serve(&app()).await;
    let (status, response) = blocking(move || raw_http(addr, "GET /secure HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 200, "{response}");
    assert!(response.ends_with("<p>connect with a WebSocket</p>"), "{response}");
    // Guards that accept leave a plain request what it was: not an upgrade (426).
    let (status, _) = blocking(move || raw_http(addr, "GET /both?sync=ok HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 426);
    // Synchronous guards still run first.
    let (status, _) = blocking(move || raw_http(addr, "GET /both HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_past_the_handshake_timeout_gets_408_a_panic_500_a_bad_protocol_500_and_the_server_goes_on() {
    let app = app();
    let (addr, _server) = serve(&app).await;
    let counts = app.clone();
    blocking(move || {
        let started = std::time::Instant::now();
        assert_eq!(connect_as(addr, "/slow", None, None).unwrap_err().0, 408);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(400), "bounded by the 500 ms handshake timeout: {waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        assert_eq!(connect_as(addr, "/panics", None, None).unwrap_err().0, 500);
        assert_eq!(connect_as(addr, "/bad-protocol", None, Some("chat.v1")).unwrap_err().0, 500);
        let mut alice = connect_as(addr, "/secure", Some("alice-token"), None).expect("still serving");
        assert_eq!(next_text(&mut alice), "hi alice (no protocol)");
        // The refused handshakes left nothing registered: alice alone.
        assert_eq!(counts.total_connections(), 1);
    })
    .await;
    // And once she is gone, nothing.
    assert!(eventually(Duration::from_secs(5), || app.total_connections() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_guards_run_first_and_async_locals_reach_a_stream_handler() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        assert_eq!(connect_as(addr, "/both", None, None).unwrap_err(), (400, "sync guard".into()));
        let mut client = connect_as(addr, "/both?sync=ok", None, None).unwrap();
        assert_eq!(next_text(&mut client), r#"Some("from async")"#);
    })
    .await;
}

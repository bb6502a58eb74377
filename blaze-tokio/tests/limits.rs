//! Admission: origin checks (403), connection limits (503), subprotocols,
//! and typed JSON errors that keep the connection open.

mod common;

use std::time::Duration;

use blaze_tokio::{App, Callbacks, Json, WsConfig};
use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

#[derive(serde::Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

fn app() -> App {
    let app = App::new();
    app.ws_with_config("/origin", WsConfig::default().allowed_origins(["http://good.example"]), Callbacks::new());
    app.ws_with_config("/one", WsConfig::default().max_connections(Some(1)), Callbacks::new());
    app.ws_with_config(
        "/proto",
        WsConfig::default().subprotocols(["v2", "v1"]),
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(ws.protocol().unwrap_or("none").to_owned());
        }),
    );
    app.ws(
        "/json",
        Callbacks::new().on_json(|ws, add: Add| {
            let _ = ws.send(Json(serde_json::json!({"sum": add.a + add.b})));
        }),
    );
    app
}

fn connect_with_header(addr: std::net::SocketAddr, path: &str, name: &'static str, value: &str) -> Result<Client, u16> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request.headers_mut().insert(name, value.parse().unwrap());
    match tungstenite::connect(request) {
        Ok((client, _)) => {
            set_timeout(&client, Duration::from_secs(5));
            Ok(client)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_origin_is_403() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        assert_eq!(connect_with_header(addr, "/origin", "Origin", "http://evil.example").err(), Some(403));
        assert!(connect_with_header(addr, "/origin", "Origin", "http://good.example").is_ok());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503_until_one_leaves() {
    let app = app();
    let (addr, _server) = serve(&app).await;
    let first = blocking(move || connect(addr, "/one")).await;
    assert_eq!(blocking(move || connect_rejected(addr, "/one").0).await, 503);
    drop(first);
    assert!(eventually(Duration::from_secs(2), || app.connection_count("/one") == 0).await);
    blocking(move || connect(addr, "/one")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_follows_server_preference() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut client = connect_with_header(addr, "/proto", "Sec-WebSocket-Protocol", "v1, v2").unwrap();
        assert_eq!(next_text(&mut client), "v2");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_an_error_message_and_the_connection_stays_open() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut client = connect(addr, "/json");
        client.send(Message::text("{\"a\": 1,")).unwrap();
        let error: serde_json::Value = serde_json::from_str(&next_text(&mut client)).unwrap();
        assert_eq!(error["type"], "error");
        assert!(error["error"].as_str().unwrap().starts_with("invalid JSON"));
        client.send(Message::text(r#"{"a": 2, "b": 3}"#)).unwrap();
        assert_eq!(next_text(&mut client), r#"{"sum":5}"#);
    })
    .await;
}

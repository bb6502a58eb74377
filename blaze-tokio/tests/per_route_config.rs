//! Per-route configuration for every handler style (issue 16):
//! `ws_stream_with_config` on `App` and `Group` applies the route's own
//! subprotocols and limits; `Box<H>` and `Arc<H>` are handlers.

mod common;

use std::sync::Arc;

use blaze_tokio::{App, Handler, Utf8Bytes, WebSocket, WsConfig};
use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

fn route_config() -> WsConfig {
    WsConfig::default().subprotocols(["chat.v2", "chat.v1"]).max_message_size(16)
}

fn stream_echo(app: &App) {
    app.ws_stream_with_config("/stream", route_config(), |mut ws| async move {
        let protocol = ws.protocol().unwrap_or("none").to_owned();
        while let Some(msg) = ws.recv().await {
            if let blaze_tokio::Message::Text(t) = msg {
                let _ = ws.send(format!("{protocol}: {t}"));
            }
        }
    });
    app.group("/api").ws_stream_with_config("/stream", route_config(), |mut ws| async move {
        while let Some(msg) = ws.recv().await {
            let _ = ws.send(msg);
        }
    });
    // The same paths' defaults, for contrast: no subprotocol, 1 MiB messages.
    app.ws_stream("/plain", |mut ws| async move {
        while let Some(msg) = ws.recv().await {
            let _ = ws.send(msg);
        }
    });
}

/// Connects offering `chat.v1`; returns the client and the protocol chosen.
fn connect_offering(addr: std::net::SocketAddr, path: &str) -> (Client, Option<String>) {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "chat.v1".parse().unwrap());
    let (client, response) = tungstenite::connect(request).expect("handshake");
    set_timeout(&client, std::time::Duration::from_secs(5));
    let protocol = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    (client, protocol)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_routes_on_app_and_group_use_their_own_config() {
    let app = App::new();
    stream_echo(&app);
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        for path in ["/stream", "/api/stream"] {
            let (mut client, protocol) = connect_offering(addr, path);
            assert_eq!(protocol.as_deref(), Some("chat.v1"), "{path}: the route's subprotocol");
            client.send(Message::Text("short".into())).unwrap();
            let reply = next_text(&mut client);
            assert!(reply.ends_with("short"), "{path}: {reply}");
            // Over the route's 16-byte max_message_size: 1009.
            client.send(Message::Text("this is longer than sixteen bytes".into())).unwrap();
            assert_eq!(expect_close(&mut client).0, 1009, "{path}: the route's limit");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_route_without_config_keeps_the_defaults() {
    let app = App::new();
    stream_echo(&app);
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/plain");
        let long = "this is longer than sixteen bytes";
        client.send(Message::Text(long.into())).unwrap();
        assert_eq!(next_text(&mut client), long);
    })
    .await;
}

struct Shout;
impl Handler for Shout {
    fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
        let _ = ws.send(text.to_uppercase());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxed_and_shared_handlers_serve_routes() {
    let app = App::new();
    let boxed: Box<dyn Handler> = Box::new(Shout);
    app.ws("/boxed", boxed);
    let shared = Arc::new(Shout);
    app.ws("/shared", shared.clone());
    app.ws_with_config("/shared-config", WsConfig::default(), shared);
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        for path in ["/boxed", "/shared", "/shared-config"] {
            let mut client = connect(addr, path);
            client.send(Message::Text("hi".into())).unwrap();
            assert_eq!(next_text(&mut client), "HI", "{path}");
        }
    })
    .await;
}

//! A chat room with its own web page: open http://127.0.0.1:8080 in two
//! browser tabs and talk.
//!
//! `cargo run -p blaze-examples --bin chat` (`--addr HOST:PORT` to move it;
//! `--tls-cert FILE --tls-key FILE`, built with `--features tls`, serves
//! the page over https and the chat over wss)
//!
//! `--redis redis://HOST:PORT` joins a cluster: run two chat servers on two
//! ports with the same Redis and a tab on each shares one room (the
//! "online" counts then count every server's clients).
//!
//! Protocol on `/chat` (JSON text messages):
//! - client → server: `{"name": "ann", "text": "hello"}` (the first message's
//!   name is remembered for join/leave notices)
//! - server → clients: `{"type": "message", "name": "ann", "text": "hello"}`,
//!   `{"type": "join", "name": "ann", "online": 2}`, `{"type": "leave", ...}`,
//!   `{"type": "error", "error": "..."}` for malformed input.
//!
//! Messages are compressed (permessage-deflate, which every browser
//! offers) in shared mode: each broadcast is compressed once for the whole
//! room, and no connection keeps a compressor. `GET /stats` shows how many
//! compressions the broadcasts made.

use blaze_tokio::{App, Callbacks, Json, Response, WebSocket, WsConfig};
use serde::{Deserialize, Serialize};

const PAGE: &str = include_str!("../../static/chat.html");

#[derive(Deserialize)]
struct Incoming {
    name: String,
    text: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Outgoing<'a> {
    Message { name: &'a str, text: &'a str },
    Join { name: &'a str, online: usize },
    Leave { name: &'a str, online: usize },
}

/// The display name a connection chose, kept as typed per-connection state.
#[derive(Clone)]
struct Name(String);

fn name_of(ws: &WebSocket) -> Option<String> {
    ws.local::<Name>().map(|n| n.0)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1);
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:8080".into());
    let app = App::new();
    if let Some(url) = arg("--redis") {
        let backplane = blaze_redis::RedisBackplane::connect(&url).await.map_err(std::io::Error::other)?;
        println!("clustered through {url} as node {:016x}", backplane.node_id());
        app.cluster(backplane);
    }
    app.get("/", |_req| Response::with_body(200, "text/html; charset=utf-8", PAGE));
    let online = app.clone();
    let leaving = app.clone();
    let stats = app.clone();
    app.get("/stats", move |_req| {
        let body = serde_json::json!({
            "online": stats.connection_count("/chat"),
            "clustered": stats.is_clustered(),
            "encodings": stats.encodings(),
            "compressions": stats.compressions(),
        });
        Response::with_body(200, "application/json", body.to_string())
    });
    app.ws_with_config(
        "/chat",
        WsConfig::default().enable_compression(true),
        Callbacks::new()
            .on_json(move |ws, msg: Incoming| {
                let name: String = msg.name.chars().take(32).collect();
                if name_of(ws).is_none() {
                    ws.set_local(Name(name.clone()));
                    if online.is_clustered() {
                        // The cluster-wide count is a Redis query: answer
                        // from a task, the notice and first message in order.
                        let app = online.clone();
                        tokio::spawn(async move {
                            let count = app.cluster_connection_count("/chat").await;
                            let online = count.unwrap_or_else(|_| app.connection_count("/chat"));
                            let _ = app.broadcast("/chat", Json(Outgoing::Join { name: &name, online }));
                            let _ = app.broadcast("/chat", Json(Outgoing::Message { name: &name, text: &msg.text }));
                        });
                        return;
                    }
                    let online = online.connection_count("/chat");
                    let _ = ws.broadcast(Json(Outgoing::Join { name: &name, online }));
                }
                let name = name_of(ws).unwrap_or(name);
                let _ = ws.broadcast(Json(Outgoing::Message { name: &name, text: &msg.text }));
            })
            .on_close(move |ws, _code, _reason| {
                if let Some(name) = name_of(ws) {
                    if leaving.is_clustered() {
                        let app = leaving.clone();
                        tokio::spawn(async move {
                            let count = app.cluster_connection_count("/chat").await;
                            let online = count.unwrap_or_else(|_| app.connection_count("/chat"));
                            let _ = app.broadcast("/chat", Json(Outgoing::Leave { name: &name, online }));
                        });
                        return;
                    }
                    let online = leaving.connection_count("/chat");
                    let _ = leaving.broadcast("/chat", Json(Outgoing::Leave { name: &name, online }));
                }
            }),
    );
    let tls = blaze_examples::tls_from_args();
    println!("chat on {}://{addr}", if tls.is_some() { "https" } else { "http" });
    blaze_examples::listen_tokio(&app, &addr, tls).await
}

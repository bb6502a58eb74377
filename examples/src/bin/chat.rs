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

use blaze_examples::chat_room::PAGE;
use blaze_tokio::{App, Response};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let arg = blaze_examples::arg;
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:8080".into());
    let app = App::new();
    if let Some(url) = arg("--redis") {
        let backplane = blaze_redis::RedisBackplane::connect(&url).await.map_err(std::io::Error::other)?;
        println!("clustered through {url} as node {:016x}", backplane.node_id());
        app.cluster(backplane);
    }
    app.get("/", |_req| Response::with_body(200, "text/html; charset=utf-8", PAGE));
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
    blaze_examples::chat_room::route(&app);
    let tls = blaze_examples::tls_from_args();
    println!("chat on {}://{addr}", if tls.is_some() { "https" } else { "http" });
    blaze_examples::listen_tokio(&app, &addr, tls).await
}

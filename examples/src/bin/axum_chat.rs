//! Blaze inside axum: one port serves an axum REST API and a Blaze chat
//! room (the chat page of the `chat` example). Open http://127.0.0.1:8084
//! in two browser tabs and talk; `curl http://127.0.0.1:8084/api/stats`.
//!
//! `cargo run -p blaze-examples --features axum --bin axum_chat` (`--addr HOST:PORT` to move it)
//!
//! axum routes `/`, `/api/health` and `/api/stats`; `/chat` is a Blaze
//! route mounted on the Router, so it has everything Blaze has (handlers,
//! broadcast framed once, heartbeats, limits, compression, shutdown).
//! Clients speaking WebSockets over HTTP/2 (RFC 8441) are served too.
//! Ctrl-C closes every chat client with 1001 and stops axum.
//!
//! Chat protocol as in the `chat` example: the client sends
//! `{"name": "ann", "text": "hello"}`; everyone gets
//! `{"type": "message", "name": "ann", "text": "hello"}` and join/leave
//! notices.

use std::net::SocketAddr;

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use blaze_examples::chat_room::{self, PAGE};
use blaze_tokio::App;

/// The Blaze side: the chat room of the `chat` example.
fn chat_app() -> App {
    let app = App::new();
    chat_room::route(&app);
    app
}

/// The axum side: a page, a REST API reading Blaze's live state, and the
/// Blaze route mounted at `/chat`.
fn router(app: &App) -> Router {
    let stats = app.clone();
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route(
            "/api/stats",
            get(move || {
                let app = stats.clone();
                async move {
                    Json(serde_json::json!({
                        "online": app.connection_count("/chat"),
                        "encodings": app.encodings(),
                        "compressions": app.compressions(),
                    }))
                }
            }),
        )
        .route("/chat", blaze_tokio::axum::upgrade(app))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1).unwrap_or_else(|| "127.0.0.1:8084".into());
    let app = chat_app();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("axum + Blaze chat on http://{}", listener.local_addr()?);
    let shutdown = app.shutdown_handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            shutdown.shutdown();
        }
    });
    axum::serve(listener, router(&app).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(app.shutdown_requested())
        .await?;
    // axum has stopped; Blaze is closing the chat clients with 1001:
    // wait (up to its 10 s drain timeout) for their on_close.
    for _ in 0..500 {
        if app.total_connections() == 0 {
            break;
        }
        blaze_tokio::delay(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

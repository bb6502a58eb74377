//! The chat room of the `chat` and `axum_chat` examples: one `/chat`
//! route, JSON messages, join/leave notices with the online count (the
//! cluster-wide count when the app is clustered), compressed in shared mode.

use blaze_tokio::{App, Callbacks, Json, WebSocket, WsConfig};
use serde::{Deserialize, Serialize};

/// The chat page (`GET /`): it connects to `/chat` on the same origin.
pub const PAGE: &str = include_str!("../static/chat.html");

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

/// Adds the `/chat` route to `app`.
pub fn route(app: &App) {
    let online = app.clone();
    let leaving = app.clone();
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
}

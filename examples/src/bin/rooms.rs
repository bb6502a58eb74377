//! Game rooms: `/game/:room_id` puts each connection in the topic of its
//! room; messages reach only that room, with join and leave notices.
//!
//! `cargo run -p blaze-examples --bin rooms` then connect clients to
//! `ws://127.0.0.1:8082/game/lobby?name=ann` and `.../game/arena?name=bob`.

use blaze_tokio::{App, Callbacks, Json, WebSocket};
use serde_json::json;

fn room(ws: &WebSocket) -> String {
    format!("room:{}", ws.param("room_id").unwrap_or("lobby"))
}

fn name(ws: &WebSocket) -> String {
    ws.query("name").map(str::to_owned).unwrap_or_else(|| format!("player{}", ws.id()))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1).unwrap_or_else(|| "127.0.0.1:8082".into());
    let app = App::new();
    let stats = app.clone();
    let leaving = app.clone();
    app.ws(
        "/game/:room_id",
        Callbacks::new()
            .on_open(move |ws| {
                let room = room(ws);
                ws.join(&room);
                let players = stats.topic_count(&room);
                let _ = ws.publish(&room, Json(json!({"type": "join", "name": name(ws), "players": players})));
            })
            .on_message(|ws, text| {
                let _ = ws.publish(&room(ws), Json(json!({"type": "message", "name": name(ws), "text": &*text})));
            })
            .on_close(move |ws, _code, _reason| {
                // The connection has already left its topics.
                let room = room(ws);
                let players = leaving.topic_count(&room);
                let _ = leaving.publish(&room, Json(json!({"type": "leave", "name": name(ws), "players": players})));
            }),
    );
    println!("rooms on ws://{addr}/game/:room_id");
    app.listen(addr).await
}

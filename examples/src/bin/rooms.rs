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
    routes(&app);
    println!("rooms on ws://{addr}/game/:room_id");
    app.listen(addr).await
}

/// The `/game/:room_id` route (the tests call this too).
fn routes(app: &App) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn messages_stay_in_their_room_with_join_and_leave_notices() {
        let app = App::new();
        routes(&app);
        let mut ann = app.test_client("/game/lobby?name=ann").unwrap();
        assert_eq!(ann.recv_json::<Value>(), Some(json!({"type": "join", "name": "ann", "players": 1})));
        let mut bob = app.test_client("/game/lobby?name=bob").unwrap();
        let mut cat = app.test_client("/game/arena?name=cat").unwrap();
        let bob_joined = json!({"type": "join", "name": "bob", "players": 2});
        assert_eq!(ann.recv_json::<Value>(), Some(bob_joined.clone()));
        assert_eq!(bob.recv_json::<Value>(), Some(bob_joined));
        assert_eq!(cat.recv_json::<Value>(), Some(json!({"type": "join", "name": "cat", "players": 1})));

        ann.send("gg").unwrap();
        let said = json!({"type": "message", "name": "ann", "text": "gg"});
        assert_eq!(ann.recv_json::<Value>(), Some(said.clone()), "the sender is in its room too");
        assert_eq!(bob.recv_json::<Value>(), Some(said));
        assert_eq!(cat.recv(), None, "another room hears nothing");

        bob.close(1000, "bye").unwrap();
        assert_eq!(ann.recv_json::<Value>(), Some(json!({"type": "leave", "name": "bob", "players": 1})));
        assert_eq!(cat.recv(), None);
        assert_eq!(app.topic_count("room:lobby"), 1);
        assert_eq!(app.topic_count("room:arena"), 1);
    }

    #[test]
    fn a_player_without_a_name_is_named_by_id() {
        let app = App::new();
        routes(&app);
        let mut anon = app.test_client("/game/x").unwrap();
        let joined: Value = anon.recv_json().unwrap();
        assert!(joined["name"].as_str().unwrap().starts_with("player"), "{joined}");
    }
}

//! What a broadcast reaches (issue 16): a route pattern reaches every
//! connection of the route, a concrete path those on that path; a
//! server-wide broadcast reaches every route; `Serialize` values go out
//! as JSON without a wrapper; a path no route matches is an error.

mod common;

use std::time::Duration;

use blaze_tokio::{App, Callbacks, Response, SendError};
use common::*;
use tungstenite::Message;

fn app() -> App {
    let app = App::new();
    app.ws("/game/:room_id", Callbacks::new());
    app.ws("/files/*path", Callbacks::new());
    app.ws(
        "/lobby",
        Callbacks::new().on_message(|ws, text| {
            if text.as_str() == "everyone" {
                let _ = ws.broadcast_all(format!("from {}", ws.path()));
            }
        }),
    );
    app.get("/stats", |_| Response::text(200, "ok"));
    app
}

/// Waits until `n` connections are registered in total.
async fn wait_for(app: &App, n: usize) {
    assert!(eventually(Duration::from_secs(5), || app.total_connections() == n).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_pattern_reaches_every_room_and_a_path_only_its_own() {
    let app = app();
    let (addr, _server) = serve(&app).await;
    let clients = blocking(move || {
        ["/game/1", "/game/1", "/game/2", "/lobby", "/files/a/b", "/files/c"].map(|p| connect(addr, p))
    })
    .await;
    wait_for(&app, 6).await;
    assert_eq!(app.broadcast("/game/:room_id", "every room").unwrap(), 3);
    assert_eq!(app.broadcast("/game/1", "room one").unwrap(), 2);
    assert_eq!(app.broadcast("/game/2/", "room two").unwrap(), 1, "normalized like request paths");
    assert_eq!(app.broadcast("/game/3", "room three").unwrap(), 0, "a room nobody is in: Ok(0)");
    assert_eq!(app.broadcast("/files/*path", "every file").unwrap(), 2);
    assert_eq!(app.broadcast("/lobby", "lobby").unwrap(), 1);
    let except = app.connections("/game/2")[0].id;
    assert_eq!(app.broadcast_except("/game/:room_id", "not room two", except).unwrap(), 2);
    // A sentinel last on every path, so "got nothing else" is checked.
    for path in ["/game/1", "/game/2", "/lobby", "/files/a/b", "/files/c"] {
        app.broadcast(path, "end").unwrap();
    }
    blocking(move || {
        let [mut g1a, mut g1b, mut g2, mut lobby, mut fab, mut fc] = clients;
        for c in [&mut g1a, &mut g1b] {
            for expected in ["every room", "room one", "not room two", "end"] {
                assert_eq!(next_text(c), expected);
            }
        }
        for expected in ["every room", "room two", "end"] {
            assert_eq!(next_text(&mut g2), expected);
        }
        for expected in ["lobby", "end"] {
            assert_eq!(next_text(&mut lobby), expected);
        }
        for c in [&mut fab, &mut fc] {
            for expected in ["every file", "end"] {
                assert_eq!(next_text(c), expected);
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_all_reaches_every_connection_on_every_route_from_the_app_and_a_handle() {
    let app = app();
    let (addr, _server) = serve(&app).await;
    let clients = blocking(move || ["/game/1", "/lobby", "/files/x"].map(|p| connect(addr, p))).await;
    wait_for(&app, 3).await;
    assert_eq!(app.broadcast_all("server-wide").unwrap(), 3);
    blocking(move || {
        let [mut game, mut lobby, mut files] = clients;
        lobby.send(Message::Text("everyone".into())).unwrap();
        for c in [&mut game, &mut lobby, &mut files] {
            assert_eq!(next_text(c), "server-wide");
            assert_eq!(next_text(c), "from /lobby");
        }
    })
    .await;
}

#[derive(serde::Serialize)]
struct Update<'a> {
    symbol: &'a str,
    price: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialize_values_are_broadcast_and_published_as_json_without_a_wrapper() {
    let app = App::new();
    app.ws("/market", Callbacks::new().on_open(|ws| {
        ws.join("btc");
    }));
    let (addr, _server) = serve(&app).await;
    let mut client = blocking(move || connect(addr, "/market")).await;
    wait_for(&app, 1).await;
    // Registered before the 101 is written, but joined in `on_open`, which
    // runs after it: wait for the join too.
    assert!(eventually(Duration::from_secs(5), || app.topic_count("btc") == 1).await);
    let encodings = app.encodings();
    assert_eq!(app.broadcast_json("/market", &Update { symbol: "BTC", price: 95000.5 }).unwrap(), 1);
    assert_eq!(app.publish_json("btc", &Update { symbol: "BTC", price: 1.0 }).unwrap(), 1);
    assert_eq!(app.encodings(), encodings + 2, "serialized and framed once per call");
    let ws = app.connection(app.connections("/market")[0].id).unwrap();
    assert_eq!(ws.broadcast_json(&serde_json::json!({"from": "handle"})).unwrap(), 1);
    blocking(move || {
        assert_eq!(next_text(&mut client), r#"{"symbol":"BTC","price":95000.5}"#);
        assert_eq!(next_text(&mut client), r#"{"symbol":"BTC","price":1.0}"#);
        assert_eq!(next_text(&mut client), r#"{"from":"handle"}"#);
    })
    .await;
}

#[tokio::test]
async fn a_broadcast_to_a_path_no_route_matches_is_an_error_before_serializing() {
    let app = app();
    let encodings = app.encodings();
    for path in ["/gmae/1", "/game", "/game/1/extra", "/stats", "/nowhere"] {
        assert_eq!(app.broadcast(path, "lost"), Err(SendError::NoRoute(path.to_owned())), "{path}");
        assert!(matches!(app.broadcast_json(path, &1), Err(SendError::NoRoute(_))));
    }
    assert_eq!(app.encodings(), encodings, "nothing was framed");
    // Routes with nobody on them are fine.
    assert_eq!(app.broadcast("/game/9", "x"), Ok(0));
    assert_eq!(app.broadcast("/lobby", "x"), Ok(0));
    assert_eq!(app.broadcast_all("x"), Ok(0));
}

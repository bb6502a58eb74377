//! A rate limit that closes does not lose the replies to messages it
//! accepted (issue 16), in every handler style: a client sends a burst
//! over the limit and gets a reply to each accepted message, in order,
//! before the 1008 close frame. A stream-style handler takes its messages
//! later than callbacks run (and here awaits before each reply); it lost
//! them before: `send` returned `Closed` as the limit closed at once.

mod common;

use std::time::Duration;

use blaze_tokio::{App, Callbacks, Handler, Message as BlazeMessage, RateLimit, RateLimitAction, Utf8Bytes, WebSocket, WsConfig};
use common::*;
use tungstenite::Message;

/// A rate that refills nothing within the test: exactly `BURST` pass.
const BURST: u32 = 5;

fn config() -> WsConfig {
    WsConfig::default().rate_limit(Some(RateLimit::new(0.001, BURST).action(RateLimitAction::Close)))
}

struct Echo;
impl Handler for Echo {
    fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
        let _ = ws.send(format!("re {text}"));
    }
}

fn app() -> App {
    let app = App::new();
    app.ws_with_config("/callbacks", config(), Callbacks::new().on_message(|ws, text| {
        let _ = ws.send(format!("re {text}"));
    }));
    app.ws_with_config("/handler", config(), Echo);
    app.ws_stream_with_config("/stream", config(), |mut ws| async move {
        while let Some(msg) = ws.recv().await {
            // Work that awaits before answering (a database, another service).
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let BlazeMessage::Text(text) = msg {
                if ws.send(format!("re {text}")).is_err() {
                    break;
                }
            }
        }
    });
    app.ws_stream_with_config("/stream-json", config(), |mut ws| async move {
        while let Some(value) = ws.recv_json::<serde_json::Value>().await {
            let Ok(value) = value else { continue };
            let _ = ws.send(format!("re {}", value["n"]));
        }
    });
    app
}

/// Sends 12 messages at once; returns the texts received before the close
/// frame, and its code.
fn burst(client: &mut Client, json: bool) -> (Vec<String>, u16) {
    for i in 0..12 {
        let text = if json { format!(r#"{{"n":{i}}}"#) } else { format!("m{i}") };
        client.write(Message::text(text)).unwrap();
    }
    client.flush().unwrap();
    let mut replies = Vec::new();
    loop {
        match client.read() {
            Ok(Message::Text(t)) => replies.push(t.to_string()),
            Ok(Message::Close(frame)) => return (replies, frame.map_or(1005, |f| u16::from(f.code))),
            Ok(_) => continue,
            Err(e) => panic!("the connection ended without a close frame after {replies:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_get_their_replies_before_the_close_in_every_style() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        for (path, json) in [("/callbacks", false), ("/handler", false), ("/stream", false), ("/stream-json", true)] {
            let mut client = connect(addr, path);
            let (replies, code) = burst(&mut client, json);
            let expected: Vec<String> =
                (0..BURST).map(|i| if json { format!("re {i}") } else { format!("re m{i}") }).collect();
            assert_eq!(replies, expected, "{path}: a reply to each accepted message, in order, before the close");
            assert_eq!(code, 1008, "{path}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_handler_that_stops_reading_is_still_closed_by_the_rate_limit() {
    let app = App::new();
    app.ws_stream_with_config("/stuck", config().close_timeout(Duration::from_millis(300)), |mut ws| async move {
        let _ = ws.recv().await;
        // Never comes back for the rest.
        std::future::pending::<()>().await;
    });
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut client = connect(addr, "/stuck");
        let (replies, code) = burst(&mut client, false);
        assert!(replies.is_empty());
        assert_eq!(code, 1008, "closed within close_timeout though the handler never asked again");
    })
    .await;
}

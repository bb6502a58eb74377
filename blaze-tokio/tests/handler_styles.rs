//! The three handler styles each echo text and binary to a tungstenite client.

mod common;

use blaze_tokio::{App, Bytes, Callbacks, Handler, Utf8Bytes, WebSocket};
use common::*;
use tungstenite::Message;

struct EchoChannel;

impl Handler for EchoChannel {
    fn on_open(&self, ws: &WebSocket) {
        let _ = ws.send("hello from the trait");
    }
    fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
        let _ = ws.send(text);
    }
    fn on_binary(&self, ws: &WebSocket, data: Bytes) {
        let _ = ws.send(data);
    }
}

fn app() -> App {
    let app = App::new();
    app.ws(
        "/callbacks",
        Callbacks::new()
            .on_open(|ws| {
                let _ = ws.send("hello from callbacks");
            })
            .on_message(|ws, text| {
                let _ = ws.send(text);
            })
            .on_binary(|ws, data| {
                let _ = ws.send(data);
            }),
    );
    app.ws("/trait", EchoChannel);
    app.ws_stream("/stream", |mut ws| async move {
        let _ = ws.send("hello from the stream");
        while let Some(message) = ws.recv().await {
            let _ = ws.send(message);
        }
    });
    app
}

fn round_trip(addr: std::net::SocketAddr, path: &str, greeting: &str) {
    let mut client = connect(addr, path);
    assert_eq!(next_text(&mut client), greeting);
    client.send(Message::text("héllo wörld")).unwrap();
    assert_eq!(next_text(&mut client), "héllo wörld");
    client.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    match client.read().unwrap() {
        Message::Binary(data) => assert_eq!(&data[..], &[0, 1, 2, 255]),
        other => panic!("expected binary, got {other:?}"),
    }
    let big = "x".repeat(300_000);
    client.send(Message::text(big.clone())).unwrap();
    assert_eq!(next_text(&mut client), big);
    client.close(None).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_echo_text_and_binary() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || round_trip(addr, "/callbacks", "hello from callbacks")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_trait_echoes_text_and_binary() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || round_trip(addr, "/trait", "hello from the trait")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_style_echoes_text_and_binary() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || round_trip(addr, "/stream", "hello from the stream")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_in_one_write_are_all_echoed_in_order() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut client = connect(addr, "/callbacks");
        next_text(&mut client);
        for i in 0..500 {
            client.write(Message::text(format!("m{i}"))).unwrap();
        }
        client.flush().unwrap();
        for i in 0..500 {
            assert_eq!(next_text(&mut client), format!("m{i}"));
        }
    })
    .await;
}

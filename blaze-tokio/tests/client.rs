//! Blaze's client against a server not written by us (tungstenite), and
//! against Blaze.

mod common;

use std::net::TcpListener;

use blaze_tokio::{App, Callbacks, ClientError, ClientOptions, Message};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_talks_to_a_tungstenite_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // A client that never closes must not hang the `join` below.
        stream.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        loop {
            match ws.read() {
                Ok(msg @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_))) => ws.send(msg).unwrap(),
                Ok(tungstenite::Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let mut ws = blaze_tokio::connect(&format!("ws://{addr}/")).await.unwrap();
    ws.send("hello").unwrap();
    assert_eq!(recv_within(&mut ws).await, Some(Message::text("hello")));
    ws.send_binary(vec![9u8; 70_000]).unwrap();
    assert_eq!(recv_within(&mut ws).await, Some(Message::binary(vec![9u8; 70_000])));
    ws.close(1000u16, "done").unwrap();
    // The close handshake completes: `recv` ends (and in time).
    assert_eq!(recv_within(&mut ws).await, None);
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_negotiates_a_subprotocol_and_sees_rejections() {
    let app = App::new();
    app.ws_with_config(
        "/p",
        blaze_tokio::WsConfig::default().subprotocols(["b"]),
        Callbacks::new().on_message(|ws, t| {
            let _ = ws.send(t);
        }),
    );
    let (addr, _server) = serve(&app).await;
    let ws = blaze_tokio::connect_with_options(&format!("ws://{addr}/p"), ClientOptions::default().protocol("a").protocol("b"))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("b"));
    match blaze_tokio::connect(&format!("ws://{addr}/missing")).await {
        Err(ClientError::Handshake(blaze_proto_error)) => assert!(blaze_proto_error.to_string().contains("404")),
        other => panic!("expected a 404 rejection, got {other:?}"),
    }
}

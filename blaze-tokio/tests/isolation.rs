//! Hostile or failing connections hurt only themselves: a panicking
//! handler closes its own connection with 1011, protocol errors get their
//! close codes, and everyone else keeps being served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use blaze_tokio::{App, Callbacks, WsConfig};
use common::*;
use tungstenite::Message;

fn app() -> App {
    let app = App::new();
    app.ws(
        "/panic",
        Callbacks::new().on_message(|ws, text| {
            if &*text == "boom" {
                panic!("boom");
            }
            let _ = ws.send(text);
        }),
    );
    app.ws_stream("/panic-stream", |mut ws| async move {
        if ws.recv().await.is_some() {
            panic!("stream handler panics");
        }
    });
    app.ws_with_config(
        "/small",
        WsConfig::default().max_message_size(1024),
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(text);
        }),
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_closes_only_its_connection_with_1011() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut bystander = connect(addr, "/panic");
        let mut victim = connect(addr, "/panic");
        victim.send(Message::text("boom")).unwrap();
        assert_eq!(expect_close(&mut victim).0, 1011);
        bystander.send(Message::text("still here")).unwrap();
        assert_eq!(next_text(&mut bystander), "still here");
        let mut fresh = connect(addr, "/panic");
        fresh.send(Message::text("again")).unwrap();
        assert_eq!(next_text(&mut fresh), "again");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_handler_panic_closes_with_1011() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut victim = connect(addr, "/panic-stream");
        victim.send(Message::text("x")).unwrap();
        assert_eq!(expect_close(&mut victim).0, 1011);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_the_limit_is_closed_with_1009() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut client = connect(addr, "/small");
        client.send(Message::text("a".repeat(2000))).unwrap();
        assert_eq!(expect_close(&mut client).0, 1009);
    })
    .await;
}

/// Sends a hand-made handshake, then raw bytes; returns what the server sent back.
fn raw_session(addr: std::net::SocketAddr, path: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// The close code in the first close frame after the 101 response.
fn close_code_in(response: &[u8]) -> u16 {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("101 response") + 4;
    let frame = &response[head_end..];
    assert_eq!(frame[0], 0x88, "expected a close frame, got {frame:02x?}");
    u16::from_be_bytes([frame[2], frame[3]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_get_their_close_codes() {
    let (addr, _server) = serve(&app()).await;
    // Unmasked client frame → 1002.
    let out = blocking(move || raw_session(addr, "/panic", &[0x81, 0x02, b'h', b'i'])).await;
    assert_eq!(close_code_in(&out), 1002);
    // Invalid UTF-8 in a text frame → 1007.
    let out = blocking(move || raw_session(addr, "/panic", &[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])).await;
    assert_eq!(close_code_in(&out), 1007);
    // Reserved opcode → 1002.
    let out = blocking(move || raw_session(addr, "/panic", &[0x83, 0x80, 0, 0, 0, 0])).await;
    assert_eq!(close_code_in(&out), 1002);
    // And the server still serves.
    blocking(move || {
        let mut client = connect(addr, "/panic");
        client.send(Message::text("ok")).unwrap();
        assert_eq!(next_text(&mut client), "ok");
    })
    .await;
}

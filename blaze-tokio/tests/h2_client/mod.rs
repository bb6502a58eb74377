//! A WebSocket client over HTTP/2 (RFC 8441), made of parts not written
//! by us: the `h2` crate sends the extended CONNECT and carries the
//! stream; tungstenite frames the WebSocket on it (over a socket pair,
//! pumped to and from the HTTP/2 stream).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

pub type H2Ws = WebSocket<UnixStream>;

/// An HTTP/2 connection with prior knowledge (h2c) that has seen the
/// server's SETTINGS_ENABLE_CONNECT_PROTOCOL.
pub async fn h2_connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send.ready().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !send.is_extended_connect_protocol_enabled() {
        assert!(tokio::time::Instant::now() < deadline, "the server never enabled extended CONNECT");
        tokio::time::sleep(Duration::from_millis(10)).await;
        send = send.ready().await.unwrap();
    }
    send
}

/// Opens a WebSocket on a new stream of `send`: `Err(status)` when the
/// server does not answer 200. `headers` go on the CONNECT.
pub async fn open(
    send: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<H2Ws, u16> {
    open_with(send, addr, "CONNECT", Some("websocket"), path, headers).await
}

/// [`open`] with the method and `:protocol` given.
pub async fn open_with(
    send: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    method: &str,
    protocol: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<H2Ws, u16> {
    let mut request = http::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(protocol) = protocol {
        request = request.extension(h2::ext::Protocol::from(protocol));
    }
    let request = request.body(()).unwrap();
    let end_of_stream = method != "CONNECT";
    let (response, mut send_stream) = send.send_request(request, end_of_stream).expect("send request");
    let response =
        tokio::time::timeout(Duration::from_secs(10), response).await.expect("a response").expect("response");
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    let mut recv = response.into_body();
    let (ours, pumped) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    pumped.set_nonblocking(true).unwrap();
    let (mut from_client, mut to_client) = tokio::net::UnixStream::from_std(pumped).unwrap().into_split();
    // Server to client: DATA frames into the socket pair.
    tokio::spawn(async move {
        while let Some(data) = recv.data().await {
            let Ok(data) = data else { break };
            let _ = recv.flow_control().release_capacity(data.len());
            if to_client.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to_client.shutdown().await;
    });
    // Client to server: what tungstenite writes, as DATA frames.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = send_stream.send_data(Bytes::new(), true);
                    break;
                }
                Ok(n) => {
                    if send_stream.send_data(Bytes::copy_from_slice(&buf[..n]), false).is_err() {
                        break;
                    }
                }
            }
        }
    });
    Ok(WebSocket::from_raw_socket(ours, Role::Client, None))
}

/// The next text message (pings are answered by tungstenite).
pub fn next_text(ws: &mut H2Ws) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame; returns its code.
pub fn expect_close(ws: &mut H2Ws) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(Message::Close(None)) => return 1005,
            Ok(_) => continue,
            Err(e) => panic!("stream ended without a close frame: {e}"),
        }
    }
}

/// Opens a WebSocket stream whose client never reads: its HTTP/2 flow
/// control window (64 KiB) fills and stays full. Keep the streams alive.
pub async fn open_stalled(
    send: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
) -> (h2::SendStream<Bytes>, h2::RecvStream) {
    let request = http::Request::builder()
        .method("CONNECT")
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .extension(h2::ext::Protocol::from("websocket"))
        .body(())
        .unwrap();
    let (response, send_stream) = send.send_request(request, false).expect("send request");
    let response =
        tokio::time::timeout(Duration::from_secs(10), response).await.expect("a response").expect("response");
    assert_eq!(response.status(), 200);
    (send_stream, response.into_body())
}

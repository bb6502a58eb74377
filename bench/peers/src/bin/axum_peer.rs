//! axum peer (axum's `ws`, tungstenite underneath), written the way axum's
//! docs and `examples/websockets` / `examples/chat` do it: a `WebSocketUpgrade`
//! extractor; echo is a `recv` / `send` loop; broadcast splits the socket,
//! keeps one unbounded channel per client in a `Mutex<HashMap>` registry, and
//! forwards the client's channel into its sink (feeds, flushes when empty).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::{future, stream, StreamExt, TryStreamExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

type Registry = Arc<Mutex<HashMap<u64, UnboundedSender<Message>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn main() -> std::io::Result<()> {
    let addr = blaze_bench_peers::addr();
    blaze_bench_peers::run(async move {
        let app = Router::new()
            .route("/broadcast", any(broadcast_upgrade))
            .fallback(echo_upgrade)
            .with_state(Registry::default());
        let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        println!("axum-peer on ws://{addr}");
        axum::serve(listener, app).await
    })
}

async fn echo_upgrade(ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 << 20).on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && socket.send(msg).await.is_err() {
            return;
        }
    }
}

async fn broadcast_upgrade(ws: WebSocketUpgrade, State(registry): State<Registry>) -> Response {
    ws.max_message_size(64 << 20).on_upgrade(move |socket| broadcast(socket, registry))
}

async fn broadcast(socket: WebSocket, registry: Registry) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = unbounded_channel();
    registry.lock().unwrap().insert(id, tx);
    let (sink, read) = socket.split();
    let incoming = read.try_for_each(|msg| {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) {
            // Payloads are `Bytes`: a clone is a reference count.
            for peer in registry.lock().unwrap().values() {
                let _ = peer.send(msg.clone());
            }
        }
        future::ok(())
    });
    let outgoing = stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok).forward(sink);
    futures_util::pin_mut!(incoming, outgoing);
    future::select(incoming, outgoing).await;
    registry.lock().unwrap().remove(&id);
}

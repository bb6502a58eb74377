//! tokio-tungstenite peer, written the way its examples are
//! (`examples/echo-server.rs`, `examples/server.rs`):
//! echo is `read.try_filter(data).forward(write)`; broadcast keeps one
//! unbounded channel per client in a `Mutex<HashMap>` registry and each
//! client forwards its channel into its sink. `forward` feeds messages and
//! flushes when the source has nothing more, so writes are batched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{future, stream, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

type Registry = Arc<Mutex<HashMap<u64, UnboundedSender<Message>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn main() -> std::io::Result<()> {
    let addr = blaze_bench_peers::addr();
    blaze_bench_peers::run(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("tungstenite-peer on ws://{addr}");
        let registry = Registry::default();
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(connection(stream, registry.clone()));
        }
    })
}

async fn connection(stream: TcpStream, registry: Registry) {
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let (write, read) = ws.split();
    if !blaze_bench_peers::is_broadcast(&path) {
        // Echo: text and binary go back as they came; tungstenite answers pings and closes itself.
        let _ = read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary())).forward(write).await;
        return;
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = unbounded_channel();
    registry.lock().unwrap().insert(id, tx);
    let incoming = read.try_for_each(|msg| {
        if msg.is_text() || msg.is_binary() {
            // Message payloads are `Bytes`: a clone is a reference count.
            for peer in registry.lock().unwrap().values() {
                let _ = peer.send(msg.clone());
            }
        }
        future::ok(())
    });
    let outgoing = stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok).forward(write);
    futures_util::pin_mut!(incoming, outgoing);
    future::select(incoming, outgoing).await;
    registry.lock().unwrap().remove(&id);
}

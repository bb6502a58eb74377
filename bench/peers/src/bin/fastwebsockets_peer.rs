//! fastwebsockets peer: hyper 1 + `fastwebsockets::upgrade`, as in its
//! `examples/echo_server.rs` (also its own benchmark server): the echo path
//! reads a frame and writes it back (auto_close and auto_pong on, the
//! defaults), in a task run `unconstrained` as there. Broadcast splits the socket; the reader pushes each message
//! into every client's unbounded channel (a registry of senders in a
//! `Mutex<HashMap>`); each client's writer drains its channel into a
//! buffered writer and flushes when the channel is empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::BufWriter;
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// One message to send: the opcode and a shared payload.
type Out = (OpCode, Bytes);

static REGISTRY: LazyLock<Mutex<HashMap<u64, UnboundedSender<Out>>>> = LazyLock::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn main() -> std::io::Result<()> {
    let addr = blaze_bench_peers::addr();
    blaze_bench_peers::run(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("fastwebsockets-peer on ws://{addr}");
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new().serve_connection(io, service_fn(server_upgrade)).with_upgrades();
                let _ = conn.await;
            });
        }
    })
}

async fn server_upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let broadcast = blaze_bench_peers::is_broadcast(req.uri().path());
    let (response, fut) = upgrade::upgrade(&mut req)?;
    // `unconstrained` (no cooperative-budget yields), as fastwebsockets' examples run their clients.
    tokio::spawn(tokio::task::unconstrained(async move {
        let _ = if broadcast { broadcast_client(fut).await } else { echo_client(fut).await };
    }));
    Ok(response)
}

async fn echo_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn broadcast_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let (read_half, mut write_half) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, BufWriter::new(w))
    });
    let mut reader = FragmentCollectorRead::new(read_half);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = unbounded_channel::<Out>();
    REGISTRY.lock().unwrap().insert(id, tx.clone());

    // The writer: this client's channel into the socket, one flush per drained batch.
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        while let Some((opcode, payload)) = rx.recv().await {
            let mut next = Some((opcode, payload));
            while let Some((opcode, payload)) = next.take() {
                write_half.write_frame(Frame::new(true, opcode, None, Payload::Borrowed(&payload))).await?;
                if opcode == OpCode::Close {
                    return write_half.flush().await;
                }
                next = rx.try_recv().ok();
            }
            write_half.flush().await?;
        }
        Ok::<(), WebSocketError>(())
    }));

    // The reader: every message to every client (this one included); pongs and
    // the closing handshake go through this client's own channel.
    let result = async {
        loop {
            let own = tx.clone();
            let frame = reader
                .read_frame(&mut move |obligated: Frame| {
                    let _ = own.send((obligated.opcode, owned(obligated.payload)));
                    std::future::ready(Ok::<(), WebSocketError>(()))
                })
                .await?;
            match frame.opcode {
                OpCode::Close => break Ok(()),
                OpCode::Text | OpCode::Binary => {
                    let payload = owned(frame.payload);
                    for peer in REGISTRY.lock().unwrap().values() {
                        let _ = peer.send((frame.opcode, payload.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    .await;
    REGISTRY.lock().unwrap().remove(&id);
    drop(tx);
    let _ = writer.await;
    result
}

/// A frame's payload as shared `Bytes` (no copy for the usual `BytesMut`).
fn owned(payload: Payload) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        other => Bytes::from(Vec::from(other)),
    }
}

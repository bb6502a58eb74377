//! The benchmark contract: on any path, echo every message with its
//! opcode; on `/broadcast`, broadcast every message to every client on
//! `/broadcast`, the sender included.
//!
//! `cargo run --release -p blaze-examples --bin echo -- --addr 127.0.0.1:9001`

use blaze_tokio::{App, Callbacks, WsConfig};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:9001".into());
    if let Some(runtime) = arg("--runtime") {
        if runtime != "tokio" {
            eprintln!("unknown runtime {runtime:?}; this build has: tokio");
            std::process::exit(2);
        }
    }
    // One thread: the benchmarks pin each server to one core.
    let threads: usize = arg("--threads").and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(async move {
        let app = App::new();
        // Benchmarks send more than the 1 MiB default per client queue.
        app.config(WsConfig::default().max_message_size(64 << 20).max_frame_size(64 << 20).max_backpressure(64 << 20));
        app.ws(
            "/broadcast",
            Callbacks::new()
                .on_message(|ws, text| {
                    let _ = ws.broadcast(text);
                })
                .on_binary(|ws, data| {
                    let _ = ws.broadcast(data);
                }),
        );
        app.ws(
            "/*path",
            Callbacks::new()
                .on_message(|ws, text| {
                    let _ = ws.send(text);
                })
                .on_binary(|ws, data| {
                    let _ = ws.send(data);
                }),
        );
        println!("echo server on ws://{addr}");
        app.listen(addr).await
    })
}

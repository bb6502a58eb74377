//! The benchmark contract: on any path, echo every message with its
//! opcode; on `/broadcast`, broadcast every message to every client on
//! `/broadcast`, the sender included; on `/room/NAME`, the same within
//! that path (a chat room: `blaze-bench chat --rooms R`).
//!
//! `cargo run --release -p blaze-examples --bin echo -- --addr 127.0.0.1:9001 [--runtime tokio|async-std] [--deflate shared|dedicated] [--redis redis://HOST:PORT]`
//!
//! `--redis` (tokio only) joins a cluster through that Redis: `/broadcast`
//! then reaches the `/broadcast` clients of every echo server on it.
//!
//! Built with `--features metrics` it installs a Prometheus recorder
//! (not served), so a profile shows what the metrics cost per message.
//!
//! `--tls-cert FILE --tls-key FILE` (PEM; built with `--features tls`)
//! serves the same contract over `wss://`.
//!
//! `--deflate` accepts permessage-deflate (level 6, every message
//! compressed: threshold 0); without it offers are declined, so the plain
//! comparisons are unchanged.

use blaze_examples::{arg, listen_async_std, listen_tokio, scheme, tls_from_args};
use blaze_server::{App, Callbacks, CompressionMode, WsConfig};

/// The routes, built once for either runtime.
fn app() -> App {
    let app = App::new();
    // Benchmarks send more than the 1 MiB defaults allow per message and queue.
    let mut config = WsConfig::default().max_message_size(64 << 20).max_frame_size(64 << 20).max_backpressure(64 << 20);
    match arg("--deflate").as_deref() {
        None => {}
        Some("shared") => config = config.enable_compression(true).compression_threshold(0),
        Some("dedicated") => {
            config = config.compression_mode(CompressionMode::Dedicated).compression_threshold(0);
        }
        Some(other) => {
            eprintln!("unknown --deflate {other:?}: use shared or dedicated");
            std::process::exit(2);
        }
    }
    app.config(config);
    // Every message to every client on the same path, the sender included.
    let broadcast = || {
        Callbacks::new()
            .on_message(|ws, text| {
                let _ = ws.broadcast(text);
            })
            .on_binary(|ws, data| {
                let _ = ws.broadcast(data);
            })
    };
    app.ws("/broadcast", broadcast());
    app.ws("/room/:name", broadcast());
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
    app
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:9001".into());
    let runtime = arg("--runtime").unwrap_or_else(|| "tokio".into());
    // Built with `--features metrics`: a Prometheus recorder, to measure
    // what counting costs per message (nothing scrapes it).
    #[cfg(feature = "metrics")]
    let _metrics =
        metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().map_err(std::io::Error::other)?;
    let tls = tls_from_args();
    println!("echo server on {}://{addr} ({runtime})", scheme(&tls));
    match runtime.as_str() {
        "tokio" => {
            // One worker: the benchmarks pin each server to one core.
            let threads = arg("--threads").and_then(|t| t.parse().ok()).unwrap_or(1);
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
            rt.block_on(async {
                let app = blaze_tokio::App::from(app());
                if let Some(url) = arg("--redis") {
                    let backplane = blaze_redis::RedisBackplane::connect(&url).await.map_err(std::io::Error::other)?;
                    println!("clustered through {url} as node {:016x}", backplane.node_id());
                    app.cluster(backplane);
                }
                listen_tokio(&app, &addr, tls).await
            })
        }
        "async-std" => {
            if arg("--redis").is_some() {
                eprintln!("--redis needs --runtime tokio (the Redis backplane runs on tokio)");
                std::process::exit(2);
            }
            if std::env::var_os("ASYNC_STD_THREAD_COUNT").is_none() {
                std::env::set_var("ASYNC_STD_THREAD_COUNT", "1");
            }
            async_std::task::block_on(listen_async_std(&blaze_async_std::App::from(app()), &addr, tls))
        }
        other => {
            eprintln!("unknown runtime {other:?}: use tokio or async-std");
            std::process::exit(2);
        }
    }
}

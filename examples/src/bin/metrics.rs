//! Blaze's metrics in Prometheus format at `GET /metrics`, beside an echo
//! route (`/echo`) and a broadcast room (`/room`) to move them.
//!
//! `cargo run -p blaze-examples --features metrics --bin metrics` (`--addr HOST:PORT` to move it),
//! then `curl http://127.0.0.1:8080/metrics`.
//!
//! The exporter is `metrics-exporter-prometheus` without its own HTTP
//! listener: its recorder is installed before the app serves (Blaze
//! registers its counters when serving starts), and the `/metrics` route
//! renders the handle. The names are listed in the README's metrics table.

use std::time::Duration;

use blaze_tokio::{App, Callbacks, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let prometheus = PrometheusBuilder::new()
        // Buckets make the fan-out a Prometheus histogram (a summary without).
        .set_buckets_for_metric(Matcher::Full("blaze_broadcast_fanout".into()), &[1.0, 10.0, 100.0, 1000.0, 10000.0])
        .map_err(std::io::Error::other)?
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let app = App::new();
    let handle = prometheus.clone();
    app.get("/metrics", move |_req| Response::with_body(200, "text/plain; version=0.0.4", handle.render()));
    app.ws(
        "/echo",
        Callbacks::new()
            .on_message(|ws, text| {
                let _ = ws.send(text);
            })
            .on_binary(|ws, data| {
                let _ = ws.send(data);
            }),
    );
    app.ws(
        "/room",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.broadcast(text);
        }),
    );
    // Without its HTTP listener the exporter needs its upkeep run (it
    // drains histogram samples); rendering does it too.
    app.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            prometheus.run_upkeep();
        }
    });
    tracing::info!("metrics at http://{addr}/metrics");
    app.listen(addr).await
}

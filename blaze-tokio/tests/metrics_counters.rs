//! With the `metrics` feature, the rarer counters move too: rate-limit
//! hits, backpressure closes, and closes by cause (a protocol error, a
//! close we started). Rendered by the Prometheus exporter (its recorder is
//! global, so this file is its own test binary, one test).

mod common;

use std::time::Duration;

use blaze_tokio::{App, Callbacks, CloseCode, RateLimit, RateLimitAction, WsConfig};
use common::*;
use tungstenite::Message;

fn value(rendered: &str, key: &str) -> f64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Sends the queued close reply and reads to the end.
fn finish(client: &mut Client) {
    let _ = client.flush();
    while client.read().is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_backpressure_and_close_causes_are_counted() {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().unwrap();
    let app = App::new();
    let limited = RateLimit { per_second: 1.0, burst: 2, action: RateLimitAction::Close };
    app.ws_with_config("/limited", WsConfig::default().rate_limit(Some(limited)), Callbacks::new());
    // Every message asks for 64 KiB the client never reads: the queue
    // passes its 16 KiB bound at once, and the Close policy closes.
    app.ws_with_config(
        "/flood",
        WsConfig::default().max_backpressure(16 * 1024),
        Callbacks::new().on_message(|ws, _| {
            for _ in 0..4 {
                let _ = ws.send_binary(vec![0u8; 64 * 1024]);
            }
        }),
    );
    app.ws(
        "/bye",
        Callbacks::new().on_message(|ws, _| {
            let _ = ws.close(CloseCode(4001), "bye");
        }),
    );
    let (addr, _server) = serve(&app).await;

    blocking(move || {
        let mut limited = connect(addr, "/limited");
        for _ in 0..3 {
            let _ = limited.send(Message::text("x"));
        }
        assert_eq!(expect_close(&mut limited).0, 1008);
        // Answer the close (tungstenite queued the reply): the server's close is `local`.
        finish(&mut limited);

        let mut flood = connect(addr, "/flood");
        flood.send(Message::text("go")).unwrap();

        let mut bye = connect(addr, "/bye");
        bye.send(Message::text("x")).unwrap();
        assert_eq!(expect_close(&mut bye).0, 4001);
        finish(&mut bye);

        // Invalid UTF-8 in a text frame: the server fails the connection with 1007.
        let mut bad = connect(addr, "/bye");
        let frame = tungstenite::protocol::frame::Frame::message(
            vec![0xff, 0xfe],
            tungstenite::protocol::frame::coding::OpCode::Data(tungstenite::protocol::frame::coding::Data::Text),
            true,
        );
        bad.write(Message::Frame(frame)).unwrap();
        let _ = bad.flush();
        assert_eq!(expect_close(&mut bad).0, 1007);
    })
    .await;

    let rendered = || prometheus.render();
    let ok = eventually(Duration::from_secs(20), || {
        let r = rendered();
        value(&r, "blaze_backpressure_closes_total") >= 1.0
            && value(&r, r#"blaze_connections_closed_total{code="1007",cause="protocol"}"#) >= 1.0
    })
    .await;
    let r = rendered();
    assert!(ok, "{r}");
    assert_eq!(value(&r, "blaze_rate_limited_total"), 1.0, "{r}");
    assert_eq!(value(&r, "blaze_backpressure_closes_total"), 1.0, "{r}");
    assert_eq!(value(&r, r#"blaze_connections_closed_total{code="4001",cause="local"}"#), 1.0, "{r}");
    assert_eq!(value(&r, r#"blaze_connections_closed_total{code="1008",cause="local"}"#), 1.0, "{r}");
    assert_eq!(value(&r, r#"blaze_connections_closed_total{code="1007",cause="protocol"}"#), 1.0, "{r}");
}

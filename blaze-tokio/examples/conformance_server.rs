//! A server exposing every feature on its own route, for the end-to-end
//! tests that drive it with clients not written by us (Python
//! `websockets`, Node `ws`, Chromium). Not a newcomer example: see
//! `examples/` at the workspace root for those.
//!
//! `cargo run -p blaze-tokio --example conformance_server -- --addr 127.0.0.1:0`
//! prints `listening on ws://ADDR` once ready.
//!
//! | route | behaviour |
//! |---|---|
//! | `/echo` | callbacks: echo text and binary |
//! | `/echo-trait` | a `Handler` struct: echo |
//! | `/echo-stream` | stream style: `recv()` loop, echo |
//! | `/rooms/:room` | on open sends `{"room": ..., "user": query user}` |
//! | `/json` | `on_json`: `{"a":1,"b":2}` → `{"sum":3}`; malformed → error message |
//! | `/json-stream` | `recv_json` in stream style, same contract |
//! | `/panic` | text `boom` panics the handler (→ 1011); other text echoes |
//! | `/heartbeat` | ping every 200 ms, pong timeout 300 ms |
//! | `/origin` | only `Origin: http://allowed.example` (or none) → else 403 |
//! | `/limited` | at most 1 connection → else 503 |
//! | `/subprotocol` | speaks `chat.v2`, `chat.v1` (server preference) |
//! | `/close-me` | on text `CODE reason`, server closes with that code |
//! | `/broadcast` | every message to every client on `/broadcast` |
//! | `/deflate` | permessage-deflate, shared mode (no context either way), threshold 0: echo |
//! | `/deflate-dedicated` | permessage-deflate, dedicated mode (context takeover, window 15), threshold 0: echo |
//! | `/deflate-dedicated-10` | dedicated mode with a 10-bit window: echo |
//! | `/deflate-small` | shared mode, `max_message_size` 64 KiB (bombs get 1009): echo |
//! | `/deflate-uncompressed` | shared mode, but replies with `send_uncompressed` |
//! | `/deflate-broadcast` | shared mode: every message to every client on it (compressed once) |
//! | `/deflate-info` | shared mode: on open sends `{"compressed": bool}` |
//! | `/guarded` | token guard: `Authorization: Bearer let-me-in` or `?token=let-me-in` → on open sends `hello USER` (`?user=`, default `guest`), then echoes; no token → 401 `missing token`; another token → 403 `bad token` |
//! | `/small` | `max_message_size` 1 KiB: larger messages (whole or fragmented) → 1009; echo |
//! | `/per-ip` | `max_connections_per_ip` 1 → a second connection from the address gets 429; echo |
//! | `/rate` | rate limit 2 msg/s, burst 5, error action: excess messages are answered with `{"type":"error","error":"rate limit exceeded"}`, the connection stays; echo |
//! | `/rate-close` | rate limit 2 msg/s, burst 5, close action: the first excess message closes with 1008; echo |
//! | `GET /closes` | JSON list of `{path, code, reason}` from every `on_close` so far |
//! | `GET /stats` | `{"total": N, "encodings": M, "compressions": C}` |
//! | `POST /shutdown` | starts a graceful shutdown |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{
    guard, App, Callbacks, CompressionMode, Handler, Json, RateLimit, RateLimitAction, Response, Utf8Bytes, WebSocket,
    WsConfig,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

/// Who the `/guarded` route's guard let in.
#[derive(Clone)]
struct User(String);

struct EchoTrait;

impl Handler for EchoTrait {
    fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
        let _ = ws.send(text);
    }
    fn on_binary(&self, ws: &WebSocket, data: blaze_tokio::Bytes) {
        let _ = ws.send(data);
    }
}

type Closes = Arc<Mutex<Vec<serde_json::Value>>>;

fn recording(closes: &Closes, callbacks: Callbacks) -> Callbacks {
    let closes = closes.clone();
    callbacks.on_close(move |ws, code, reason| {
        closes.lock().unwrap().push(serde_json::json!({"path": ws.path(), "code": code, "reason": reason}));
    })
}

fn echo() -> Callbacks {
    Callbacks::new()
        .on_message(|ws, text| {
            let _ = ws.send(text);
        })
        .on_binary(|ws, data| {
            let _ = ws.send(data);
        })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let app = App::new();
    app.drain_timeout(Duration::from_secs(3));
    let closes: Closes = Arc::default();

    app.ws("/echo", recording(&closes, echo()));
    app.ws("/echo-trait", EchoTrait);
    app.ws_stream("/echo-stream", |mut ws| async move {
        while let Some(message) = ws.recv().await {
            let _ = ws.send(message);
        }
    });
    app.ws(
        "/rooms/:room",
        recording(
            &closes,
            Callbacks::new().on_open(|ws| {
                let _ = ws.send_json(&serde_json::json!({"room": ws.param("room"), "user": ws.query("user")}));
            }),
        ),
    );
    app.ws(
        "/json",
        Callbacks::new().on_json(|ws, add: Add| {
            let _ = ws.send(Json(serde_json::json!({"sum": add.a + add.b})));
        }),
    );
    app.ws_stream("/json-stream", |mut ws| async move {
        while let Some(parsed) = ws.recv_json::<Add>().await {
            if let Ok(add) = parsed {
                let _ = ws.send_json(&serde_json::json!({"sum": add.a + add.b}));
            }
        }
    });
    app.ws(
        "/panic",
        recording(
            &closes,
            Callbacks::new().on_message(|ws, text| {
                if &*text == "boom" {
                    panic!("handler asked to panic");
                }
                let _ = ws.send(text);
            }),
        ),
    );
    app.ws_with_config(
        "/heartbeat",
        WsConfig::default()
            .ping_interval(Some(Duration::from_millis(200)))
            .pong_timeout(Duration::from_millis(300)),
        recording(&closes, echo()),
    );
    app.ws_with_config(
        "/origin",
        WsConfig::default().allowed_origins(["http://allowed.example"]),
        echo(),
    );
    app.ws_with_config("/limited", WsConfig::default().max_connections(Some(1)), echo());
    app.ws_with_config("/subprotocol", WsConfig::default().subprotocols(["chat.v2", "chat.v1"]), {
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(ws.protocol().unwrap_or("none").to_owned());
        })
    });
    app.ws(
        "/close-me",
        recording(
            &closes,
            Callbacks::new().on_message(|ws, text| {
                let (code, reason) = text.split_once(' ').unwrap_or((&text, ""));
                let _ = ws.close(code.parse::<u16>().unwrap_or(1000), reason);
            }),
        ),
    );
    app.ws(
        "/broadcast",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.broadcast(text);
        }),
    );
    let shared = || WsConfig::default().enable_compression(true).compression_threshold(0);
    let dedicated = || shared().compression_mode(CompressionMode::Dedicated);
    app.ws_with_config("/deflate", shared(), recording(&closes, echo()));
    app.ws_with_config("/deflate-dedicated", dedicated(), recording(&closes, echo()));
    app.ws_with_config("/deflate-dedicated-10", dedicated().compression_window_bits(10), echo());
    app.ws_with_config("/deflate-small", shared().max_message_size(64 * 1024), recording(&closes, echo()));
    app.ws_with_config(
        "/deflate-uncompressed",
        shared(),
        Callbacks::new()
            .on_message(|ws, text| {
                let _ = ws.send_uncompressed(text);
            })
            .on_binary(|ws, data| {
                let _ = ws.send_uncompressed(data);
            }),
    );
    app.ws_with_config(
        "/deflate-broadcast",
        shared(),
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.broadcast(text);
        }),
    );
    app.ws_with_config(
        "/deflate-info",
        shared(),
        Callbacks::new().on_open(|ws| {
            let _ = ws.send_json(&serde_json::json!({"compressed": ws.is_compressed()}));
        }),
    );
    app.ws(
        "/guarded",
        recording(
            &closes,
            echo().on_open(|ws| {
                let user = ws.local::<User>().map_or_else(|| "?".to_owned(), |u| u.0);
                let _ = ws.send(format!("hello {user}"));
            }),
        ),
    )
    .guard(guard(|req, locals| match req.bearer_token() {
        Some("let-me-in") => {
            locals.insert(User(req.query("user").unwrap_or("guest").to_owned()));
            Ok(())
        }
        Some(_) => Err(Response::text(403, "bad token")),
        None => Err(Response::text(401, "missing token")),
    }));
    app.ws_with_config("/small", WsConfig::default().max_message_size(1024), recording(&closes, echo()));
    app.ws_with_config("/per-ip", WsConfig::default().max_connections_per_ip(Some(1)), echo());
    let rate = |action| WsConfig::default().rate_limit(Some(RateLimit { per_second: 2.0, burst: 5, action }));
    app.ws_with_config("/rate", rate(RateLimitAction::ErrorMessage), recording(&closes, echo()));
    app.ws_with_config("/rate-close", rate(RateLimitAction::Close), recording(&closes, echo()));
    issue16_routes(&app, rate(RateLimitAction::Close));
    {
        let closes = closes.clone();
        app.get("/closes", move |_| {
            Response::with_body(200, "application/json", serde_json::to_string(&*closes.lock().unwrap()).unwrap())
        });
    }
    {
        let stats = app.clone();
        app.get("/stats", move |_| {
            let body = serde_json::json!({
                "total": stats.total_connections(),
                "encodings": stats.encodings(),
                "compressions": stats.compressions(),
            });
            Response::with_body(200, "application/json", body.to_string())
        });
    }
    {
        let handle = app.shutdown_handle();
        app.post("/shutdown", move |_| {
            handle.shutdown();
            Response::text(202, "shutting down")
        });
    }

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    app.serve(listener).await?;
    println!("server stopped");
    Ok(())
}

/// Routes for tests-external/python/test_api_issue16.py: control frames
/// through `recv_frame`, a stream handler under a closing rate limit, and
/// an async guard.
fn issue16_routes(app: &App, rate_close: WsConfig) {
    app.ws_stream("/frames", |mut ws| async move {
        while let Some(frame) = ws.recv_frame().await {
            let reply = match frame {
                blaze_tokio::Frame::Text(t) => format!("text {t}"),
                blaze_tokio::Frame::Binary(b) => format!("binary {}", b.len()),
                blaze_tokio::Frame::Ping(p) => format!("ping {}", String::from_utf8_lossy(&p)),
                blaze_tokio::Frame::Pong(p) => format!("pong {}", String::from_utf8_lossy(&p)),
                _ => continue,
            };
            let _ = ws.send(reply);
        }
    });
    app.ws_stream_with_config("/rate-close-stream", rate_close, |mut ws| async move {
        while let Some(msg) = ws.recv().await {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            if ws.send(msg).is_err() {
                break;
            }
        }
    });
    app.ws_stream("/admit", |mut ws| async move {
        let _ = ws.send(format!("hi {}", ws.local::<String>().unwrap_or_default()));
        while ws.recv().await.is_some() {}
    })
    .guard_async(|req| async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        match req.query("token") {
            Some("t1") => {
                let accept = blaze_tokio::Admission::accept().local("alice".to_owned());
                if req.protocols().contains(&"v2") { accept.protocol("v2") } else { accept }
            }
            _ => blaze_tokio::Admission::reject(401, "no"),
        }
    });
}

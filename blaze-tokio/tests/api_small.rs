//! The small API items of issue 16, end to end: automatic error replies
//! customised or off, `on_close`'s code with who closed
//! (`ws.close_cause()`), `Response::json`, `check_origin` seeing the
//! framework's `Request`, and `ws.user_agent()`.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaze_tokio::{
    App, Callbacks, CloseCause, ErrorReplies, Message as BlazeMessage, RateLimit, Request, Response, WsConfig, WsError,
};
use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

#[derive(serde::Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

fn json_routes(app: &App, path: &str, replies: ErrorReplies, errors: Arc<Mutex<Vec<String>>>) {
    let config = WsConfig::default().error_replies(replies.clone());
    let errors2 = errors.clone();
    app.ws_with_config(
        path,
        config.clone(),
        Callbacks::new()
            .on_json(|ws, add: Add| {
                let _ = ws.send(format!("{}", add.a + add.b));
            })
            .on_error(move |_, e| errors2.lock().unwrap().push(e.to_string())),
    );
    app.ws_stream_with_config(&format!("{path}/stream"), config, move |mut ws| {
        let errors = errors.clone();
        async move {
            while let Some(add) = ws.recv_json::<Add>().await {
                match add {
                    Ok(add) => {
                        let _ = ws.send(format!("{}", add.a + add.b));
                    }
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_replies_can_be_turned_off_or_replaced_and_on_error_still_hears() {
    let app = App::new();
    let errors = Arc::new(Mutex::new(Vec::new()));
    json_routes(&app, "/off", ErrorReplies::Off, errors.clone());
    json_routes(
        &app,
        "/custom",
        ErrorReplies::custom(|e| match e {
            WsError::Json(_) => Some(BlazeMessage::text(r#"{"op":"bad_request"}"#)),
            _ => None,
        }),
        errors.clone(),
    );
    json_routes(&app, "/default", ErrorReplies::default(), errors.clone());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        for path in ["/off", "/off/stream", "/custom", "/custom/stream", "/default", "/default/stream"] {
            let mut client = connect(addr, path);
            client.send(Message::text("not json")).unwrap();
            client.send(Message::text(r#"{"a":2,"b":3}"#)).unwrap();
            let first = next_text(&mut client);
            match path {
                p if p.starts_with("/off") => assert_eq!(first, "5", "{path}: no error reply at all"),
                p if p.starts_with("/custom") => {
                    assert_eq!(first, r#"{"op":"bad_request"}"#, "{path}");
                    assert_eq!(next_text(&mut client), "5");
                }
                _ => {
                    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
                    assert_eq!(v["type"], "error", "{path}: the default stays");
                    assert!(v["error"].as_str().unwrap().starts_with("invalid JSON: "), "{first}");
                    assert_eq!(next_text(&mut client), "5");
                }
            }
        }
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || errors.lock().unwrap().len() == 6).await, "{:?}", errors.lock().unwrap());
    assert!(errors.lock().unwrap().iter().all(|e| e.starts_with("invalid JSON")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_reply_can_be_replaced_or_silenced() {
    let app = App::new();
    let limited = |replies| WsConfig::default().rate_limit(Some(RateLimit::new(0.001, 1))).error_replies(replies);
    let echo = || Callbacks::new().on_message(|ws, t| {
        let _ = ws.send(t);
    });
    app.ws_with_config(
        "/custom",
        limited(ErrorReplies::custom(|e| matches!(e, WsError::RateLimited).then(|| BlazeMessage::text("slow down")))),
        echo(),
    );
    app.ws_with_config("/off", limited(ErrorReplies::Off), echo());
    let (addr, _server) = serve(&app).await;
    let sentinel = app.clone();
    blocking(move || {
        let mut client = connect(addr, "/custom");
        client.send(Message::text("one")).unwrap();
        client.send(Message::text("two")).unwrap();
        assert_eq!(next_text(&mut client), "one");
        assert_eq!(next_text(&mut client), "slow down");
        let mut client = connect(addr, "/off");
        client.send(Message::text("one")).unwrap();
        client.send(Message::text("two")).unwrap();
        assert_eq!(next_text(&mut client), "one");
        // Nothing for "two": the next thing is the sentinel.
        std::thread::sleep(Duration::from_millis(100));
        sentinel.broadcast("/off", "sentinel").unwrap();
        assert_eq!(next_text(&mut client), "sentinel");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_close_code_agrees_with_who_closed() {
    let app = App::new();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = closes.clone();
    app.ws(
        "/c",
        Callbacks::new()
            .on_message(|ws, text| {
                if text.as_str() == "close me" {
                    let _ = ws.close(4001u16, "as asked");
                }
            })
            .on_close(move |ws, code, reason| seen.lock().unwrap().push((ws.query("who").unwrap().to_owned(), code, reason.to_owned(), ws.close_cause()))),
    );
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        // The peer closes first.
        let mut client = connect(addr, "/c?who=peer");
        client.close(Some(tungstenite::protocol::CloseFrame { code: close_code(4100), reason: "bye".into() })).unwrap();
        while client.read().is_ok() {}
        // The server closes first; the client echoes the code.
        let mut client = connect(addr, "/c?who=server");
        client.send(Message::text("close me")).unwrap();
        assert_eq!(expect_close(&mut client).0, 4001);
        let _ = client.flush();
        while client.read().is_ok() {}
        // A protocol error: an unmasked frame from a client (1002).
        let mut raw = raw_ws_connect(addr, "/c?who=protocol", None, "");
        raw.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
        let mut buf = [0u8; 64];
        let _ = std::io::Read::read(&mut raw, &mut buf);
        // Vanished: no close frame at all (1006).
        let raw = raw_ws_connect(addr, "/c?who=vanished", None, "");
        drop(raw);
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || closes.lock().unwrap().len() == 4).await);
    let mut closes = closes.lock().unwrap().clone();
    closes.sort_by(|a, b| a.0.cmp(&b.0));
    let by_who: Vec<(&str, u16, Option<&CloseCause>)> = closes.iter().map(|(w, c, _, cause)| (w.as_str(), *c, cause.as_ref())).collect();
    assert_eq!(by_who[0].0, "peer");
    assert_eq!((by_who[0].1, by_who[0].2), (4100, Some(&CloseCause::Remote)));
    assert_eq!(closes[0].2, "bye");
    assert_eq!(by_who[1].0, "protocol");
    assert_eq!(by_who[1].1, 1002, "the code we failed the connection with");
    assert!(matches!(by_who[1].2, Some(CloseCause::Protocol(_))), "{:?}", by_who[1]);
    assert_eq!(by_who[2].0, "server");
    assert_eq!((by_who[2].1, by_who[2].2), (4001, Some(&CloseCause::Local)), "the peer's answer, our code echoed");
    assert_eq!(by_who[3].0, "vanished");
    assert_eq!((by_who[3].1, by_who[3].2), (1006, Some(&CloseCause::TransportClosed)));
}

#[derive(serde::Serialize)]
struct Stats {
    online: usize,
    route: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_json_check_origin_with_request_and_user_agent() {
    let app = App::new();
    let stats = app.clone();
    app.get("/stats", move |_req| Response::json(200, &Stats { online: stats.total_connections(), route: "/ua" }));
    app.get("/created", |_req| Response::json(201, &serde_json::json!({"id": 7})).header("X-Id", "7"));
    app.ws_with_config(
        "/ua/:room",
        // The framework's Request: path, params, query and headers.
        WsConfig::default().check_origin(|req: &Request| {
            req.header("origin") == Some("https://ok.example") && req.param("room") == Some("1") && req.query("k") == Some("v")
        }),
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("ua={} room={}", ws.user_agent().unwrap_or("none"), ws.info().params[0].1));
        }),
    );
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let (status, response) = raw_http(addr, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status, 200);
        assert!(response.to_ascii_lowercase().contains("content-type: application/json"), "{response}");
        assert!(response.ends_with(r#"{"online":0,"route":"/ua"}"#), "{response}");
        let (status, response) = raw_http(addr, "GET /created HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status, 201);
        assert!(response.contains("X-Id: 7") && response.ends_with(r#"{"id":7}"#), "{response}");

        let upgrade = |path: &str, origin: &str| {
            let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
            request.headers_mut().insert("Origin", origin.parse().unwrap());
            request.headers_mut().insert("User-Agent", "blaze-test/1.0".parse().unwrap());
            tungstenite::connect(request).map_err(Box::new)
        };
        let (mut client, _) = upgrade("/ua/1?k=v", "https://ok.example").expect("allowed");
        set_timeout(&client, Duration::from_secs(5));
        assert_eq!(next_text(&mut client), "ua=blaze-test/1.0 room=1");
        for (path, origin) in [("/ua/1?k=v", "https://evil.example"), ("/ua/2?k=v", "https://ok.example"), ("/ua/1", "https://ok.example")] {
            match upgrade(path, origin) {
                Err(e) if matches!(*e, tungstenite::Error::Http(_)) => {
                    let tungstenite::Error::Http(response) = *e else { unreachable!() };
                    assert_eq!(response.status().as_u16(), 403, "{path} {origin}")
                }
                other => panic!("{path} {origin}: expected 403, got {:?}", other.map(|_| ())),
            }
        }
    })
    .await;
}

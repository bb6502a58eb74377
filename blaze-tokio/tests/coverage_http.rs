//! Plain HTTP routes and admission: body limits and `Content-Length`
//! parsing, a panicking handler (500, and the server goes on), guards on
//! HTTP routes, the request-head limit (431), the handshake timeout on a
//! slow body (408), and `allowed_origins`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blaze_tokio::{guard, App, Callbacks, Response, WsConfig};
use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

/// The body of an HTTP response (after the blank line).
fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn app(calls: Arc<AtomicUsize>) -> App {
    let app = App::new();
    let c = calls.clone();
    app.post("/upload", move |req| {
        c.fetch_add(1, Ordering::SeqCst);
        Response::text(200, format!("len={}", req.body.len()))
    });
    app.get("/boom", |_req| panic!("http handler panics"));
    app.get("/ok", |_req| Response::text(200, "fine"));
    app.ws(
        "/echo",
        Callbacks::new().on_message(|ws, text| {
            let _ = ws.send(text);
        }),
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_one_mib_is_413_and_one_mib_is_accepted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (addr, _server) = serve(&app(calls.clone())).await;
    let (status, response) = blocking(move || {
        raw_http(addr, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n")
    })
    .await;
    assert_eq!((status, body_of(&response)), (413, "body too large"), "{response}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler ran for a refused body");
    let (status, response) = blocking(move || {
        // Read to EOF: `Connection: close`, or the kept-alive connection idles 5 s first.
        let mut request = b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1048576\r\n\r\n".to_vec();
        request.extend(std::iter::repeat(b'q').take(1 << 20));
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&request).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        (response.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0), response)
    })
    .await;
    assert_eq!((status, body_of(&response)), (200, "len=1048576"), "{response}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_is_read_to_its_content_length() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (addr, _server) = serve(&app(calls)).await;
    let (status, response) =
        blocking(move || raw_http(addr, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")).await;
    assert_eq!((status, body_of(&response)), (200, "len=5"));
    // No Content-Length: an empty body.
    let (status, response) = blocking(move || raw_http(addr, "POST /upload HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!((status, body_of(&response)), (200, "len=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_content_length_is_400() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (addr, _server) = serve(&app(calls.clone())).await;
    for value in ["abc", "-1", "5x", "99999999999999999999999999"] {
        let (status, response) = blocking(move || {
            raw_http(addr, &format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n"))
        })
        .await;
        assert_eq!((status, body_of(&response)), (400, "bad content-length"), "Content-Length: {value}: {response}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Regression: `Content-Length: +5` was taken as 5; RFC 9110 §8.6 allows digits only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_a_sign_is_400() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (addr, _server) = serve(&app(calls.clone())).await;
    let (status, response) =
        blocking(move || raw_http(addr, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello")).await;
    assert_eq!((status, body_of(&response)), (400, "bad content-length"), "{response}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Regression: a second, conflicting `Content-Length` was ignored (RFC 9112 §6.3: 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_are_400() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (addr, _server) = serve(&app(calls.clone())).await;
    let (status, response) = blocking(move || {
        raw_http(addr, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 10\r\n\r\nhelloworld")
    })
    .await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A chunked body is refused, not read as empty (RFC 9112 §6.1): 501, and
/// the handler never runs; equal duplicate lengths are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_is_501_and_equal_duplicate_lengths_are_accepted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (addr, _server) = serve(&app(calls.clone())).await;
    let (status, response) = blocking(move || {
        raw_http(addr, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    })
    .await;
    assert_eq!(status, 501, "{response}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let (status, response) = blocking(move || {
        raw_http(addr, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    })
    .await;
    assert_eq!(status, 200, "{response}");
    assert!(response.ends_with("len=5"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_gets_408_after_the_handshake_timeout() {
    let app = app(Arc::new(AtomicUsize::new(0)));
    app.config(WsConfig::default().handshake_timeout(Duration::from_millis(400)));
    let (addr, _server) = serve(&app).await;
    let (status, response, elapsed) = blocking(move || {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Half the announced body, then nothing.
        stream.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello").unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        (status, response, started.elapsed())
    })
    .await;
    assert_eq!((status, body_of(&response)), (408, "handshake timed out"), "{response}");
    assert!(elapsed >= Duration::from_millis(390), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_http_handler_is_500_and_the_server_keeps_serving() {
    let (addr, _server) = serve(&app(Arc::new(AtomicUsize::new(0)))).await;
    blocking(move || {
        for _ in 0..3 {
            let (status, response) = raw_http(addr, "GET /boom HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!((status, body_of(&response)), (500, "internal server error"), "{response}");
        }
        let (status, response) = raw_http(addr, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((status, body_of(&response)), (200, "fine"));
        let mut client = connect(addr, "/echo");
        client.send(Message::text("still up")).unwrap();
        assert_eq!(next_text(&mut client), "still up");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_on_http_routes_and_groups() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen_body = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = App::new();
    let auth = guard(|req, _locals| match req.bearer_token() {
        Some("good") => Ok(()),
        Some(_) => Err(Response::text(403, "bad token")),
        None => Err(Response::text(401, "token required")),
    });
    let body_check = {
        let seen = seen_body.clone();
        guard(move |req, _| {
            // Guards on plain routes see the body.
            seen.lock().unwrap().push(req.text().unwrap_or("<not utf-8>").to_owned());
            if req.body.starts_with(b"forbidden") {
                Err(Response::text(422, "refused by body guard"))
            } else {
                Ok(())
            }
        })
    };
    let c = calls.clone();
    app.get("/stats", move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        Response::text(200, "stats")
    })
    .guard(auth.clone());
    let c = calls.clone();
    app.post("/submit", move |req| {
        c.fetch_add(1, Ordering::SeqCst);
        Response::text(200, format!("got {}", req.text().unwrap_or("")))
    })
    .guard(body_check);
    let admin = app.group("/admin").guard(auth);
    let c = calls.clone();
    admin.get("/page", move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        Response::text(200, "admin page")
    });
    let (addr, _server) = serve(&app).await;
    let get = |path: &'static str, extra: &'static str| {
        blocking(move || raw_http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n")))
    };
    let (status, response) = get("/stats", "").await;
    assert_eq!((status, body_of(&response)), (401, "token required"));
    let (status, response) = get("/stats?token=nope", "").await;
    assert_eq!((status, body_of(&response)), (403, "bad token"));
    let (status, response) = get("/admin/page", "").await;
    assert_eq!((status, body_of(&response)), (401, "token required"));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a handler ran past its guard");
    let (status, response) = get("/stats", "Authorization: Bearer good\r\n").await;
    assert_eq!((status, body_of(&response)), (200, "stats"));
    let (status, response) = get("/admin/page?token=good", "").await;
    assert_eq!((status, body_of(&response)), (200, "admin page"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let post = |body: &'static str| {
        blocking(move || {
            raw_http(addr, &format!("POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()))
        })
    };
    let (status, response) = post("forbidden stuff").await;
    assert_eq!((status, body_of(&response)), (422, "refused by body guard"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let (status, response) = post("fine stuff").await;
    assert_eq!((status, body_of(&response)), (200, "got fine stuff"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(*seen_body.lock().unwrap(), ["forbidden stuff", "fine stuff"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_over_max_request_head_is_431() {
    let app = app(Arc::new(AtomicUsize::new(0)));
    app.config(WsConfig::default().max_request_head(2048));
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        // ~1.5 KiB of head: served.
        let filler = "f".repeat(1500);
        let (status, response) = raw_http(addr, &format!("GET /ok HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n"));
        assert_eq!((status, body_of(&response)), (200, "fine"), "{response}");
        // ~2.6 KiB (under the 16 KiB default): 431, for plain routes...
        let filler = "f".repeat(2500);
        let (status, response) = raw_http(addr, &format!("GET /ok HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n"));
        assert_eq!((status, body_of(&response)), (431, "request head exceeds 2048 bytes"), "{response}");
        // ...and upgrades alike.
        let mut request = format!("ws://{addr}/echo").into_client_request().unwrap();
        request.headers_mut().insert("X-Filler", filler.parse().unwrap());
        match tungstenite::connect(request) {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 431),
            Err(e) => panic!("expected a 431, got {e}"),
            Ok(_) => panic!("expected a 431, got a connection"),
        }
    })
    .await;
}

fn origin_app() -> App {
    let app = App::new();
    app.ws_with_config(
        "/origin",
        WsConfig::default().allowed_origins(["http://good.example"]),
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("origin={}", ws.header("origin").unwrap_or("none")));
        }),
    );
    app
}

fn with_origin(addr: std::net::SocketAddr, origin: Option<&str>) -> Result<String, (u16, String)> {
    let mut request = format!("ws://{addr}/origin").into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    match tungstenite::connect(request) {
        Ok((mut client, _)) => {
            set_timeout(&client, Duration::from_secs(5));
            Ok(next_text(&mut client))
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_accepts_no_origin_and_refuses_a_wrong_one_with_403() {
    let (addr, _server) = serve(&origin_app()).await;
    blocking(move || {
        // Non-browser clients send no Origin: accepted.
        assert_eq!(with_origin(addr, None), Ok("origin=none".to_owned()));
        assert_eq!(with_origin(addr, Some("http://good.example")), Ok("origin=http://good.example".to_owned()));
        assert_eq!(with_origin(addr, Some("http://evil.example")), Err((403, "origin not allowed".to_owned())));
        // Exact match only: no prefix or suffix tricks.
        assert_eq!(with_origin(addr, Some("http://good.example.evil")).unwrap_err().0, 403);
    })
    .await;
}

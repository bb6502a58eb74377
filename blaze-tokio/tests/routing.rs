//! Path parameters, query strings, groups, plain HTTP routes and the
//! HTTP answers for everything that is not a valid upgrade.

mod common;

use blaze_tokio::{App, Callbacks, Response};
use common::*;

fn app() -> App {
    let app = App::new();
    app.ws(
        "/game/:room_id",
        // No unwrap in a callback (the driver catches the panic): a missing
        // param shows in the reply the test compares.
        Callbacks::new().on_open(|ws| {
            let reply = format!("room={} user={}", ws.param("room_id").unwrap_or("<none>"), ws.query("user").unwrap_or("-"));
            let _ = ws.send(reply);
        }),
    );
    let api = app.group("/api/v1");
    api.ws(
        "/feed",
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(ws.path().to_owned());
        }),
    );
    app.get("/", |_| Response::with_body(200, "text/html", "<h1>page</h1>"));
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_params_and_query_reach_the_handler() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut client = connect(addr, "/game/42?user=ann%20b");
        assert_eq!(next_text(&mut client), "room=42 user=ann b");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_prefix_is_part_of_the_route() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        let mut client = connect(addr, "/api/v1/feed");
        assert_eq!(next_text(&mut client), "/api/v1/feed");
        assert_eq!(connect_rejected(addr, "/feed").0, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_404() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || assert_eq!(connect_rejected(addr, "/nowhere").0, 404)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_request_on_a_websocket_route_is_426() {
    let (addr, _server) = serve(&app()).await;
    let (status, response) =
        blocking(move || raw_http(addr, "GET /game/1 HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 426);
    assert!(response.contains("Sec-WebSocket-Version: 13"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_serves_its_page() {
    let (addr, _server) = serve(&app()).await;
    let (status, response) = blocking(move || raw_http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 200);
    assert!(response.contains("Content-Type: text/html") && response.ends_with("<h1>page</h1>"));
    let (status, _) = blocking(move || raw_http(addr, "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_requests_get_400_and_431() {
    let (addr, _server) = serve(&app()).await;
    let (status, _) = blocking(move || raw_http(addr, "\x16\x03\x01garbage\r\n\r\n")).await;
    assert_eq!(status, 400);
    let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let (status, _) = blocking(move || raw_http(addr, &huge)).await;
    assert_eq!(status, 431);
}

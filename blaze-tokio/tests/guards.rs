//! Guards run before the handshake: they reject with their status and
//! body, or accept and attach typed data the handler reads. Per-IP limits.

mod common;

use std::time::Duration;

use blaze_tokio::{guard, App, Callbacks, Response, WsConfig};
use common::*;
use tungstenite::client::IntoClientRequest;

#[derive(Clone)]
struct User(String);

fn app() -> App {
    let app = App::new();
    let auth = guard(|req, locals| match req.bearer_token() {
        Some("good") => {
            locals.insert(User("ann".into()));
            Ok(())
        }
        Some(_) => Err(Response::text(403, "bad token")),
        None => Err(Response::text(401, "token required")),
    });
    let no_bots = guard(|req, _| match req.header("user-agent") {
        Some(ua) if ua.contains("bot") => Err(Response::text(429, "slow down")),
        _ => Ok(()),
    });
    app.ws(
        "/me",
        // No unwrap in a callback (the driver catches the panic): a missing
        // local shows in the greeting the test compares.
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("hello {}", ws.local::<User>().map_or("<no User local>".to_owned(), |u| u.0)));
        }),
    )
    .guard(auth.clone())
    .guard(no_bots);
    let admin = app.group("/admin").guard(auth);
    admin.ws(
        "/feed",
        Callbacks::new().on_open(|ws| {
            let _ = ws.send(format!("admin {}", ws.local::<User>().map_or("<no User local>".to_owned(), |u| u.0)));
        }),
    );
    app.ws_with_config("/ip", WsConfig::default().max_connections_per_ip(Some(2)), Callbacks::new());
    app
}

fn attempt(addr: std::net::SocketAddr, path: &str, headers: &[(&'static str, &str)]) -> Result<String, (u16, String)> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
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
async fn guard_rejections_arrive_with_their_status_and_body() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        assert_eq!(attempt(addr, "/me", &[]), Err((401, "token required".into())));
        assert_eq!(attempt(addr, "/me?token=nope", &[]), Err((403, "bad token".into())));
        assert_eq!(
            attempt(addr, "/me?token=good", &[("User-Agent", "evil-bot")]),
            Err((429, "slow down".into()))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_guard_attaches_typed_data_for_the_handler() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        assert_eq!(attempt(addr, "/me", &[("Authorization", "Bearer good")]), Ok("hello ann".into()));
        assert_eq!(attempt(addr, "/me?token=good", &[]), Ok("hello ann".into()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_guards_apply_to_every_route_in_the_group() {
    let (addr, _server) = serve(&app()).await;
    blocking(move || {
        assert_eq!(attempt(addr, "/admin/feed", &[]).unwrap_err().0, 401);
        assert_eq!(attempt(addr, "/admin/feed?token=good", &[]), Ok("admin ann".into()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_limit_answers_429() {
    let app = app();
    let (addr, _server) = serve(&app).await;
    let (first, second) = blocking(move || (connect(addr, "/ip"), connect(addr, "/ip"))).await;
    assert_eq!(blocking(move || connect_rejected(addr, "/ip").0).await, 429);
    drop(first);
    assert!(eventually(Duration::from_secs(2), || app.connection_count("/ip") == 1).await);
    let third = blocking(move || connect(addr, "/ip")).await;
    drop((second, third));
}

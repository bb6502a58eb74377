//! A token guard: upgrade requests without a valid token get 401 before
//! any handshake; the handler greets the authenticated user by name.
//!
//! `cargo run -p blaze-examples --bin auth` then connect to
//! `ws://127.0.0.1:8083/secure?token=alice-token` (or send
//! `Authorization: Bearer alice-token`). Without a token: 401.
//!
//! The route also refuses cross-site pages (`same_origin()`: 403 for a
//! browser page on another origin). A token in a cookie would otherwise
//! let any site the user visits open this socket as them (cross-site
//! WebSocket hijacking, see SECURITY.md); clients that send no `Origin`
//! (curl, native apps) are let through to the token check.

use blaze_tokio::{guard, App, Callbacks, Response, WsConfig};

/// The authenticated user, attached by the guard, read by the handler.
#[derive(Clone, Debug)]
struct User {
    name: String,
}

/// Stands in for a real token store.
fn lookup(token: &str) -> Option<User> {
    match token {
        "alice-token" => Some(User { name: "Alice".into() }),
        "bob-token" => Some(User { name: "Bob".into() }),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).init();
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1).unwrap_or_else(|| "127.0.0.1:8083".into());
    let app = App::new();
    routes(&app);
    println!("auth on ws://{addr}/secure?token=alice-token");
    app.listen(addr).await
}

/// The guarded `/secure` route (the tests call this too).
fn routes(app: &App) {
    let require_token = guard(|req, locals| match req.bearer_token().and_then(lookup) {
        Some(user) => {
            locals.insert(user);
            Ok(())
        }
        None => Err(Response::text(401, "missing or invalid token")),
    });
    app.ws_with_config(
        "/secure",
        WsConfig::default().same_origin(),
        Callbacks::new()
            .on_open(|ws| {
                let user = ws.local::<User>().expect("the guard attached the user");
                let _ = ws.send(format!("Hello, {}!", user.name));
            })
            .on_message(|ws, text| {
                let user = ws.local::<User>().expect("the guard attached the user");
                let _ = ws.send(format!("{}: {text}", user.name));
            }),
    )
    .guard(require_token);
}

#[cfg(test)]
mod tests {
    use super::*;
    use blaze_tokio::{ClientError, ClientOptions};

    fn status(result: Result<blaze_tokio::testing::TestClient, ClientError>) -> u16 {
        match result {
            Err(ClientError::Handshake(blaze_proto::handshake::ClientHandshakeError::Rejected { status, .. })) => status,
            Err(other) => panic!("expected a rejection, got {other}"),
            Ok(_) => panic!("expected a rejection, got a connection"),
        }
    }

    #[test]
    fn no_or_bad_token_is_401_before_the_handshake() {
        let app = App::new();
        routes(&app);
        assert_eq!(status(app.test_client("/secure")), 401);
        assert_eq!(status(app.test_client("/secure?token=mallory")), 401);
        assert_eq!(app.total_connections(), 0);
    }

    #[test]
    fn a_token_in_the_query_or_the_header_greets_its_user() {
        let app = App::new();
        routes(&app);
        let mut alice = app.test_client("/secure?token=alice-token").unwrap();
        assert_eq!(alice.recv_text().as_deref(), Some("Hello, Alice!"));
        alice.send("hi").unwrap();
        assert_eq!(alice.recv_text().as_deref(), Some("Alice: hi"));
        let bearer = ClientOptions::default().header("Authorization", "Bearer bob-token");
        let mut bob = app.test_server().client_with("/secure", bearer).unwrap();
        assert_eq!(bob.recv_text().as_deref(), Some("Hello, Bob!"));
    }
}

//! Asynchronous admission: guards that await (a token looked up in a
//! database) and decide per request, as cnetmod's `upgrade_to_websocket`
//! does: accept with options (a subprotocol chosen from the client's
//! offer, this connection's own configuration, typed locals), reject with
//! a status and body, or answer with a plain HTTP response. Bounded by the
//! handshake timeout.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::config::WsConfig;
use crate::handler::panic_message;
use crate::locals::Extensions;
use crate::request::{Request, Response};
use crate::runtime::{timeout, BoxFuture, Runtime};

/// An asynchronous guard: gets the upgrade request (owned, so the future
/// can keep it across awaits) and decides. Added with
/// [`crate::RouteRef::guard_async`].
pub type AsyncGuard = Arc<dyn Fn(Request) -> BoxFuture<Admission> + Send + Sync>;

/// What an asynchronous guard decided about a request.
///
/// ```
/// use blaze_server::{Admission, Response, WsConfig};
/// #[derive(Clone)]
/// struct User(String);
/// // Accept, naming the subprotocol (from the client's offer), this
/// // connection's configuration and a typed local for the handler.
/// let accept = Admission::accept()
///     .protocol("chat.v2")
///     .config(WsConfig::default().enable_compression(true))
///     .local(User("ann".into()));
/// // Reject with a status and body.
/// let reject = Admission::reject(401, "missing token");
/// // Answer a plain HTTP request to the route with a page.
/// let page = Admission::respond(Response::with_body(200, "text/html", "<h1>use a WebSocket</h1>"));
/// # let _ = (accept, reject, page);
/// ```
#[must_use]
pub struct Admission {
    decision: Decision,
}

pub(crate) enum Decision {
    Accept(AcceptOptions),
    Respond(Response),
}

/// How an accepted connection is set up.
#[derive(Default)]
pub(crate) struct AcceptOptions {
    pub(crate) protocol: Option<String>,
    pub(crate) config: Option<Box<WsConfig>>,
    pub(crate) locals: Extensions,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.decision {
            Decision::Accept(o) => f
                .debug_struct("Accept")
                .field("protocol", &o.protocol)
                .field("config", &o.config.is_some())
                .finish_non_exhaustive(),
            Decision::Respond(r) => f.debug_tuple("Respond").field(&r.status).finish(),
        }
    }
}

impl Admission {
    /// Accept the upgrade (the route's configuration and subprotocol
    /// choice apply unless set here).
    pub fn accept() -> Admission {
        Admission { decision: Decision::Accept(AcceptOptions::default()) }
    }

    /// Refuse with a status and a plain-text body.
    pub fn reject(status: u16, body: impl Into<String>) -> Admission {
        Admission::respond(Response::text(status, body))
    }

    /// Answer with this response instead of upgrading: a rejection, or a
    /// plain HTTP page for a request that is not an upgrade (cnetmod's
    /// `!ctx.is_websocket_upgrade()` branch; see [`Request::is_upgrade`]).
    pub fn respond(response: Response) -> Admission {
        Admission { decision: Decision::Respond(response) }
    }

    /// Accepts with this subprotocol, which must be one the client offered
    /// ([`Request::protocols`]): a subprotocol the client did not offer
    /// would fail its handshake, so the upgrade is answered 500 instead
    /// (and logged). Overrides the route's `subprotocols` choice.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Admission {
        if let Decision::Accept(options) = &mut self.decision {
            options.protocol = Some(protocol.into());
        }
        self
    }

    /// Accepts with this configuration for this connection (compression,
    /// limits, timeouts, heartbeat) instead of the route's. The route's
    /// `max_connections` and `max_connections_per_ip` still count it.
    pub fn config(mut self, config: WsConfig) -> Admission {
        if let Decision::Accept(options) = &mut self.decision {
            options.config = Some(Box::new(config));
        }
        self
    }

    /// Attaches typed data the handler reads with
    /// [`crate::WebSocket::local`], as a synchronous guard's locals do.
    pub fn local<T: Send + Sync + 'static>(mut self, value: T) -> Admission {
        if let Decision::Accept(options) = &mut self.decision {
            options.locals.insert(value);
        }
        self
    }

    pub(crate) fn into_decision(self) -> Decision {
        self.decision
    }
}

/// Makes an [`AsyncGuard`] from an async closure.
pub(crate) fn async_guard<F, Fut>(f: F) -> AsyncGuard
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Admission> + Send + 'static,
{
    Arc::new(move |request| Box::pin(f(request)))
}

/// Runs the route's asynchronous guards in order until one responds, all
/// by `deadline` (the handshake's). Accept options of later guards
/// override earlier ones; locals add up. Past the deadline: 408; a guard
/// that panics: 500.
pub(crate) async fn run_async_guards<R: Runtime>(
    rt: &R,
    deadline: Instant,
    guards: &[AsyncGuard],
    request: &Request,
) -> Decision {
    let mut accepted = AcceptOptions::default();
    for guard in guards {
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| guard(request.clone()))) {
            Ok(future) => future,
            Err(panic) => return panicked(request, &*panic),
        };
        match timeout(rt, deadline, CatchPanic(future)).await {
            None => {
                tracing::debug!(path = %request.path, "async guard ran past the handshake timeout");
                return Decision::Respond(Response::text(408, "handshake timed out"));
            }
            Some(Err(panic)) => return panicked(request, &*panic),
            Some(Ok(admission)) => match admission.into_decision() {
                Decision::Respond(response) => return Decision::Respond(response),
                Decision::Accept(options) => {
                    accepted.protocol = options.protocol.or(accepted.protocol);
                    accepted.config = options.config.or(accepted.config);
                    accepted.locals.extend(options.locals);
                }
            },
        }
    }
    Decision::Accept(accepted)
}

fn panicked(request: &Request, panic: &(dyn std::any::Any + Send)) -> Decision {
    tracing::error!(path = %request.path, panic = %panic_message(panic), "async guard panicked");
    Decision::Respond(Response::text(500, "internal server error"))
}

/// Polls a boxed future, turning a panic into an error.
struct CatchPanic<T>(BoxFuture<T>);

impl<T> Future for CatchPanic<T> {
    type Output = Result<T, Box<dyn std::any::Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Whether a request asks for a WebSocket upgrade (`Upgrade: websocket`).
pub(crate) fn is_upgrade(request: &blaze_proto::handshake::HttpRequest) -> bool {
    request.header_all("upgrade").any(|v| v.to_ascii_lowercase().contains("websocket"))
}

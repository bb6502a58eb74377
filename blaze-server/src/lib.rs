//! # blaze-server: the runtime-independent half of Blaze
//!
//! Routing, the three handler styles, the connection handle, the broadcast
//! hub, guards, rate limits, graceful shutdown and the client, written once
//! over a small [`Runtime`]/[`Transport`]/[`Listener`] trio. The protocol
//! itself lives in [`blaze_proto`]; the runtime adapters (`blaze-tokio`,
//! `blaze-async-std`) implement the trio and re-export this API.
//!
//! Applications use an adapter crate, not this one directly.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod admission;
mod async_admission;
mod app;
mod client;
mod cluster;
mod config;
mod driver;
mod error;
mod fanout;
mod frame;
mod handler;
mod hub;
mod info;
mod keep_alive;
mod locals;
mod metrics;
mod origin;
mod mount;
mod outgoing;
mod proxy;
mod rate;
mod replies;
mod reconnect;
mod request;
mod router;
pub mod runtime;
mod serve;
mod settings;
mod shutdown;
mod socket;
mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;

pub use async_admission::{Admission, AsyncGuard};
pub use app::{App, Group, RouteRef, ShutdownHandle};
pub use cluster::{Backplane, ClusterError, ClusterMember, ClusterMessage, ClusterSink, Target};
pub use client::{connect_with, ClientError, ClientOptions, WsUrl};
pub use config::{OriginCheck, RateLimit, RateLimitAction, WsConfig};
pub use error::{SendError, WsError};
pub use frame::Frame;
pub use handler::{Callbacks, Handler};
pub use hub::ConnectionSummary;
pub use locals::Extensions;
pub use origin::same_origin;
pub use mount::{MountedRequest, MountedUpgrade};
pub use reconnect::{Backoff, ClientEvent, Connector, ReconnectingClient};
pub use outgoing::{IntoMessage, IntoPrepared, Json};
pub use proxy::{Cidr, CidrParseError};
pub use replies::{ErrorReplies, ErrorReplyFn};
pub use request::{guard, Guard, HttpHandler, Request, Response};
pub use runtime::{Accepted, Acceptor, BoxFuture, Listener, Plain, Runtime, Transport};
pub use socket::{ConnInfo, WebSocket, WsStream};

pub use blaze_proto::deflate::{CompressionMode, DeflateConfig};
pub use blaze_proto::{BackpressurePolicy, CloseCause, CloseCode, ConnId, Message, PreparedMessage, Utf8Bytes};
pub use bytes::Bytes;

//! # blaze-proto: the sans-io WebSocket core of Blaze
//!
//! Everything RFC 6455 asks of a WebSocket endpoint, with no I/O, no
//! runtime and no clock: bytes and the current time come in as arguments;
//! events, bytes to write and the next deadline come out. The Blaze
//! runtime adapters (`blaze-tokio`, `blaze-async-std`) only move bytes
//! between sockets and these types.
//!
//! - [`handshake`]: the HTTP upgrade, server ([`handshake::RequestReader`],
//!   [`handshake::UpgradeRequest`]) and client ([`handshake::ClientHandshake`]).
//! - [`frame`]: the frame codec with word-at-a-time masking.
//! - [`Connection`]: fragmentation, UTF-8, the close handshake, ping/pong
//!   heartbeats and every deadline, driven by `now`.
//! - [`deflate`]: permessage-deflate (RFC 7692), negotiated by the
//!   handshake and run by the connection, inflation bounded as it runs.
//! - [`PreparedMessage`]: a broadcast encoded once and shared by every socket.
//! - [`Registry`]: connections by route path and topic.
//!
//! ```
//! use blaze_proto::handshake::{ClientHandshake, HandshakeLimits, RequestReader, UpgradeRequest};
//! use blaze_proto::{Config, Connection, Event, Message, Role};
//! use bytes::BytesMut;
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! // Server side: read and answer an upgrade request.
//! let client_hs = ClientHandshake::new("localhost", "/echo", [42; 16]);
//! let mut inbound = BytesMut::from(&client_hs.request()[..]);
//! let request = RequestReader::new(HandshakeLimits::default(), now).read(&mut inbound).unwrap().unwrap();
//! let upgrade = UpgradeRequest::validate(request).unwrap();
//! let mut response = BytesMut::from(&upgrade.accept(None, None).to_bytes()[..]);
//! client_hs.read_response(&mut response).unwrap().unwrap();
//!
//! // Both ends now run a Connection.
//! let mut server = Connection::new(Role::Server, Config::default(), now);
//! let mut client = Connection::new(Role::Client, Config::default(), now);
//! client.send(Message::text("ping?")).unwrap();
//! let mut wire = BytesMut::from(client.transmit_bytes());
//! server.handle_read(&mut wire, now);
//! match server.poll_event() {
//!     Some(Event::Message(m)) => server.send(m).unwrap(), // echo
//!     other => panic!("{other:?}"),
//! }
//! let mut back = BytesMut::from(server.transmit_bytes());
//! client.handle_read(&mut back, now);
//! assert_eq!(client.poll_event(), Some(Event::Message(Message::text("ping?"))));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod close;
mod connection;
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
mod mask_keys;
mod message;
mod prepared;
mod registry;
mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{deadline_after, BackpressurePolicy, Config, Connection, State};
pub use error::{ProtocolError, UsageError};
pub use frame::Role;
pub use message::{CloseCause, CloseInfo, Event, Message};
pub use prepared::{PreparedBatch, PreparedMessage};
pub use registry::{ConnId, IdSet, Registry};
pub use utf8::{validate_utf8, Utf8Bytes, Utf8Validator};

pub use bytes;

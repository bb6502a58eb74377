//! Guides for users coming from another WebSocket framework: one page per
//! framework Blaze was designed against, mapping each API and
//! configuration knob it documents to the Blaze equivalent, with an
//! example that compiles (every example on these pages is a doctest), and
//! stating the differences plainly, including what Blaze does not have yet.
//!
//! | coming from | page |
//! | --- | --- |
//! | Blaze for C++ (`app.ws(path, {.on_open, ..})`, `app.broadcast`, `app.spawn`) | [`from_cpp_blaze`] |
//! | Blaze for Go (`app.WebSocket`, `WebSocketConfig`, `WebSocketHub`) | [`from_go_blaze`] |
//! | cnetmod (C++ coroutines: `upgrade_to_websocket`, `recv`, `recv_frame`) | [`from_cnetmod`] |
//! | crest (C++: `WebSocketServer`, `on_connect`, `ws.broadcast`) | [`from_crest`] |
//! | Azu (Crystal: `Azu::Channel`, `ws "/path"`, channel specs) | [`from_azu`] |
//!
//! Three differences run through all of them:
//!
//! - **Typed, not stringly.** Per-connection state is typed
//!   (`ws.set_local(User { .. })`, `ws.local::<User>()`) instead of string
//!   keys and casts; JSON is parsed into your `serde` types
//!   (`Callbacks::on_json`, `WsStream::recv_json`), with malformed input
//!   answered, not fatal.
//! - **Ids, not pointers or strings.** A connection is a [`crate::ConnId`]
//!   (a `u64`, never reused within a process) and a cheap, cloneable
//!   [`crate::WebSocket`] handle usable from any task; the app keeps the
//!   registry of who is connected, so you do not keep a
//!   `Set(HTTP::WebSocket)` or a `std::vector<connection*>` yourself.
//! - **Sends never wait.** `send` queues (bounded by `max_backpressure`)
//!   and returns at once; the connection's task writes everything queued in
//!   one syscall. There is no `co_await ws.send(..)` and no `WriteAsync`:
//!   every send is the asynchronous kind.
//!
//! The examples use the `testing` feature's `app.test_client(..)` where
//! running them is useful (an in-memory client on virtual time: see the
//! README), and `no_run` where they start a server.

#[doc = include_str!("from_cpp_blaze.md")]
pub mod from_cpp_blaze {}

#[doc = include_str!("from_go_blaze.md")]
pub mod from_go_blaze {}

#[doc = include_str!("from_cnetmod.md")]
pub mod from_cnetmod {}

#[doc = include_str!("from_crest.md")]
pub mod from_crest {}

#[doc = include_str!("from_azu.md")]
pub mod from_azu {}

//! Opening WebSocket connections as cheaply as possible: a raw tokio
//! socket, the handshake from blaze-proto, and frames pre-encoded by the
//! caller. Source addresses are spread over 127.0.0.x so more than one
//! address's worth of ephemeral ports can be used.

use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Instant;

use blaze_proto::deflate::{CompressionMode, DeflateConfig, DeflateParams};
use blaze_proto::handshake::ClientHandshake;
use blaze_proto::{Config, Connection, Event, Role};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::tls::{Stream, TlsTarget};

/// Connections per source address before moving to the next 127.0.0.x.
const PER_SOURCE: usize = 20_000;

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// `wss://`: how to secure each connection.
    pub tls: Option<TlsTarget>,
}

impl Target {
    /// A `ws://` or `wss://` URL; `ca` is a PEM file of roots to trust
    /// for `wss://` (Mozilla's roots without it).
    pub fn parse(url: &str, ca: Option<&str>) -> Result<Target, String> {
        let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => return Err("only ws:// and wss:// URLs are supported".into()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority.to_socket_addrs().map_err(|e| format!("{authority}: {e}"))?.next().ok_or("no address")?;
        let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
        let tls = if secure { Some(TlsTarget::new(host, ca)?) } else { None };
        Ok(Target { addr, host: authority.to_owned(), path: path.to_owned(), tls })
    }
}

/// An open connection: the stream, bytes read past the 101, and the
/// permessage-deflate parameters the server agreed to (if it was offered).
pub struct Opened {
    pub stream: Stream,
    pub leftover: BytesMut,
    pub deflate: Option<DeflateParams>,
}

/// `--deflate off|shared|dedicated`.
pub fn deflate_config(flag: &str) -> Result<Option<DeflateConfig>, String> {
    // Threshold 0: the load tool compresses every message, as browsers do.
    let base = DeflateConfig::default().threshold(0);
    match flag {
        "off" => Ok(None),
        "shared" => Ok(Some(base.mode(CompressionMode::Shared))),
        "dedicated" => Ok(Some(base.mode(CompressionMode::Dedicated))),
        other => Err(format!("--deflate {other:?}: use off, shared or dedicated")),
    }
}

/// The error `open` returns when permessage-deflate was offered and the
/// server declined it: callers that count failed connections stop at once
/// instead (never benchmark plain when compression was asked for).
pub fn is_declined(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
}

/// Connects connection number `index` and completes the handshake,
/// offering permessage-deflate if `deflate` is given.
pub async fn open(target: &Target, index: usize, deflate: Option<&DeflateConfig>) -> std::io::Result<Opened> {
    let socket = TcpSocket::new_v4()?;
    if target.addr.ip().is_loopback() && index >= PER_SOURCE {
        let n = 1 + (index / PER_SOURCE) as u8;
        socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let mut stream = Stream::secure(stream, target.tls.as_ref()).await?;
    let key = (index as u128 ^ 0x5a5a_5a5a_1234_5678_9abc_def0_1357_9bdf).to_le_bytes();
    let mut handshake = ClientHandshake::new(target.host.clone(), target.path.clone(), key);
    if let Some(config) = deflate {
        handshake = handshake.deflate(config);
    }
    stream.write_all(&handshake.request()).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match handshake.read_response(&mut buf) {
            Ok(Some(response)) => {
                if deflate.is_some() && response.deflate.is_none() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "--deflate was asked but the server declined permessage-deflate (no Sec-WebSocket-Extensions in its 101)",
                    ));
                }
                return Ok(Opened { stream, leftover: buf, deflate: response.deflate });
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// What the server agreed to, over all connections of a run: one line
/// (`permessage-deflate; ...` or `off`), or every distinct answer with its
/// count if they differ.
#[derive(Default)]
pub struct Negotiated(std::collections::BTreeMap<String, usize>);

impl Negotiated {
    pub fn add(&mut self, params: Option<&DeflateParams>) {
        let key = params.map_or_else(|| "off".to_owned(), DeflateParams::to_header);
        *self.0.entry(key).or_default() += 1;
    }

    pub fn describe(&self) -> String {
        match self.0.len() {
            0 => "none".into(),
            1 => self.0.keys().next().cloned().unwrap_or_default(),
            _ => self.0.iter().map(|(k, n)| format!("{n}× {k}")).collect::<Vec<_>>().join(" | "),
        }
    }
}

/// A client endpoint run by blaze-proto's `Connection` (used with
/// permessage-deflate, and by `idle`): messages are compressed on send and
/// inflated on receipt by the protocol core; bytes on the wire are counted.
pub struct Session {
    pub stream: Stream,
    pub conn: Connection,
    pub buf: BytesMut,
    /// Bytes read from / written to the socket after the 101.
    pub wire_in: u64,
    pub wire_out: u64,
}

/// The client-role protocol core for connection `index`, deflate enabled
/// if it was negotiated.
pub fn client_connection(index: usize, params: Option<&DeflateParams>, config: Option<&DeflateConfig>) -> Connection {
    let cfg = Config::default()
        .max_frame_size(64 << 20)
        .max_message_size(64 << 20)
        .max_backpressure(usize::MAX)
        .ping_interval(None)
        .mask_seed(0x9e37_79b9_7f4a_7c15 ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut conn = Connection::new(Role::Client, cfg, Instant::now());
    if let (Some(params), Some(config)) = (params, config) {
        conn.enable_deflate(params, config);
    }
    conn
}

impl Session {
    pub fn new(opened: Opened, index: usize, config: Option<&DeflateConfig>) -> Session {
        let conn = client_connection(index, opened.deflate.as_ref(), config);
        let wire_in = opened.leftover.len() as u64;
        Session { stream: opened.stream, conn, buf: opened.leftover, wire_in, wire_out: 0 }
    }

    /// Writes everything the connection has queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let Session { stream, conn, wire_out, .. } = self;
        while conn.wants_write() {
            let written = {
                let mut slices = [IoSlice::new(&[]); 64];
                let n = conn.transmit_slices(&mut slices);
                stream.write_vectored(&slices[..n]).await?
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            conn.advance_transmit(written);
            *wire_out += written as u64;
        }
        // TLS holds what the socket did not take yet.
        stream.flush().await
    }

    /// One read, bounded by `deadline`: `Ok(false)` if it passed first.
    pub async fn read_some(&mut self, deadline: Option<tokio::time::Instant>) -> std::io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        let n = match deadline {
            Some(d) => match tokio::time::timeout_at(d, self.stream.read_buf(&mut self.buf)).await {
                Ok(n) => n?,
                Err(_) => return Ok(false),
            },
            None => self.stream.read_buf(&mut self.buf).await?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.wire_in += n as u64;
        Ok(true)
    }

    /// Feeds what was read to the connection and collects its events.
    pub fn process(&mut self, now: Instant, events: &mut Vec<Event>) {
        loop {
            self.conn.handle_read(&mut self.buf, now);
            while let Some(e) = self.conn.poll_event() {
                events.push(e);
            }
            if !self.conn.input_paused() {
                break;
            }
        }
    }
}

/// `Event::Closed` as an error.
pub fn closed_error(info: &blaze_proto::CloseInfo) -> std::io::Error {
    std::io::Error::other(format!("server closed the connection: {} {:?} ({:?})", info.code, info.reason, info.cause))
}

/// Raises the open-file limit to the hard limit (each connection is a file).
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

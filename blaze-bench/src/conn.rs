//! Opening WebSocket connections as cheaply as possible: a raw tokio
//! socket, the handshake from blaze-proto, and frames pre-encoded by the
//! caller. Source addresses are spread over 127.0.0.x so more than one
//! address's worth of ephemeral ports can be used.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use blaze_proto::handshake::ClientHandshake;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connections per source address before moving to the next 127.0.0.x.
const PER_SOURCE: usize = 20_000;

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs are supported")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or("no address")?;
        Ok(Target { addr, host: authority.to_owned(), path: path.to_owned() })
    }
}

/// Connects connection number `index` and completes the handshake.
/// Returns the stream and any bytes read past the 101.
pub async fn open(target: &Target, index: usize) -> std::io::Result<(TcpStream, BytesMut)> {
    let socket = TcpSocket::new_v4()?;
    if target.addr.ip().is_loopback() && index >= PER_SOURCE {
        let n = 1 + (index / PER_SOURCE) as u8;
        socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), 0))?;
    }
    let mut stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let key = (index as u128 ^ 0x5a5a_5a5a_1234_5678_9abc_def0_1357_9bdf).to_le_bytes();
    let handshake = ClientHandshake::new(target.host.clone(), target.path.clone(), key);
    stream.write_all(&handshake.request()).await?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match handshake.read_response(&mut buf) {
            Ok(Some(_)) => return Ok((stream, buf)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
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

//! permessage-deflate (RFC 7692): negotiation and the compressor and
//! decompressor a [`crate::Connection`] runs once it is agreed.
//!
//! An endpoint says what it will agree to with a [`DeflateConfig`]; the
//! handshake turns the peer's offer (server) or answer (client) into the
//! [`DeflateParams`] both ends then follow
//! ([`crate::handshake::UpgradeRequest::negotiate_deflate`],
//! [`crate::handshake::ClientHandshake::deflate`]), and
//! [`crate::Connection::enable_deflate`] switches the connection over.
//!
//! Two modes trade memory for ratio ([`CompressionMode`]):
//! - **Shared**: neither side keeps a context between messages
//!   (`server_no_context_takeover` and `client_no_context_takeover` are
//!   imposed, as §7.1.1 allows). A connection then holds no compressor or
//!   decompressor of its own between messages: one per thread serves them
//!   all, and a broadcast is compressed once for every receiver.
//! - **Dedicated**: each connection keeps its LZ77 window both ways
//!   (context takeover, §7.1.1), so repetitive traffic compresses better,
//!   at the cost of a compressor and decompressor per connection.
//!
//! ```
//! use blaze_proto::deflate::{DeflateConfig, DeflateParams};
//! use blaze_proto::handshake::parse_extensions;
//!
//! // What Chromium offers on every connection.
//! let offers = parse_extensions("permessage-deflate; client_max_window_bits");
//! let params = DeflateParams::negotiate(&offers, &DeflateConfig::default()).unwrap();
//! assert_eq!(params.to_header(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
//! ```

mod codec;
mod negotiate;

pub(crate) use codec::{compress_message, shared_frame, Inflater};
pub use negotiate::{DeflateParamsError, DeflateParams};

/// Whether connections keep a compression context between messages; see
/// the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CompressionMode {
    /// No context kept either way: no per-connection compressor memory,
    /// and a broadcast compressed once for all. The default.
    #[default]
    Shared,
    /// Context takeover both ways, with the configured windows: a better
    /// ratio on repetitive traffic, a compressor and decompressor per
    /// connection.
    Dedicated,
}

/// What permessage-deflate an endpoint agrees to, and how it compresses.
///
/// ```
/// use blaze_proto::deflate::{CompressionMode, DeflateConfig};
/// let config = DeflateConfig::default().mode(CompressionMode::Dedicated).window_bits(12).level(3);
/// assert_eq!(config.threshold, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// zlib compression level, 0 (store) to 9 (smallest). Default 6, as
    /// the Go Blaze's `CompressionLevel`.
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed
    /// (deflate's block overhead makes them larger). Default 64.
    pub threshold: usize,
    /// Shared (no context, the default) or dedicated (context takeover).
    pub mode: CompressionMode,
    /// Dedicated mode: the LZ77 window (base-2 log, 9..=15) this endpoint
    /// compresses with and asks the peer to compress with. A smaller
    /// window is less memory per connection and a worse ratio. Default 15.
    /// (Shared mode keeps no window between messages, so compresses each
    /// message with the full window.)
    pub window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig { level: 6, threshold: 64, mode: CompressionMode::Shared, window_bits: 15 }
    }
}

impl DeflateConfig {
    /// Sets the compression level (clamped to 0..=9).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets the size below which messages go uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: CompressionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the dedicated-mode window (clamped to 9..=15: zlib cannot make
    /// raw deflate streams with an 8-bit window).
    pub fn window_bits(mut self, bits: u8) -> Self {
        self.window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }
}

/// The smallest window zlib compresses with (it turns 8 into 9, RFC 7692
/// §7.1.2.1 notwithstanding).
pub(crate) const MIN_WINDOW_BITS: u8 = 9;
/// The largest window RFC 7692 allows.
pub(crate) const MAX_WINDOW_BITS: u8 = 15;

/// The settings one end of a connection compresses and inflates with:
/// its share of the negotiated [`DeflateParams`] and its [`DeflateConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeflateSide {
    pub(crate) level: u32,
    pub(crate) threshold: usize,
    /// Our compressor's window.
    pub(crate) send_window: u8,
    /// Reset our compressor after every message.
    pub(crate) send_no_context: bool,
    /// The peer's compressor window, which our inflater must cover.
    pub(crate) recv_window: u8,
    /// The peer resets its compressor after every message.
    pub(crate) recv_no_context: bool,
}

impl DeflateSide {
    /// Whether we may compress at all: a peer that limited our window to
    /// 8 bits gets every message uncompressed (zlib cannot make such
    /// streams, and compressing is optional per message, §6).
    pub(crate) fn can_send_compressed(&self) -> bool {
        self.send_window >= MIN_WINDOW_BITS
    }

    pub(crate) fn new(params: &DeflateParams, config: &DeflateConfig, role: crate::Role) -> DeflateSide {
        let (send_window, send_no_context, recv_window, recv_no_context) = match role {
            crate::Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
            crate::Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
        };
        DeflateSide {
            level: config.level,
            threshold: config.threshold,
            send_window: send_window.unwrap_or(MAX_WINDOW_BITS),
            send_no_context,
            // A window-8 stream inflates with a 9-bit window (a larger
            // window reads every stream a smaller one wrote).
            recv_window: recv_window.unwrap_or(MAX_WINDOW_BITS).max(MIN_WINDOW_BITS),
            recv_no_context,
        }
    }
}

//! Per-connection limits and timers.

use std::time::Duration;

/// What a connection does when its outbound queue passes its
/// `max_backpressure` (in Blaze's server, `WsConfig::max_backpressure`)
/// because the peer reads too slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackpressurePolicy {
    /// Discard what is still unsent and close with 1008 (policy violation).
    /// The default: a client that cannot keep up is cut loose, so one slow
    /// reader never holds memory or slows a broadcast.
    #[default]
    Close,
    /// Refuse the message and report the drop; the connection stays open.
    /// In Blaze's server the send returns `SendError::Backpressure` and
    /// `on_error` gets `WsError::Dropped` (on the protocol core itself:
    /// `UsageError::Backpressure` and `Event::Dropped`). Plain names, not
    /// links: this type is re-exported where the core is not in view.
    Drop,
}

/// Limits and timers of one connection. Every limit bounds what a hostile
/// or broken peer can make the connection hold or wait for.
///
/// ```
/// use blaze_proto::Config;
/// use std::time::Duration;
/// let config = Config::default().max_message_size(64 * 1024).ping_interval(Some(Duration::from_secs(10)));
/// assert_eq!(config.max_message_size, 64 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame payload accepted. Default 1 MiB. Checked from the
    /// header, before the payload is buffered; over it: close 1009.
    pub max_frame_size: usize,
    /// Largest message (all fragments together) accepted. Default 1 MiB;
    /// over it: close 1009.
    pub max_message_size: usize,
    /// Silence on the connection after which a ping is sent. Default 30 s;
    /// `None` turns heartbeats off.
    pub ping_interval: Option<Duration>,
    /// Time a ping may go unanswered (no bytes at all from the peer) before
    /// the connection is declared dead. Default 60 s.
    pub pong_timeout: Duration,
    /// Time to wait for the peer's close frame after sending ours.
    /// Default 5 s; bounds peers that never finish the close handshake.
    pub close_timeout: Duration,
    /// Time without any message, in either direction, after which the
    /// connection is closed with 1000. Default `None` (no idle limit).
    pub idle_timeout: Option<Duration>,
    /// Time allowed to finish a message once it has started: the clock
    /// starts when the header of its first frame has been read (a frame
    /// whose header is in but whose payload is still arriving counts as a
    /// started message, control frames included) and stops when its last
    /// frame is complete. Unfinished by then: fail with 1008 (policy
    /// violation, [`crate::ProtocolError::MessageTimeout`]). Default
    /// 120 s (uWebSockets' `idleTimeout`): generous for 1 MiB on a slow
    /// link, yet a peer dripping one byte a minute (which every liveness
    /// check accepts) cannot hold a nearly complete message forever.
    /// `None` (or `Duration::MAX`) disables it.
    pub message_timeout: Option<Duration>,
    /// Most frames one message may span; more: fail with 1008 (policy
    /// violation, [`crate::ProtocolError::TooManyFragments`]). Empty
    /// continuation frames count. Default 4096: a 1 MiB message (the
    /// default `max_message_size`) in 256-byte fragments, far more than
    /// any real sender uses, while endless empty continuations (which no
    /// size limit sees) are cut off. 0 and 1 both allow unfragmented
    /// messages only; `usize::MAX` disables the cap.
    pub max_fragments: usize,
    /// Bytes of unsent output a connection may queue. Default 1 MiB.
    pub max_backpressure: usize,
    /// What happens past `max_backpressure`. Default: close with 1008.
    pub backpressure_policy: BackpressurePolicy,
    /// Answer pings with pongs automatically. Default `true` (§5.5.2).
    pub auto_pong: bool,
    /// Seed of the masking-key generator (client role only). Drivers pass
    /// a random seed; the core itself never draws randomness.
    pub mask_seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            idle_timeout: None,
            message_timeout: Some(Duration::from_secs(120)),
            max_fragments: 4096,
            max_backpressure: 1 << 20,
            backpressure_policy: BackpressurePolicy::Close,
            auto_pong: true,
            mask_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl Config {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            })*
        }
    };
}

setters! {
    /// Sets `max_frame_size`.
    max_frame_size: usize;
    /// Sets `max_message_size`.
    max_message_size: usize;
    /// Sets `ping_interval` (`None` disables heartbeats).
    ping_interval: Option<Duration>;
    /// Sets `pong_timeout`.
    pong_timeout: Duration;
    /// Sets `close_timeout`.
    close_timeout: Duration;
    /// Sets `idle_timeout`.
    idle_timeout: Option<Duration>;
    /// Sets `message_timeout` (`None` disables it).
    message_timeout: Option<Duration>;
    /// Sets `max_fragments`.
    max_fragments: usize;
    /// Sets `max_backpressure`.
    max_backpressure: usize;
    /// Sets `backpressure_policy`.
    backpressure_policy: BackpressurePolicy;
    /// Sets `auto_pong`.
    auto_pong: bool;
    /// Sets `mask_seed`.
    mask_seed: u64;
}

//! Opt-in automatic reconnection for the client, with jittered
//! exponential backoff.

use std::io;
use std::time::{Duration, Instant};

use blaze_proto::Message;

use crate::client::{connect_with, ClientError, ClientOptions, WsUrl};
use crate::error::SendError;
use crate::outgoing::IntoMessage;
use crate::runtime::{timeout, BoxFuture, Runtime, Transport};
use crate::socket::WsStream;

/// How long to wait before the next connection attempt: exponential
/// (`initial × multiplier^n`, at most `max`), minus a random part of up to
/// `jitter` of it, so clients that lost the same server do not all come
/// back at the same instant.
///
/// ```
/// use std::time::Duration;
/// use blaze_server::Backoff;
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// // Attempt n waits between 50% and 100% of 100 ms × 2^n.
/// assert_eq!(backoff.delay(0, 0), Duration::from_millis(100));
/// assert!(backoff.delay(3, u64::MAX) >= Duration::from_millis(400));
/// assert_eq!(backoff.delay(20, 0), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry (and before reconnecting after a
    /// connection ends). Default 100 ms.
    pub initial: Duration,
    /// The longest delay. Default 30 s.
    pub max: Duration,
    /// Growth per consecutive failure. Default 2.
    pub multiplier: f64,
    /// The random share taken off each delay, 0 (none) to 1 ("full
    /// jitter": anywhere from 0 to the delay). Default 0.5.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(30), multiplier: 2.0, jitter: 0.5 }
    }
}

impl Backoff {
    /// A backoff from `initial` up to `max`, doubling, with 50% jitter.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, ..Backoff::default() }
    }

    /// Sets the growth per failure (at least 1).
    pub fn multiplier(mut self, multiplier: f64) -> Backoff {
        self.multiplier = multiplier;
        self
    }

    /// Sets the random share (clamped to 0..=1).
    pub fn jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The delay before attempt `attempt` (0 after a connection ended or
    /// before the first retry), with `random` (any 64 bits) picking the
    /// jitter: `random = 0` takes nothing off.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let multiplier = if self.multiplier.is_finite() { self.multiplier.max(1.0) } else { 1.0 };
        let max = self.max.as_secs_f64();
        let base = (self.initial.as_secs_f64() * multiplier.powi(attempt.min(1024) as i32)).min(max);
        let jitter = if self.jitter.is_finite() { self.jitter.clamp(0.0, 1.0) } else { 0.0 };
        // 53 random bits as a fraction in [0, 1).
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        Duration::try_from_secs_f64(base * (1.0 - jitter * fraction)).unwrap_or(self.max)
    }
}

/// Opens a new transport to the server (a TCP connection, TLS on top of
/// it, a simulated stream); called for every attempt.
pub type Connector<T> = Box<dyn FnMut() -> BoxFuture<io::Result<T>> + Send>;

/// What a [`ReconnectingClient`] saw.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection is open (the first, or a new one after a reconnect:
    /// subscribe and rejoin here).
    Connected,
    /// A message on the current connection.
    Message(Message),
    /// The current connection ended (1006 if it ended without a close
    /// frame); a reconnect follows after the backoff.
    Disconnected {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// An attempt failed.
    ConnectFailed {
        /// Consecutive failures so far.
        attempt: u32,
        /// Why it failed.
        error: ClientError,
        /// When the next attempt starts; `None`: none will (`max_attempts`).
        retry_in: Option<Duration>,
    },
}

/// A client that reconnects by itself: when its connection ends (the
/// server restarted, the network failed, a heartbeat timed out) it waits
/// a jittered, exponentially growing [`Backoff`] and connects again,
/// until [`close`](Self::close) or `max_attempts` consecutive failures.
/// Opt-in: [`connect_with`] and the adapters' `connect` never reconnect.
///
/// Drive it with [`next`](Self::next), which is cancel-safe (usable in
/// `select!`): an interrupted backoff or attempt resumes where it was.
/// Randomness is a parameter (`seed`), so a simulation replays exactly.
/// Turn on the client's heartbeat (`WsConfig::ping_interval` in the
/// options) so a silent network is noticed, not only a closed one.
pub struct ReconnectingClient<R: Runtime, T: Transport> {
    rt: R,
    url: WsUrl,
    options: ClientOptions,
    connect: Connector<T>,
    backoff: Backoff,
    rng: u64,
    max_attempts: Option<u32>,
    connect_timeout: Duration,
    current: Option<WsStream>,
    failures: u32,
    wait_until: Option<Instant>,
    attempt: Option<BoxFuture<Result<WsStream, ClientError>>>,
    stopped: bool,
}

impl<R: Runtime, T: Transport> std::fmt::Debug for ReconnectingClient<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("url", &self.url)
            .field("backoff", &self.backoff)
            .field("connected", &self.current.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime, T: Transport> ReconnectingClient<R, T> {
    /// A client of `url` that opens transports with `connect`; nothing
    /// happens until [`next`](Self::next) is called. `seed` drives the jitter.
    pub fn new(rt: R, url: WsUrl, options: ClientOptions, connect: Connector<T>, backoff: Backoff, seed: u64) -> Self {
        let connect_timeout = options.config.handshake_timeout;
        ReconnectingClient {
            rt,
            url,
            options,
            connect,
            backoff,
            rng: seed,
            max_attempts: None,
            connect_timeout,
            current: None,
            failures: 0,
            wait_until: None,
            attempt: None,
            stopped: false,
        }
    }

    /// Gives up after `attempts` consecutive failed attempts (default: never).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Bounds each attempt, TCP connect and handshake together (default:
    /// the options' `handshake_timeout`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The next event; `None` once closed or given up.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        if self.stopped {
            return None;
        }
        if let Some(ws) = &mut self.current {
            return Some(match ws.recv().await {
                Some(message) => ClientEvent::Message(message),
                None => {
                    let (code, reason) = ws.close_status().unwrap_or((1006, String::new()));
                    self.current = None;
                    let random = self.random();
                    let delay = self.backoff.delay(0, random);
                    self.wait_until = Some(self.rt.now() + delay);
                    ClientEvent::Disconnected { code, reason }
                }
            });
        }
        if let Some(at) = self.wait_until {
            if self.rt.now() < at {
                self.rt.sleep_until(at).await;
            }
            self.wait_until = None;
        }
        if self.attempt.is_none() {
            self.attempt = Some(self.start_attempt());
        }
        let result = self.attempt.as_mut().expect("started above").await;
        self.attempt = None;
        Some(match result {
            Ok(ws) => {
                self.current = Some(ws);
                self.failures = 0;
                ClientEvent::Connected
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let retry_in = if self.max_attempts.is_some_and(|max| self.failures >= max) {
                    self.stopped = true;
                    None
                } else {
                    let random = self.random();
                    let delay = self.backoff.delay(self.failures, random);
                    self.wait_until = Some(self.rt.now() + delay);
                    Some(delay)
                };
                ClientEvent::ConnectFailed { attempt: self.failures, error, retry_in }
            }
        })
    }

    fn start_attempt(&mut self) -> BoxFuture<Result<WsStream, ClientError>> {
        let connecting = (self.connect)();
        let (rt, url, options) = (self.rt.clone(), self.url.clone(), self.options.clone());
        let deadline = blaze_proto::deadline_after(rt.now(), self.connect_timeout);
        Box::pin(async move {
            let attempt = async {
                let io = connecting.await?;
                connect_with(rt.clone(), io, &url, options).await
            };
            timeout(&rt, deadline, attempt).await.unwrap_or(Err(ClientError::Timeout))
        })
    }

    /// splitmix64: the jitter's randomness, from the seed.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Sends on the current connection (`Err(Closed)` while there is none).
    pub fn send(&self, message: impl IntoMessage) -> Result<(), SendError> {
        self.current.as_ref().ok_or(SendError::Closed)?.send(message)
    }

    /// The current connection, if one is open.
    pub fn stream(&self) -> Option<&WsStream> {
        self.current.as_ref()
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.current.as_ref().is_some_and(|ws| ws.is_open())
    }

    /// Consecutive failed attempts since the last connection.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Closes the current connection with 1000 and stops reconnecting.
    pub fn close(&mut self) {
        if let Some(ws) = self.current.take() {
            let _ = ws.close(1000u16, "");
        }
        self.attempt = None;
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_max_with_bounded_jitter() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..12 {
            let base = (100.0 * 2f64.powi(attempt as i32)).min(5000.0);
            for random in [0, 1 << 40, u64::MAX / 2, u64::MAX] {
                let d = b.delay(attempt, random).as_secs_f64() * 1000.0;
                assert!(d <= base + 1e-6 && d >= base * 0.5 - 1e-6, "attempt {attempt}: {d} ms vs base {base}");
            }
        }
        assert_eq!(b.jitter(0.0).delay(2, u64::MAX), Duration::from_millis(400));
        assert!(b.jitter(1.0).delay(2, u64::MAX) < Duration::from_millis(1));
        // Nonsense parameters do not panic.
        let odd = Backoff { multiplier: f64::NAN, jitter: f64::INFINITY, ..b };
        assert_eq!(odd.delay(u32::MAX, 7), Duration::from_millis(100));
        assert_eq!(Backoff::new(Duration::MAX, Duration::MAX).delay(u32::MAX, 0), Duration::MAX);
    }
}

//! The backplane's settings: every limit with its default.

use std::time::Duration;

/// Settings of a [`crate::RedisBackplane`]. `Default` gives the values in
/// each field's doc; setters chain.
///
/// ```
/// use std::time::Duration;
/// let config = blaze_redis::RedisConfig::default().prefix("myapp").presence_ttl(Duration::from_secs(10));
/// assert_eq!(config.queue_capacity, 10_000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The first part of every Redis channel and key (`{prefix}:t:{topic}`),
    /// so several applications can share one Redis. Default `"blaze"`.
    pub prefix: String,
    /// Broadcasts waiting to be written to Redis. When full (Redis slow
    /// or unreachable), new broadcasts are dropped for the other nodes and
    /// counted; local clients still get them. Bounds memory during an
    /// outage. Default 10,000.
    pub queue_capacity: usize,
    /// How long this node's presence entries live in Redis without a
    /// heartbeat: a node that crashed disappears from the cluster-wide
    /// counts within this time. Heartbeats go every third of it.
    /// Default 15 s.
    pub presence_ttl: Duration,
    /// How long connecting to Redis (TCP, TLS, AUTH) may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How long a command (a batch of publishes, a presence query or
    /// update, a subscription) may wait for Redis's answer before the
    /// connection is taken as broken. Default 2 s.
    pub response_timeout: Duration,
    /// The first wait before reconnecting; it doubles per failure up to
    /// [`RedisConfig::backoff_max`]. Default 50 ms.
    pub backoff_min: Duration,
    /// The longest wait between reconnection attempts. Default 2 s.
    pub backoff_max: Duration,
    /// The largest payload accepted from Redis; larger messages are
    /// ignored and counted as malformed. Default 16 MiB.
    pub max_payload: usize,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            prefix: "blaze".to_owned(),
            queue_capacity: 10_000,
            presence_ttl: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_payload: 16 << 20,
        }
    }
}

impl RedisConfig {
    /// Sets [`RedisConfig::prefix`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`RedisConfig::queue_capacity`] (at least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets [`RedisConfig::presence_ttl`] (at least 300 ms).
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// Sets [`RedisConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`RedisConfig::response_timeout`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`RedisConfig::backoff_min`] and [`RedisConfig::backoff_max`].
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Sets [`RedisConfig::max_payload`].
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.presence_ttl / 3
    }
}

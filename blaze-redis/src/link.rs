//! The command connection (publishes, presence), reconnected with backoff
//! by one task. Users never wait for it: with no connection they drop and
//! count, then the task brings it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Notify;

use crate::config::RedisConfig;

/// A live connection and its generation (bumped per reconnect, so a late
/// error from an old connection does not break the new one).
pub(crate) type Current = (u64, MultiplexedConnection);

pub(crate) struct Link {
    client: redis::Client,
    current: Mutex<Option<Current>>,
    wake: Notify,
    /// Set when a connection came up; the presence task then rewrites
    /// everything (Redis may have restarted empty).
    pub(crate) reconnected: Notify,
    ever_up: AtomicBool,
}

impl Link {
    pub(crate) fn new(client: redis::Client, first: MultiplexedConnection) -> Link {
        Link {
            client,
            current: Mutex::new(Some((1, first))),
            wake: Notify::new(),
            reconnected: Notify::new(),
            ever_up: AtomicBool::new(true),
        }
    }

    /// The connection, if there is one now.
    pub(crate) fn get(&self) -> Option<Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reports that generation `generation` failed: it is dropped and the
    /// reconnect task wakes.
    pub(crate) fn broken(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
            drop(current);
            tracing::warn!("redis backplane: command connection lost; reconnecting");
            self.wake.notify_one();
        }
    }

    /// Keeps a connection up: waits until it breaks, reconnects with
    /// doubling backoff, forever (the task is aborted with the backplane).
    pub(crate) async fn run(&self, config: &RedisConfig, counters: &crate::stats::Counters) {
        let mut generation = 1;
        let mut backoff = config.backoff_min;
        loop {
            if self.get().is_some() {
                self.wake.notified().await;
                continue;
            }
            match connect(&self.client, config).await {
                Ok(conn) => {
                    generation += 1;
                    *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((generation, conn));
                    backoff = config.backoff_min;
                    if self.ever_up.swap(true, Ordering::Relaxed) {
                        crate::stats::add(&counters.reconnects, 1);
                    }
                    tracing::info!("redis backplane: command connection re-established");
                    self.reconnected.notify_one();
                }
                Err(err) => {
                    tracing::debug!("redis backplane: reconnect failed: {err}; next try in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.backoff_max);
                }
            }
        }
    }
}

pub(crate) fn connection_config(config: &RedisConfig) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
}

/// A command connection, checked with a PING: a Redis that wants a
/// password we did not give accepts the TCP connection and refuses the
/// first command.
pub(crate) async fn connect(client: &redis::Client, config: &RedisConfig) -> redis::RedisResult<MultiplexedConnection> {
    let mut conn = client.get_multiplexed_async_connection_with_config(&connection_config(config)).await?;
    within(config.response_timeout, redis::cmd("PING").query_async::<()>(&mut conn)).await?;
    Ok(conn)
}

/// A subscription connection, checked with a PING like [`connect`].
pub(crate) async fn connect_pubsub(
    client: &redis::Client,
    config: &RedisConfig,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = within(config.connect_timeout, client.get_async_pubsub()).await?;
    within(config.response_timeout, pubsub.ping::<()>()).await?;
    Ok(pubsub)
}

/// `future` or a timeout error.
pub(crate) async fn within<T>(
    limit: Duration,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))),
    }
}

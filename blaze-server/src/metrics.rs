//! Server metrics through the [`metrics`](https://docs.rs/metrics) facade
//! (cargo feature `metrics`; without it every function here is empty and
//! compiles to nothing). Blaze installs no recorder: the application picks
//! an exporter (Prometheus, StatsD, ...) and installs it **before** it
//! starts serving (the per-message counters are registered once, when the
//! first server starts; see `examples/src/bin/metrics.rs`).
//!
//! | name | type | unit | labels | what |
//! |---|---|---|---|---|
//! | `blaze_connections_open` | gauge | connections | `route` | upgraded connections alive now |
//! | `blaze_connections_opened_total` | counter | connections | `route` | upgrades completed (101 written) |
//! | `blaze_http_responses_total` | counter | responses | `status` | every answer of the HTTP phase: `101` accepted handshakes, 4xx/5xx rejected handshakes and bad requests, 2xx.. plain HTTP routes |
//! | `blaze_connections_closed_total` | counter | connections | `code`, `cause` | how connections ended: `cause="remote"`: the close code the peer sent; `local`/`protocol`: the code we sent (and the peer echoed); `pong_timeout`, `close_timeout`, `transport_closed` (code 1006) |
//! | `blaze_messages_received_total` | counter | messages | | complete messages handed to handlers |
//! | `blaze_messages_sent_total` | counter | messages | | messages queued on a connection (a broadcast counts once per receiver) |
//! | `blaze_received_bytes_total` | counter | bytes | | bytes read from WebSocket connections (frames, after the handshake) |
//! | `blaze_sent_bytes_total` | counter | bytes | | bytes written to WebSocket connections |
//! | `blaze_write_calls_total` | counter | calls | | (vectored) write calls on WebSocket connections: divided by messages sent, how well corking works |
//! | `blaze_backpressure_drops_total` | counter | messages | | messages dropped by the `Drop` backpressure policy |
//! | `blaze_backpressure_closes_total` | counter | connections | | connections closed (1008) by the `Close` backpressure policy |
//! | `blaze_rate_limited_total` | counter | messages | | messages over a connection's rate limit |
//! | `blaze_broadcasts_total` | counter | broadcasts | | `broadcast*` and `publish*` calls |
//! | `blaze_broadcast_fanout` | histogram | connections | | receivers one broadcast was queued on |
//! | `blaze_broadcast_encodings_total` | counter | messages | | broadcast messages framed (once per broadcast) |
//! | `blaze_broadcast_compressions_total` | counter | messages | | permessage-deflate compressions broadcasts made (once per distinct compression setting) |
//!
//! Cost: labels (and their strings) are built only on connection events
//! (open, close, HTTP response). Per-message counts are plain integers in
//! the connection's driver, added to the global counters once per poll of
//! the connection (one batch of reads, handler calls and writes); counters
//! without labels use handles registered once, so no key is hashed on the
//! message path. Client connections (`connect`) are not counted.

#[cfg(feature = "metrics")]
pub(crate) use enabled::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::*;

#[cfg(feature = "metrics")]
mod enabled {
    use std::sync::OnceLock;

    use blaze_proto::{CloseCause, CloseInfo};
    use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};

    use crate::error::SendError;

    /// The unlabelled counters, registered once with the recorder that is
    /// installed when the first server starts serving.
    struct Handles {
        messages_received: Counter,
        messages_sent: Counter,
        received_bytes: Counter,
        sent_bytes: Counter,
        write_calls: Counter,
        backpressure_drops: Counter,
        backpressure_closes: Counter,
        rate_limited: Counter,
        broadcasts: Counter,
        broadcast_fanout: Histogram,
        encodings: Counter,
        compressions: Counter,
    }

    static HANDLES: OnceLock<Handles> = OnceLock::new();

    fn handles() -> &'static Handles {
        HANDLES.get_or_init(|| {
            describe();
            Handles {
                messages_received: counter!("blaze_messages_received_total"),
                messages_sent: counter!("blaze_messages_sent_total"),
                received_bytes: counter!("blaze_received_bytes_total"),
                sent_bytes: counter!("blaze_sent_bytes_total"),
                write_calls: counter!("blaze_write_calls_total"),
                backpressure_drops: counter!("blaze_backpressure_drops_total"),
                backpressure_closes: counter!("blaze_backpressure_closes_total"),
                rate_limited: counter!("blaze_rate_limited_total"),
                broadcasts: counter!("blaze_broadcasts_total"),
                broadcast_fanout: histogram!("blaze_broadcast_fanout"),
                encodings: counter!("blaze_broadcast_encodings_total"),
                compressions: counter!("blaze_broadcast_compressions_total"),
            }
        })
    }

    fn describe() {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_gauge!("blaze_connections_open", Unit::Count, "Upgraded WebSocket connections alive now.");
        describe_counter!("blaze_connections_opened_total", Unit::Count, "WebSocket upgrades completed.");
        describe_counter!(
            "blaze_http_responses_total",
            Unit::Count,
            "Responses of the HTTP phase by status (101: upgraded)."
        );
        describe_counter!("blaze_connections_closed_total", Unit::Count, "Connections ended, by close code and cause.");
        describe_counter!("blaze_messages_received_total", Unit::Count, "Messages received.");
        describe_counter!("blaze_messages_sent_total", Unit::Count, "Messages queued for sending.");
        describe_counter!("blaze_received_bytes_total", Unit::Bytes, "Bytes read from WebSocket connections.");
        describe_counter!("blaze_sent_bytes_total", Unit::Bytes, "Bytes written to WebSocket connections.");
        describe_counter!("blaze_write_calls_total", Unit::Count, "Write calls on WebSocket connections.");
        describe_counter!("blaze_backpressure_drops_total", Unit::Count, "Messages dropped by backpressure.");
        describe_counter!("blaze_backpressure_closes_total", Unit::Count, "Connections closed by backpressure.");
        describe_counter!("blaze_rate_limited_total", Unit::Count, "Messages over the rate limit.");
        describe_counter!("blaze_broadcasts_total", Unit::Count, "Broadcast and publish calls.");
        describe_histogram!("blaze_broadcast_fanout", Unit::Count, "Receivers per broadcast.");
        describe_counter!("blaze_broadcast_encodings_total", Unit::Count, "Broadcast messages framed.");
        describe_counter!("blaze_broadcast_compressions_total", Unit::Count, "Broadcast compressions.");
    }

    /// Registers the handles with the recorder installed now. Called when
    /// a server starts serving.
    pub(crate) fn init() {
        handles();
    }

    /// What one connection's driver counted since its last flush.
    #[derive(Debug, Default)]
    pub(crate) struct ConnStats {
        enabled: bool,
        messages_received: u64,
        received_bytes: u64,
        sent_bytes: u64,
        write_calls: u64,
        messages_sent: u64,
        backpressure_closes: u64,
    }

    impl ConnStats {
        /// `server`: only server connections are counted.
        pub(crate) fn new(server: bool) -> ConnStats {
            ConnStats { enabled: server, ..ConnStats::default() }
        }

        #[inline]
        pub(crate) fn read(&mut self, n: usize) {
            self.received_bytes += n as u64;
        }

        #[inline]
        pub(crate) fn message_received(&mut self) {
            self.messages_received += 1;
        }

        #[inline]
        pub(crate) fn write(&mut self, n: usize) {
            self.write_calls += 1;
            self.sent_bytes += n as u64;
        }

        /// Takes what senders counted under the connection's lock.
        #[inline]
        pub(crate) fn take_sent(&mut self, sent: &mut SendCounts) {
            self.messages_sent += std::mem::take(&mut sent.messages);
            self.backpressure_closes += std::mem::take(&mut sent.backpressure_closes);
        }

        /// Adds the counts to the global counters and starts over.
        pub(crate) fn flush(&mut self) {
            if !self.enabled {
                return;
            }
            let h = handles();
            for (count, counter) in [
                (&mut self.messages_received, &h.messages_received),
                (&mut self.received_bytes, &h.received_bytes),
                (&mut self.sent_bytes, &h.sent_bytes),
                (&mut self.write_calls, &h.write_calls),
                (&mut self.messages_sent, &h.messages_sent),
                (&mut self.backpressure_closes, &h.backpressure_closes),
            ] {
                if *count > 0 {
                    counter.increment(std::mem::take(count));
                }
            }
        }
    }

    /// What senders (any task) counted on a connection, under its lock;
    /// the driver takes it on its next write.
    #[derive(Debug, Default)]
    pub(crate) struct SendCounts {
        messages: u64,
        backpressure_closes: u64,
    }

    impl SendCounts {
        /// Counts one send's outcome; `open`: the connection is still open
        /// after it (a refused send that closed it is a backpressure close).
        #[inline]
        pub(crate) fn sent(&mut self, result: &Result<(), SendError>, open: bool) {
            match result {
                Ok(()) => self.messages += 1,
                Err(SendError::Backpressure) if !open => self.backpressure_closes += 1,
                Err(_) => {}
            }
        }

        /// Counts `n` sends that were all queued.
        #[inline]
        pub(crate) fn sent_many(&mut self, n: usize) {
            self.messages += n as u64;
        }
    }

    /// One open connection on the gauge, by route, for as long as it lives.
    #[derive(Debug)]
    pub(crate) struct OpenConnection(Gauge);

    impl OpenConnection {
        pub(crate) fn new(route: &str) -> OpenConnection {
            counter!("blaze_connections_opened_total", "route" => route.to_owned()).increment(1);
            let gauge = gauge!("blaze_connections_open", "route" => route.to_owned());
            gauge.increment(1.0);
            OpenConnection(gauge)
        }
    }

    impl Drop for OpenConnection {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }

    /// An answer of the HTTP phase (101 included).
    pub(crate) fn http_response(status: u16) {
        counter!("blaze_http_responses_total", "status" => status_label(status)).increment(1);
    }

    fn status_label(status: u16) -> metrics::SharedString {
        let common = match status {
            101 => "101",
            200 => "200",
            204 => "204",
            301 => "301",
            302 => "302",
            304 => "304",
            400 => "400",
            401 => "401",
            403 => "403",
            404 => "404",
            405 => "405",
            408 => "408",
            413 => "413",
            426 => "426",
            429 => "429",
            431 => "431",
            500 => "500",
            501 => "501",
            503 => "503",
            _ => return status.to_string().into(),
        };
        common.into()
    }

    impl ConnStats {
        /// The connection's end as its driver saw it.
        pub(crate) fn closed(&mut self, info: &CloseInfo) {
            if self.enabled {
                closed(info);
            }
        }

        /// A message dropped by the `Drop` backpressure policy.
        pub(crate) fn backpressure_drop(&mut self) {
            if self.enabled {
                handles().backpressure_drops.increment(1);
            }
        }

        /// A message over the rate limit.
        pub(crate) fn rate_limited(&mut self) {
            if self.enabled {
                handles().rate_limited.increment(1);
            }
        }
    }

    fn closed(info: &CloseInfo) {
        let cause = match &info.cause {
            CloseCause::Remote => "remote",
            CloseCause::Local => "local",
            CloseCause::Protocol(_) => "protocol",
            CloseCause::PongTimeout => "pong_timeout",
            CloseCause::CloseTimeout => "close_timeout",
            CloseCause::TransportClosed => "transport_closed",
            #[allow(unreachable_patterns)]
            _ => "other",
        };
        let code = info.code.0.to_string();
        counter!("blaze_connections_closed_total", "code" => code, "cause" => cause).increment(1);
    }

    /// A broadcast framed once (`compressions` made) and queued on `fanout`.
    pub(crate) fn broadcast(fanout: usize, compressions: u64) {
        let h = handles();
        h.broadcasts.increment(1);
        h.broadcast_fanout.record(fanout as f64);
        h.encodings.increment(1);
        if compressions > 0 {
            h.compressions.increment(compressions);
        }
    }
}

/// The same API doing nothing: callers need no `cfg`.
#[cfg(not(feature = "metrics"))]
mod disabled {
    use blaze_proto::CloseInfo;

    use crate::error::SendError;

    #[inline(always)]
    pub(crate) fn init() {}

    #[derive(Debug, Default)]
    pub(crate) struct ConnStats;

    impl ConnStats {
        #[inline(always)]
        pub(crate) fn new(_server: bool) -> ConnStats {
            ConnStats
        }
        #[inline(always)]
        pub(crate) fn read(&mut self, _n: usize) {}
        #[inline(always)]
        pub(crate) fn message_received(&mut self) {}
        #[inline(always)]
        pub(crate) fn write(&mut self, _n: usize) {}
        #[inline(always)]
        pub(crate) fn take_sent(&mut self, _sent: &mut SendCounts) {}
        #[inline(always)]
        pub(crate) fn flush(&mut self) {}
        #[inline(always)]
        pub(crate) fn closed(&mut self, _info: &CloseInfo) {}
        #[inline(always)]
        pub(crate) fn backpressure_drop(&mut self) {}
        #[inline(always)]
        pub(crate) fn rate_limited(&mut self) {}
    }

    #[derive(Debug, Default)]
    pub(crate) struct SendCounts;

    impl SendCounts {
        #[inline(always)]
        pub(crate) fn sent(&mut self, _result: &Result<(), SendError>, _open: bool) {}
        #[inline(always)]
        pub(crate) fn sent_many(&mut self, _n: usize) {}
    }

    #[derive(Debug)]
    pub(crate) struct OpenConnection;

    impl OpenConnection {
        #[inline(always)]
        pub(crate) fn new(_route: &str) -> OpenConnection {
            OpenConnection
        }
    }

    #[inline(always)]
    pub(crate) fn http_response(_status: u16) {}
    #[inline(always)]
    pub(crate) fn broadcast(_fanout: usize, _compressions: u64) {}
}

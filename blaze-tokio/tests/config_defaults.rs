//! `WsConfig`'s defaults are the Go Blaze's `DefaultWebSocketConfig` where
//! the knob means the same thing (issue 16; the README says so).

use std::time::Duration;

use blaze_tokio::WsConfig;

#[test]
fn the_go_seed_defaults_hold_where_the_meaning_is_the_same() {
    let config = WsConfig::default();
    assert_eq!(config.read_buffer_size, 4096, "ReadBufferSize");
    assert_eq!(config.read_timeout, Some(Duration::from_secs(60)), "ReadTimeout");
    assert_eq!(config.write_timeout, Some(Duration::from_secs(10)), "WriteTimeout");
    assert_eq!(config.ping_interval, Some(Duration::from_secs(30)), "PingInterval");
    assert_eq!(config.pong_timeout, Duration::from_secs(60), "PongTimeout");
    assert_eq!(config.max_message_size, 1024 * 1024, "MaxMessageSize");
    assert!(config.check_origin.is_none(), "CheckOrigin: allows all origins");
    // CompressionLevel 6, once compression is turned on.
    assert_eq!(WsConfig::default().enable_compression(true).compression.unwrap().level, 6);
    // The heartbeat finds a live client before the read timeout fires.
    assert!(config.ping_interval.unwrap() < config.read_timeout.unwrap());
}

#[test]
fn write_buffer_size_differs_in_meaning_and_so_in_value() {
    // A flush threshold for a batch's replies, not a per-connection buffer
    // (see its documentation): 64 KiB, not Go's 4096.
    assert_eq!(WsConfig::default().write_buffer_size, 64 * 1024);
}

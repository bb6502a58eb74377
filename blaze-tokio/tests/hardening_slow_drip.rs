//! Slow-drip hardening (issue 10) over real loopback sockets: a client
//! that starts a message and then drips one byte every 100 ms (liveness
//! enough for every other check) is closed with 1008 once
//! `message_timeout` has passed since its first fragment, and a message of
//! more than `max_fragments` frames (empty ones included) is closed with
//! 1008; both knobs reach the core through `WsConfig`.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, Callbacks, WsConfig};
use common::*;

const MESSAGE_TIMEOUT: Duration = Duration::from_millis(300);

/// Echoes text and binary; records every `on_close` code.
fn echo(closes: &Arc<Mutex<Vec<u16>>>) -> Callbacks {
    let closes = closes.clone();
    Callbacks::new()
        .on_message(|ws, text| {
            let _ = ws.send(text);
        })
        .on_binary(|ws, data| {
            let _ = ws.send_binary(data);
        })
        .on_close(move |_ws, code, _reason| closes.lock().unwrap().push(code))
}

/// Writes `bytes` one at a time, `every` apart, until done, `stop` is set
/// or the server hangs up.
fn drip(mut stream: std::net::TcpStream, bytes: Vec<u8>, every: Duration, stop: Arc<AtomicBool>) {
    for byte in bytes {
        std::thread::sleep(every);
        if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).is_err() {
            return;
        }
    }
}

#[test]
fn ws_config_defaults_are_120_seconds_and_4096_fragments() {
    let config = WsConfig::default();
    assert_eq!(config.message_timeout, Some(Duration::from_secs(120)));
    assert_eq!(config.max_fragments, 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_message_is_closed_1008_after_message_timeout() {
    let app = App::new();
    let closes = Arc::new(Mutex::new(Vec::new()));
    app.ws_with_config("/drip", WsConfig::default().message_timeout(Some(MESSAGE_TIMEOUT)), echo(&closes));
    let (addr, _server) = serve(&app).await;
    let (code, elapsed) = blocking(move || {
        let mut stream = raw_ws_connect(addr, "/drip", None, "");
        let dripper = stream.try_clone().unwrap();
        let start = Instant::now();
        stream.write_all(&masked_frame(false, 1, b"the first fragment of a message that never ends")).unwrap();
        // The last fragment, one byte every 100 ms: 10 s if let finish.
        let stop = Arc::new(AtomicBool::new(false));
        let drip_stop = stop.clone();
        let last = masked_frame(true, 0, &[b'x'; 100]);
        let dripping = std::thread::spawn(move || drip(dripper, last, Duration::from_millis(100), drip_stop));
        let mut frames = RawFrames::new(stream, Duration::from_secs(5));
        let code = frames.until_close();
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        dripping.join().unwrap();
        (code, elapsed)
    })
    .await;
    assert_eq!(code, Ok(1008), "closed with policy violation");
    assert!(elapsed >= MESSAGE_TIMEOUT, "closed after {elapsed:?}, before message_timeout");
    assert!(elapsed < Duration::from_secs(5), "closed only after {elapsed:?}");
    assert!(eventually(Duration::from_secs(5), || closes.lock().unwrap().as_slice() == [1008]).await, "{closes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_timeout_none_lets_a_slow_message_finish() {
    let app = App::new();
    let closes = Arc::new(Mutex::new(Vec::new()));
    app.ws_with_config("/slow", WsConfig::default().message_timeout(None), echo(&closes));
    let (addr, _server) = serve(&app).await;
    let open_closes = closes.clone();
    let echoed = blocking(move || {
        let mut stream = raw_ws_connect(addr, "/slow", None, "");
        stream.write_all(&masked_frame(false, 1, b"slow ")).unwrap();
        // 8 bytes, 100 ms apart: well past the 300 ms of the test above.
        let last = masked_frame(true, 0, b"ok");
        drip(stream.try_clone().unwrap(), last, Duration::from_millis(100), Arc::new(AtomicBool::new(false)));
        let mut frames = RawFrames::new(stream, Duration::from_secs(5));
        let echoed = frames.next();
        // Checked while the socket is still open (dropping it closes 1006).
        assert!(open_closes.lock().unwrap().is_empty(), "{open_closes:?}");
        echoed
    })
    .await
    .expect("echo");
    assert_eq!((echoed.opcode, echoed.payload.as_slice()), (1, &b"slow ok"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_fragments_is_closed_1008() {
    let app = App::new();
    let closes = Arc::new(Mutex::new(Vec::new()));
    app.ws_with_config("/frag", WsConfig::default().max_fragments(8), echo(&closes));
    let (addr, _server) = serve(&app).await;
    let code = blocking(move || {
        // Exactly 8 fragments, empty ones among them: echoed.
        let mut stream = raw_ws_connect(addr, "/frag", None, "");
        let mut bytes = masked_frame(false, 2, b"ab");
        for _ in 0..6 {
            bytes.extend(masked_frame(false, 0, b""));
        }
        bytes.extend(masked_frame(true, 0, b"cd"));
        stream.write_all(&bytes).unwrap();
        let mut frames = RawFrames::new(stream.try_clone().unwrap(), Duration::from_secs(5));
        let echoed = frames.next().expect("echo of 8 fragments");
        assert_eq!((echoed.opcode, echoed.payload.as_slice()), (2, &b"abcd"[..]));
        // Nine: the ninth, empty, is one too many.
        let mut bytes = masked_frame(false, 2, b"ab");
        for _ in 0..8 {
            bytes.extend(masked_frame(false, 0, b""));
        }
        stream.write_all(&bytes).unwrap();
        frames.until_close()
    })
    .await;
    assert_eq!(code, Ok(1008));
    assert!(eventually(Duration::from_secs(5), || closes.lock().unwrap().as_slice() == [1008]).await, "{closes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_empty_continuations_hit_the_default_cap() {
    let app = App::new();
    let closes = Arc::new(Mutex::new(Vec::new()));
    app.ws("/default", echo(&closes));
    let (addr, _server) = serve(&app).await;
    let code = blocking(move || {
        let mut stream = raw_ws_connect(addr, "/default", None, "");
        let mut bytes = masked_frame(false, 1, b"a");
        for _ in 0..4096 {
            bytes.extend(masked_frame(false, 0, b""));
        }
        // The server may close (and reset) before it has read all of it.
        let _ = stream.write_all(&bytes);
        RawFrames::new(stream, Duration::from_secs(5)).until_close()
    })
    .await;
    assert_eq!(code, Ok(1008));
}

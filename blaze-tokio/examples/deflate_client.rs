//! Blaze's client with permessage-deflate against any echo server: the
//! "our client, their server" direction of the end-to-end tests
//! (`tests-external/python/test_deflate_client.py` runs it against Python
//! `websockets`).
//!
//! `cargo run -p blaze-tokio --example deflate_client -- --url ws://127.0.0.1:9001/ --mode shared|dedicated --window 15`
//!
//! Offers deflate (threshold 0: every message may be compressed), sends a
//! fixed list of text and binary messages (0 bytes to 200 KiB, non-ASCII
//! text, repetitive and random-looking data), checks that every echo is
//! equal and of the same type, and prints one JSON line:
//! `{"ok": true, "extensions": "<Sec-WebSocket-Extensions of the 101>", "compressed": bool, "messages": N}`.
//! Exits non-zero (with `"ok": false` and an `"error"`) on any mismatch,
//! connection failure or timeout.

use std::process::ExitCode;
use std::time::Duration;

use blaze_tokio::{ClientOptions, CompressionMode, DeflateConfig, Message};

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// Text of exactly `len` bytes mixing ASCII and multi-byte characters.
fn text(len: usize, seed: usize) -> String {
    const PIECES: [&str; 6] = ["hello ", "wörld ", "日本語 ", "😀", "deflate ", "—"];
    let mut s = String::with_capacity(len);
    let mut i = seed;
    loop {
        let piece = PIECES[i % PIECES.len()];
        if s.len() + piece.len() > len {
            break;
        }
        s.push_str(piece);
        i += 1;
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

/// `len` bytes: half repetitive, half from a xorshift generator (hard to
/// compress), so both deflate's matches and its literals are exercised.
fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            if (i / 4096) % 2 == 0 {
                (i % 251) as u8
            } else {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            }
        })
        .collect()
}

fn messages() -> Vec<Message> {
    let sizes = [0usize, 1, 100, 1024, 10 * 1024, 64 * 1024, 200 * 1024];
    let mut out = Vec::new();
    // Twice over, so that a kept context (takeover) is used on repeats.
    for round in 0..2 {
        for (i, &size) in sizes.iter().enumerate() {
            out.push(Message::Text(text(size, i + round).into()));
            out.push(Message::Binary(binary(size, (i + round * 10) as u64 + 1).into()));
        }
    }
    // A run of small similar messages (context takeover shines here).
    for i in 0..20 {
        out.push(Message::Text(format!("{{\"type\":\"message\",\"name\":\"ann\",\"seq\":{i},\"text\":\"hello ✓\"}}").into()));
    }
    out
}

fn describe(m: &Message) -> String {
    match m {
        Message::Text(t) => format!("text of {} bytes", t.len()),
        Message::Binary(b) => format!("binary of {} bytes", b.len()),
    }
}

fn fail(error: String) -> ExitCode {
    println!("{}", serde_json::json!({"ok": false, "error": error}));
    ExitCode::FAILURE
}

async fn run(url: &str, config: DeflateConfig) -> Result<serde_json::Value, String> {
    let options = ClientOptions::default().deflate(config);
    let mut ws = blaze_tokio::connect_with_options(url, options).await.map_err(|e| format!("connect: {e}"))?;
    let extensions = ws.header("sec-websocket-extensions").map(str::to_owned);
    let compressed = ws.is_compressed();
    let sent = messages();
    // Several in flight at once, then each echo in order.
    for chunk in sent.chunks(6) {
        for m in chunk {
            ws.send(m.clone()).map_err(|e| format!("send {}: {e}", describe(m)))?;
        }
        for (k, m) in chunk.iter().enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(10), ws.recv())
                .await
                .map_err(|_| format!("timed out waiting for the echo of {}", describe(m)))?;
            let Some(got) = got else {
                return Err(format!("closed ({:?}) before the echo of {} (#{k})", ws.close_status(), describe(m)));
            };
            let equal = match (m, &got) {
                (Message::Text(a), Message::Text(b)) => a.as_bytes() == b.as_bytes(),
                (Message::Binary(a), Message::Binary(b)) => a == b,
                _ => false,
            };
            if !equal {
                return Err(format!("echo of {} came back as {}, not equal", describe(m), describe(&got)));
            }
        }
    }
    let _ = ws.close(1000u16, "done");
    // Let the close handshake finish (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ws.recv().await.is_some() {} }).await;
    Ok(serde_json::json!({
        "ok": true,
        "extensions": extensions,
        "compressed": compressed,
        "messages": sent.len(),
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(url) = arg("--url") else { return fail("--url ws://HOST:PORT/PATH is required".into()) };
    let mode = match arg("--mode").as_deref().unwrap_or("shared") {
        "shared" => CompressionMode::Shared,
        "dedicated" => CompressionMode::Dedicated,
        other => return fail(format!("--mode must be shared or dedicated, not {other:?}")),
    };
    let window: u8 = match arg("--window").unwrap_or_else(|| "15".into()).parse() {
        Ok(bits @ 9..=15) => bits,
        _ => return fail("--window must be 9..=15".into()),
    };
    let config = DeflateConfig::default().mode(mode).window_bits(window).threshold(0);
    match tokio::time::timeout(Duration::from_secs(60), run(&url, config)).await {
        Ok(Ok(report)) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => fail(error),
        Err(_) => fail("timed out after 60 s".into()),
    }
}

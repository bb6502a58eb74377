//! `handshake_request` and `handshake_response`: arbitrary bytes, in
//! arbitrary pieces, into the server's request reader and the client's
//! response reader.
//!
//! Input layout (both): a control byte, a chunking byte
//! ([`crate::chunks::plan`]), then the bytes the peer sent.

use std::time::Instant;

use base64::Engine;
use blaze_proto::bytes::BytesMut;
use blaze_proto::handshake::{
    ClientHandshake, ClientHandshakeError, HandshakeError, HandshakeLimits, HandshakeResponse, HttpRequest,
    HttpResponse, RequestReader, UpgradeRequest,
};

use crate::{alloc, chunks};

/// The key of the RFC 6455 §1.3 example, so a fuzzer (and the seeds) can
/// reach past the `Sec-WebSocket-Accept` check with the RFC's accept value
/// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
pub const CLIENT_KEY: [u8; 16] = *b"the sample nonce";

/// The most a client accepts as a response head (`MAX_RESPONSE_HEAD` in
/// blaze-proto's client.rs).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Heap a parse may hold at once beyond a few copies of its input.
const HEAP_SLACK: usize = 64 * 1024;

/// Feeds `wire` to `read` in the pieces `plan` gives, stopping at the first
/// answer that is not "need more". Returns that answer (or the last `None`)
/// and what was left in the buffer, with every later byte appended, as a
/// driver that stops reading would have it.
fn in_pieces<T, E>(
    wire: &[u8],
    plan: &[usize],
    max_buffered: usize,
    mut read: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> (Result<Option<T>, E>, BytesMut) {
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut last = Ok(None);
    for &piece in plan {
        buf.extend_from_slice(&wire[at..at + piece]);
        at += piece;
        last = read(&mut buf);
        match &last {
            Ok(None) => {
                // Bounded memory: a reader that needs more never holds more
                // than its head limit.
                assert!(buf.len() <= max_buffered, "{} bytes buffered waiting for a head (limit {max_buffered})", buf.len());
            }
            _ => break,
        }
    }
    buf.extend_from_slice(&wire[at..]);
    (last, buf)
}

// ---- server side --------------------------------------------------------

pub fn handshake_request(data: &[u8]) {
    let [ctl, seed, wire @ ..] = data else { return };
    let max_head_bytes = match ctl & 3 {
        0 => 16 * 1024,
        1 => 64,
        2 => 512,
        _ => 4096,
    };
    let max_headers = match (ctl >> 2) & 3 {
        0 => 64,
        1 => 0,
        2 => 4,
        _ => 16,
    };
    let limits = HandshakeLimits::default().max_head_bytes(max_head_bytes).max_headers(max_headers);
    let reader = RequestReader::new(limits, Instant::now());
    let plan = chunks::plan(&[*seed], wire.len());

    let ((result, rest), peak) = alloc::peak_during(|| {
        let (result, rest) = in_pieces(wire, &plan, max_head_bytes, |buf| reader.read(buf));
        let upgrade = match &result {
            Ok(Some(request)) => Some(UpgradeRequest::validate(request.clone())),
            _ => None,
        };
        ((result, upgrade), rest)
    });
    let bound = HEAP_SLACK + 8 * wire.len() + max_headers * 64;
    assert!(peak <= bound, "reading a {}-byte request held {peak} heap bytes (bound {bound})", wire.len());
    let (result, upgrade) = result;

    // Delivered at once, the same bytes give the same answer: the same
    // request and the same bytes after it, both "need more", or errors
    // answering with the same status, neither consuming anything.
    let mut whole_buf = BytesMut::from(wire);
    let whole = reader.read(&mut whole_buf);
    match (&result, &whole) {
        (Ok(Some(a)), Ok(Some(b))) => {
            assert_eq!(a, b, "chunking {plan:?} changed the request");
            assert_eq!(rest, whole_buf, "chunking changed the bytes left after the head");
        }
        (Ok(None), Ok(None)) => assert_eq!(rest, whole_buf, "waiting for more consumed bytes"),
        (Err(a), Err(b)) => {
            assert_eq!(
                a.status(),
                b.status(),
                "in pieces {plan:?} refused with {a:?} ({}), at once with {b:?} ({})",
                a.status(),
                b.status()
            );
            assert_eq!(rest, whole_buf, "a refusal consumed bytes");
        }
        _ => panic!("in pieces {result:?}, at once {whole:?} (plan {plan:?})"),
    }

    match result {
        Ok(Some(request)) => {
            let head_len = wire.len() - rest.len();
            assert!(head_len <= max_head_bytes, "accepted a {head_len}-byte head over the {max_head_bytes} limit");
            assert!(request.headers.len() <= max_headers, "accepted {} headers", request.headers.len());
            exercise_request(&request);
            match upgrade.expect("validated above") {
                Ok(up) => check_upgrade(&up),
                Err(err) => check_rejection(&err),
            }
        }
        Ok(None) => {}
        Err(err) => check_rejection(&err),
    }
}

/// The accessors a router and guards call on a request.
fn exercise_request(request: &HttpRequest) {
    let pairs: Vec<(String, String)> = request.query_pairs().collect();
    if let Some((k, v)) = pairs.first() {
        assert_eq!(request.query_param(k).as_ref(), Some(v));
    }
    for (name, value) in &request.headers {
        assert_eq!(name, &name.to_ascii_lowercase());
        let first = request.header(name).expect("a header it holds");
        assert!(request.header_all(name).any(|v| v == first));
        let _ = value;
    }
}

/// An accepted request yields a 101 that a client offering what this one
/// offered validates, and a client can send a request equivalent to it.
fn check_upgrade(up: &UpgradeRequest) {
    // The server prefers the client's last offer, to exercise the choice.
    let supported: Vec<String> = up.protocols.iter().rev().cloned().collect();
    let protocol = up.select_protocol(&supported);
    assert_eq!(protocol, up.protocols.last().map(String::as_str));
    // The first offered extension is accepted as it was named, except
    // permessage-deflate, which is negotiated for real (an offer that
    // breaks RFC 7692 §7.1 is declined, and a bare name would not answer
    // an offer with parameters).
    let answer = match up.extensions.first() {
        Some(first) if first.name == "permessage-deflate" => {
            let config = blaze_proto::deflate::DeflateConfig::default()
                .mode(blaze_proto::deflate::CompressionMode::Dedicated);
            up.negotiate_deflate(&config).map(|params| params.to_header())
        }
        Some(first) => Some(first.name.clone()),
        None => None,
    };
    let extension = answer.as_ref().map(|a| a.split(';').next().unwrap_or_default().to_owned());
    let response = up.accept(protocol, answer.as_deref()).to_bytes();

    let raw_key = base64::engine::general_purpose::STANDARD.decode(&up.key).expect("validated key");
    let raw_key: [u8; 16] = raw_key.try_into().expect("validated key is 16 bytes");
    let mut client = ClientHandshake::new(
        up.request.header("host").expect("validated host"),
        match &up.request.query {
            Some(q) => format!("{}?{q}", up.request.path),
            None => up.request.path.clone(),
        },
        raw_key,
    )
    .protocols(up.protocols.clone());
    let offers: Vec<&str> = up.request.header_all("sec-websocket-extensions").collect();
    if !offers.is_empty() {
        client = client.extensions(offers.join(", "));
    }
    assert_eq!(client.key(), up.key, "the key does not re-encode to itself");

    let mut buf = BytesMut::from(&response[..]);
    let done: HandshakeResponse = match client.read_response(&mut buf) {
        Ok(Some(done)) => done,
        other => panic!("client refused the server's 101 {:?}: {other:?}", String::from_utf8_lossy(&response)),
    };
    assert!(buf.is_empty());
    assert_eq!(done.protocol.as_deref(), protocol);
    assert_eq!(done.extensions.iter().map(|e| e.name.clone()).next(), extension);

    // The client's own request for the same thing is accepted too.
    let request = client.request();
    let reader = RequestReader::new(
        HandshakeLimits::default().max_head_bytes(request.len()).max_headers(up.request.headers.len() + 8),
        Instant::now(),
    );
    let mut buf = BytesMut::from(&request[..]);
    let again = match reader.read(&mut buf) {
        Ok(Some(req)) => UpgradeRequest::validate(req),
        other => panic!("server refused the client's request {:?}: {other:?}", String::from_utf8_lossy(&request)),
    };
    let again = again.unwrap_or_else(|e| panic!("client request {:?} rejected: {e}", String::from_utf8_lossy(&request)));
    assert_eq!((&again.key, &again.protocols, &again.request.path), (&up.key, &up.protocols, &up.request.path));
}

/// A refused request renders to a response a client reads as that refusal.
fn check_rejection(err: &HandshakeError) {
    let status = err.status();
    assert!(matches!(status, 400 | 405 | 408 | 426 | 431), "{err:?} answers {status}");
    let response: HttpResponse = err.to_response();
    let bytes = response.to_bytes();
    let client = ClientHandshake::new("localhost", "/", CLIENT_KEY);
    match client.read_response(&mut BytesMut::from(&bytes[..])) {
        Err(ClientHandshakeError::Rejected { status: s, body }) => {
            assert_eq!(s, status);
            assert_eq!(body, response.body);
        }
        other => panic!("client read the {status} for {err:?} as {other:?}"),
    }
}

// ---- client side --------------------------------------------------------

/// The subprotocols the client offers, chosen by bits 0-1 of the control byte.
pub fn offered_protocols(ctl: u8) -> &'static [&'static str] {
    match ctl & 3 {
        0 => &[],
        1 => &["chat"],
        2 => &["chat", "superchat"],
        _ => &["v2.bin.example", "chat"],
    }
}

pub fn handshake_response(data: &[u8]) {
    let [ctl, seed, wire @ ..] = data else { return };
    let offered = offered_protocols(*ctl);
    let mut client = ClientHandshake::new("server.example.com", "/chat", CLIENT_KEY).protocols(offered.iter().copied());
    // Bit 2: offer permessage-deflate, as browsers do.
    if ctl & 4 != 0 {
        client = client.extensions("permessage-deflate; client_max_window_bits");
    }
    let plan = chunks::plan(&[*seed], wire.len());
    let ((result, rest), peak) =
        alloc::peak_during(|| in_pieces(wire, &plan, MAX_RESPONSE_HEAD, |buf| client.read_response(buf)));
    let bound = HEAP_SLACK + 8 * wire.len();
    assert!(peak <= bound, "reading a {}-byte response held {peak} heap bytes (bound {bound})", wire.len());

    // Delivered at once, the same bytes give the same answer: the same
    // response, "need more" both times, or the same error; a rejection has
    // the same status and, with what arrived after the head, the same body.
    let mut whole_buf = BytesMut::from(wire);
    let whole = client.read_response(&mut whole_buf);
    match (&result, &whole) {
        (Ok(Some(a)), Ok(Some(b))) => {
            assert_eq!(a, b, "chunking {plan:?} changed the response");
            assert_eq!(rest, whole_buf, "chunking changed the bytes left after the head");
        }
        (Ok(None), Ok(None)) => assert_eq!(rest, whole_buf, "waiting for more consumed bytes"),
        (
            Err(ClientHandshakeError::Rejected { status: a, body: body_a }),
            Err(ClientHandshakeError::Rejected { status: b, body: body_b }),
        ) => {
            assert_eq!(a, b, "chunking {plan:?} changed the rejection's status");
            let mut body = body_a.to_vec();
            body.extend_from_slice(&rest);
            assert_eq!(&body[..], &body_b[..], "chunking {plan:?} changed the rejection's body");
            assert!(whole_buf.is_empty(), "a rejection left bytes after its body");
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "in pieces {plan:?} refused with {a:?}, at once with {b:?}");
            assert_eq!(rest, whole_buf, "a refusal consumed bytes");
        }
        _ => panic!("in pieces {result:?}, at once {whole:?} (plan {plan:?})"),
    }

    match result {
        Ok(Some(done)) => {
            if let Some(p) = &done.protocol {
                assert!(offered.contains(&p.as_str()), "accepted protocol {p:?}, offered {offered:?}");
            }
            for ext in &done.extensions {
                assert!(ctl & 4 != 0 && ext.name == "permessage-deflate", "accepted extension {:?}", ext.name);
            }
            assert!(done.headers.len() <= 64);
            assert!(wire.len() - rest.len() <= MAX_RESPONSE_HEAD);
        }
        Err(ClientHandshakeError::Rejected { status, .. }) => assert_ne!(status, 101),
        _ => {}
    }
}

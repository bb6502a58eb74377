//! UTF-8 validation of text messages (RFC 6455 §8.1), incremental so a
//! fragmented message fails on its first invalid byte rather than at the end.

use bytes::Bytes;

/// Whether `bytes` is entirely valid UTF-8 (SIMD-accelerated).
pub fn validate_utf8(bytes: &[u8]) -> bool {
    simdutf8::basic::from_utf8(bytes).is_ok()
}

/// Validates a text message fragment by fragment.
///
/// A code point may be split across fragments; up to three bytes of an
/// incomplete sequence are carried to the next fragment. Any byte that can
/// never begin a valid continuation fails at once.
#[derive(Debug, Default)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: usize,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Utf8Validator {
        Utf8Validator::default()
    }

    /// Feeds the next fragment. Returns `false` as soon as the bytes seen so
    /// far cannot be the prefix of valid UTF-8.
    pub fn feed(&mut self, mut input: &[u8]) -> bool {
        if self.carry_len > 0 {
            // Complete the carried code point with as few bytes as it needs.
            let need = utf8_len(self.carry[0]) - self.carry_len;
            let take = need.min(input.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&input[..take]);
            self.carry_len += take;
            input = &input[take..];
            match simdutf8::compat::from_utf8(&self.carry[..self.carry_len]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_some() => return false,
                Err(_) => return input.is_empty(), // still incomplete; input exhausted
            }
        }
        match simdutf8::compat::from_utf8(input) {
            Ok(_) => true,
            Err(e) => match e.error_len() {
                Some(_) => false,
                None => {
                    let tail = &input[e.valid_up_to()..];
                    self.carry[..tail.len()].copy_from_slice(tail);
                    self.carry_len = tail.len();
                    true
                }
            },
        }
    }

    /// Whether the message may end here: no code point is left half-read.
    pub fn is_complete(&self) -> bool {
        self.carry_len == 0
    }
}

/// The length of the sequence a lead byte starts (1 for invalid leads, which
/// the decoder then rejects).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// Bytes known to hold valid UTF-8: a text message's payload, shared
/// without copying.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes after checking they are UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Utf8Bytes, Bytes> {
        if validate_utf8(&bytes) {
            Ok(Utf8Bytes(bytes))
        } else {
            Err(bytes)
        }
    }

    /// Wraps bytes the caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Utf8Bytes {
        debug_assert!(validate_utf8(&bytes));
        Utf8Bytes(bytes)
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or debug-asserts, for bytes the
        // connection's Utf8Validator accepted) that the bytes are UTF-8, and
        // `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Utf8Bytes {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Utf8Bytes {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(bytes: &[u8], split: usize) -> bool {
        let mut v = Utf8Validator::new();
        let (a, b) = bytes.split_at(split);
        v.feed(a) && v.feed(b) && v.is_complete()
    }

    #[test]
    fn valid_text_split_at_every_byte_is_accepted() {
        let text = "κόσμε 𝄞 hello ✓".as_bytes();
        for split in 0..=text.len() {
            assert!(feed_in_pieces(text, split), "split {split}");
        }
    }

    #[test]
    fn invalid_text_split_at_every_byte_is_rejected() {
        let bad = b"abc\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
        for split in 0..=bad.len() {
            assert!(!feed_in_pieces(bad, split), "split {split}");
        }
    }

    #[test]
    fn fails_fast_on_first_invalid_byte_mid_message() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"hello"));
        assert!(!v.feed(b"\xff"));
    }

    #[test]
    fn fails_fast_on_impossible_continuation_of_a_split_code_point() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf0\x9d"));
        assert!(!v.feed(b"\x41"));
    }

    #[test]
    fn truncated_code_point_at_message_end_is_incomplete() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82"));
        assert!(!v.is_complete());
    }

    #[test]
    fn code_point_split_over_three_fragments() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf0"));
        assert!(v.feed(b"\x9d"));
        assert!(v.feed(b"\x84\x9e!"));
        assert!(v.is_complete());
    }
}

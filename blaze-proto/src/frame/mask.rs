//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs every payload byte with the 4-byte key, cycling. It runs on
//! every byte a server receives, so it works a word at a time: the key is
//! rotated to the buffer's phase, widened to 64 bits and applied to 8-byte
//! chunks, which the compiler turns into SIMD on x86_64.

/// XORs `buf` in place with `key`, as if `buf` started at byte `offset` of
/// the masked payload. Applying it twice restores the input.
///
/// ```
/// use blaze_proto::frame::apply_mask;
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let masked = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// The key as seen from byte `offset` of the payload.
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let shift = offset & 3;
    [key[shift], key[(shift + 1) & 3], key[(shift + 2) & 3], key[(shift + 3) & 3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn fast_mask_matches_naive_reference_for_every_length_and_offset() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for len in 0..80 {
            for offset in 0..8 {
                let input: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = input.clone();
                let mut slow = input.clone();
                apply_mask(&mut fast, key, offset);
                naive_mask(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let key = [1, 2, 3, 4];
        let input: Vec<u8> = (0..100u8).collect();
        let mut whole = input.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = input.clone();
        let (a, b) = pieces.split_at_mut(13);
        apply_mask(a, key, 0);
        apply_mask(b, key, 13);
        assert_eq!(whole, pieces);
    }
}

//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs every payload byte with the 4-byte key, cycling. It runs on
//! every byte a server receives, so it works a word at a time: the key is
//! rotated to the buffer's phase, widened to 64 bits and applied to 8-byte
//! chunks, which the compiler turns into SIMD on x86_64. Long buffers are
//! first brought to a 16-byte boundary, so those vector loads and stores
//! never straddle a cache line (a frame's payload starts 6, 8 or 14 bytes
//! into the read buffer, so it is rarely aligned on its own).

/// Buffers at least this long are aligned before the word loop; for
/// shorter ones the byte-wise head would cost more than it saves.
const ALIGN_FROM_LEN: usize = 128;

/// The alignment of the word loop's first byte: one SSE2 vector.
const ALIGN: usize = 16;

/// XORs `buf` in place with `key`, as if `buf` started at byte `offset` of
/// the masked payload. Applying it twice restores the input.
///
/// ```
/// use blaze_proto::frame::apply_mask;
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() >= ALIGN_FROM_LEN {
        let head_len = buf.as_ptr().align_offset(ALIGN).min(buf.len());
        let (head, body) = buf.split_at_mut(head_len);
        mask_bytes(head, rotate_key(key, offset));
        mask_words(body, rotate_key(key, offset + head_len));
    } else {
        mask_words(buf, rotate_key(key, offset));
    }
}

/// Masks 8 bytes at a time, then the tail; `key` is already rotated to
/// `buf[0]`.
#[inline]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let masked = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    mask_bytes(chunks.into_remainder(), key);
}

/// Masks byte by byte; `key` is already rotated to `buf[0]`.
#[inline]
fn mask_bytes(buf: &mut [u8], key: [u8; 4]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// The key as seen from byte `offset` of the payload.
/// One rotate of the key read as a little-endian word: byte `shift` lands
/// first. (Indexing the four bytes cost eight instructions per frame once
/// `offset` stopped being a constant the compiler could fold.)
#[inline]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let shift = (offset & 3) as u32;
    u32::from_le_bytes(key).rotate_right(8 * shift).to_le_bytes()
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
    fn fast_mask_matches_naive_reference_at_every_alignment() {
        // Long enough for the aligned path, starting at every address mod 16.
        let key = [0x12, 0x34, 0x56, 0x78];
        let input: Vec<u8> = (0..1100usize).map(|i| (i * 13 + 5) as u8).collect();
        for skew in 0..16 {
            for len in [ALIGN_FROM_LEN - 1, ALIGN_FROM_LEN, ALIGN_FROM_LEN + 1, 200, 1024 + 7] {
                for offset in 0..4 {
                    let mut fast = input.clone();
                    let mut slow = input.clone();
                    apply_mask(&mut fast[skew..skew + len], key, offset);
                    naive_mask(&mut slow[skew..skew + len], key, offset);
                    assert_eq!(fast, slow, "skew {skew} len {len} offset {offset}");
                }
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

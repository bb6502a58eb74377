//! Splitting an input into the pieces a network would deliver it in.

/// Cuts `len` bytes into consecutive piece lengths chosen by `seed`:
/// mode 0 delivers everything at once, mode 1 byte by byte, mode 2 in
/// pseudo-random pieces of 1..=64 bytes, mode 3 in two pieces cut at a
/// position the seed picks. Every mode covers all `len` bytes in order.
pub fn plan(seed: u8, len: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    match seed & 3 {
        0 => vec![len],
        1 => vec![1; len],
        2 => {
            let mut state = u32::from(seed) | 0x100;
            let mut out = Vec::new();
            let mut left = len;
            while left > 0 {
                // xorshift32: deterministic, so a crash reproduces.
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let piece = (state as usize % 64 + 1).min(left);
                out.push(piece);
                left -= piece;
            }
            out
        }
        _ => {
            let cut = (usize::from(seed >> 2) * len / 64).min(len);
            [cut, len - cut].into_iter().filter(|&n| n > 0).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_plan_covers_the_input() {
        for seed in 0..=255u8 {
            for len in [0, 1, 2, 7, 100, 1000] {
                assert_eq!(super::plan(seed, len).iter().sum::<usize>(), len, "seed {seed} len {len}");
            }
        }
    }
}

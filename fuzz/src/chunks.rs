//! Splitting an input into the pieces a network would deliver it in.

/// Cuts `len` bytes into consecutive piece lengths chosen by `seed` (one
/// or more fuzz-chosen bytes): bits 0-1 of `seed[0]` pick the mode, and
/// every bit of every seed byte seeds a small PRNG ([`Rng`]) that picks the
/// sizes and positions. Mode 0 delivers everything at once, mode 1 byte by
/// byte, mode 2 in pseudo-random pieces of 1..=64 bytes, mode 3 in two to
/// four pieces cut at positions drawn from the whole input (`0..=len`, so
/// a cut can fall anywhere, the last byte included). Every mode covers all
/// `len` bytes in order, and no piece is empty.
pub fn plan(seed: &[u8], len: usize) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    let mode = seed.first().copied().unwrap_or(0) & 3;
    let mut rng = Rng::from_bytes(seed);
    match mode {
        0 => vec![len],
        1 => vec![1; len],
        2 => {
            let mut out = Vec::new();
            let mut left = len;
            while left > 0 {
                let piece = (rng.below(64) + 1).min(left);
                out.push(piece);
                left -= piece;
            }
            out
        }
        _ => {
            let n = 1 + rng.below(3);
            let mut cuts: Vec<usize> = (0..n).map(|_| rng.below(len + 1)).collect();
            cuts.sort_unstable();
            let mut out = Vec::with_capacity(n + 1);
            let mut at = 0;
            for cut in cuts.into_iter().chain([len]) {
                if cut > at {
                    out.push(cut - at);
                    at = cut;
                }
            }
            out
        }
    }
}

/// splitmix64, seeded from a hash (FNV-1a) of every seed byte and the
/// number of bytes: deterministic, so a crash reproduces, and a change to
/// any seed bit moves every cut.
pub struct Rng(u64);

impl Rng {
    pub fn from_bytes(seed: &[u8]) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in seed.iter().chain(&[seed.len() as u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng(h)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn every_plan_covers_the_input() {
        for a in 0..=255u8 {
            for seed in [vec![], vec![a], vec![a, 0x5a], vec![a >> 3, a]] {
                for len in [0, 1, 2, 7, 100, 1000] {
                    let p = plan(&seed, len);
                    assert_eq!(p.iter().sum::<usize>(), len, "seed {seed:?} len {len}");
                    assert!(p.iter().all(|&n| n > 0), "empty piece: seed {seed:?} len {len}: {p:?}");
                    if len > 0 {
                        match seed.first().copied().unwrap_or(0) & 3 {
                            0 => assert_eq!(p, [len]),
                            1 => assert_eq!(p.len(), len),
                            2 => assert!(p.iter().all(|&n| n <= 64)),
                            _ => assert!(p.len() <= 4, "{p:?}"),
                        }
                    }
                }
            }
        }
    }

    /// Cut positions (offsets where a piece ends before the input does).
    fn cuts(seed: &[u8], len: usize) -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::new();
        for piece in plan(seed, len) {
            at += piece;
            if at < len {
                out.push(at);
            }
        }
        out
    }

    /// The old plan took `cut = (seed >> 2) * len / 64`, and `frame_decode`
    /// and `inflate` pass five bits, so two-piece cuts only fell in the
    /// first 7/64 of an input. Every seed width the harnesses pass must
    /// reach the last quarter, and each quarter.
    #[test]
    fn cuts_reach_every_quarter_of_the_input() {
        let len = 1000;
        // One byte (handshake targets), five bits (inflate), two bytes (frame_decode).
        let widths: [Vec<Vec<u8>>; 3] = [
            (0..=255u8).map(|b| vec![b]).collect(),
            (0..32u8).map(|b| vec![b]).collect(),
            (0..=255u8).map(|b| vec![b | 3, b >> 3]).collect(),
        ];
        for seeds in widths {
            let mut quarters = [0usize; 4];
            let mut last_quarter = 0;
            for seed in &seeds {
                if seed[0] & 3 != 3 {
                    continue;
                }
                for cut in cuts(seed, len) {
                    quarters[cut * 4 / len] += 1;
                    if cut >= len * 3 / 4 {
                        last_quarter += 1;
                    }
                }
            }
            assert!(last_quarter > 0, "no cut in the last quarter for {} seeds", seeds.len());
            assert!(quarters.iter().all(|&q| q > 0), "quarters hit {quarters:?} for {} seeds", seeds.len());
        }
        // A single mode-3 seed byte with a cut past 90% of the input.
        assert!((0..=255u8).filter(|b| b & 3 == 3).any(|b| cuts(&[b], len).iter().any(|&c| c > 900)));
        // Mode 2 pieces reach the end too (trivially: they tile it), and a
        // piece boundary can land in the last quarter.
        assert!(cuts(&[2], len).iter().any(|&c| c >= 750));
    }
}

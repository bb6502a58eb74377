//! Masking keys for the client role (RFC 6455 §5.3), from a caller-seeded
//! generator: the core draws no randomness of its own.

/// A small, fast generator (SplitMix64) of 32-bit masking keys.
///
/// §10.3 asks that keys be unpredictable to scripts, to defeat proxy cache
/// poisoning; drivers seed it from the OS's random source per connection.
#[derive(Debug, Clone)]
pub(crate) struct MaskKeys {
    state: u64,
}

impl MaskKeys {
    pub(crate) fn new(seed: u64) -> MaskKeys {
        MaskKeys { state: seed }
    }

    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z as u32).to_ne_bytes()
    }
}

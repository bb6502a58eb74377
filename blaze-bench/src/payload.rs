//! What the messages contain (`--payload`):
//! - `fill`: the byte `x` (echo) or `.` (fan-out) repeated, binary. The
//!   default without `--deflate`, as before.
//! - `json`: market-ticker JSON text (`{"symbol":"BTC-USD","price":95012.5,
//!   "qty":0.25,"side":"buy","ts":...}` objects with varying values), cut to
//!   the exact size. The default with `--deflate`: compressible the way real
//!   traffic is.
//! - `random`: pseudo-random bytes, binary: incompressible.
//!
//! Fan-out messages carry a sequence number: big-endian in the first 8
//! bytes for `fill`/`random`, as `{"seq":0000000042,...` for `json`.

use std::str::FromStr;

use blaze_proto::frame::OpCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    Fill,
    Json,
    Random,
}

impl FromStr for Payload {
    type Err = String;
    fn from_str(s: &str) -> Result<Payload, String> {
        match s {
            "fill" => Ok(Payload::Fill),
            "json" => Ok(Payload::Json),
            "random" => Ok(Payload::Random),
            other => Err(format!("--payload {other:?}: use fill, json or random")),
        }
    }
}

impl Payload {
    pub fn name(self) -> &'static str {
        match self {
            Payload::Fill => "fill",
            Payload::Json => "json",
            Payload::Random => "random",
        }
    }

    pub fn opcode(self) -> OpCode {
        match self {
            Payload::Json => OpCode::Text,
            Payload::Fill | Payload::Random => OpCode::Binary,
        }
    }

    /// Smallest fan-out message that holds a sequence number.
    pub fn min_fanout_size(self) -> usize {
        match self {
            Payload::Json => JSON_SEQ_END,
            Payload::Fill | Payload::Random => 8,
        }
    }

    /// Distinct echo messages of exactly `size` bytes, cycled through by
    /// every connection (with context takeover, identical messages would
    /// compress to almost nothing; real tickers differ from one to the next).
    pub fn echo_variants(self, size: usize) -> Vec<Vec<u8>> {
        match self {
            Payload::Fill => vec![vec![b'x'; size]],
            Payload::Random => (0..16).map(|v| random_bytes(size, 0x1234_5678 + v)).collect(),
            Payload::Json => (0..64).map(|v| json_text(size, String::from("["), v)).collect(),
        }
    }

    /// Fan-out message number `seq`, exactly `size` bytes (at least
    /// [`Payload::min_fanout_size`]).
    pub fn fanout_message(self, seq: u64, size: usize) -> Vec<u8> {
        match self {
            Payload::Fill => {
                let mut p = vec![b'.'; size];
                p[..8].copy_from_slice(&seq.to_be_bytes());
                p
            }
            Payload::Random => {
                let mut p = random_bytes(size, seq ^ 0xdead_beef);
                p[..8].copy_from_slice(&seq.to_be_bytes());
                p
            }
            Payload::Json => json_text(size, format!("{{\"seq\":{seq:010},\"ticks\":["), seq),
        }
    }

    /// The sequence number of a fan-out message, if it has one.
    pub fn seq_of(self, payload: &[u8]) -> Option<u64> {
        match self {
            Payload::Fill | Payload::Random => Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?)),
            Payload::Json => std::str::from_utf8(payload.get(7..JSON_SEQ_END)?).ok()?.parse().ok(),
        }
    }
}

/// `{"seq":` + 10 digits.
const JSON_SEQ_END: usize = 17;

/// xorshift64*: cheap, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(size);
    out
}

const SYMBOLS: [(&str, f64); 12] = [
    ("BTC-USD", 95012.5),
    ("ETH-USD", 3412.25),
    ("SOL-USD", 187.42),
    ("XRP-USD", 2.3141),
    ("ADA-USD", 0.9812),
    ("DOGE-USD", 0.38211),
    ("AVAX-USD", 41.07),
    ("LINK-USD", 23.915),
    ("DOT-USD", 7.842),
    ("LTC-USD", 104.33),
    ("BCH-USD", 512.8),
    ("XLM-USD", 0.4412),
];

/// `prefix` followed by ticker objects, cut to exactly `size` bytes (ASCII,
/// so any cut is valid UTF-8). Values vary with `seed`.
fn json_text(size: usize, prefix: String, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed + 1);
    let mut out = prefix;
    let mut ts: u64 = 1_763_870_000_000 + seed * 37;
    let mut first = true;
    while out.len() < size {
        let (symbol, base) = SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize];
        let drift = (rng.below(20_001) as f64 - 10_000.0) / 1_000_000.0; // ±1%
        let price = base * (1.0 + drift);
        let qty = rng.below(500_000) as f64 / 10_000.0;
        let side = if rng.below(2) == 0 { "buy" } else { "sell" };
        ts += rng.below(250);
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&format!(
            "{{\"symbol\":\"{symbol}\",\"price\":{price:.prec$},\"qty\":{qty:.4},\"side\":\"{side}\",\"ts\":{ts},\"id\":{}}}",
            rng.below(10_000_000_000),
            prec = if base >= 100.0 { 2 } else { 5 },
        ));
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(size);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_sequence_numbers() {
        for kind in [Payload::Fill, Payload::Json, Payload::Random] {
            for size in [32, 1024, 65536] {
                assert!(kind.echo_variants(size).iter().all(|v| v.len() == size));
                let m = kind.fanout_message(4242, size);
                assert_eq!(m.len(), size);
                assert_eq!(kind.seq_of(&m), Some(4242));
            }
        }
        assert!(std::str::from_utf8(&Payload::Json.echo_variants(1000)[3]).is_ok());
    }
}

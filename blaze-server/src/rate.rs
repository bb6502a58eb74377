//! The token bucket behind per-connection rate limits.

use std::time::Instant;

/// Holds up to `burst` tokens, refilled at `per_second`; each message takes one.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(per_second: f64, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket { per_second, burst, tokens: burst, last: now }
    }

    /// Takes a token if one is available at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5, start);
        assert_eq!((0..8).filter(|_| bucket.take(start)).count(), 5);
        // One second later, ten more tokens, capped at the burst of five.
        let later = start + Duration::from_secs(1);
        assert_eq!((0..8).filter(|_| bucket.take(later)).count(), 5);
        // 100 ms later: one token.
        let soon = later + Duration::from_millis(100);
        assert_eq!((0..3).filter(|_| bucket.take(soon)).count(), 1);
    }
}

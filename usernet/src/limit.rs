//! A token bucket for the SYN rate limit (pure: time is passed in).

use smoltcp::time::Instant;

/// `rate` tokens per second, at most `burst` saved up; starts full.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: u32,
    burst: u32,
    /// Tokens in millionths, so that refills of less than one token are kept.
    micro_tokens: u64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            micro_tokens: u64::from(burst) * 1_000_000,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if now > self.last {
            let micros = (now - self.last).total_micros();
            let gained = micros.saturating_mul(u64::from(self.rate));
            self.micro_tokens = self
                .micro_tokens
                .saturating_add(gained)
                .min(u64::from(self.burst) * 1_000_000);
            self.last = now;
        }
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::from_secs(100);
        let mut b = TokenBucket::new(10, 3, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        // 10 per second: one token every 100 ms, fractions kept.
        assert!(!b.take(t0 + smoltcp::time::Duration::from_millis(50)));
        assert!(b.take(t0 + smoltcp::time::Duration::from_millis(100)));
        assert!(!b.take(t0 + smoltcp::time::Duration::from_millis(150)));
        // A long pause refills to the burst only.
        let later = t0 + smoltcp::time::Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
        // Time going backwards gains nothing.
        assert!(!b.take(t0));
    }
}

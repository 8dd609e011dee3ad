//! Retrying a notary that is down or slow: exponential backoff with jitter, and one console line
//! per change of state ("unreachable", "reachable again"), never one per try.

use std::time::Duration;

/// The first delay after a failure.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// The retry state of one conversation with the notary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

/// What a failure or success changes on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing to say: the state is what it was.
    Same,
    /// The first failure after success (or at start): say it once.
    Lost,
    /// The first success after failures: say it once.
    Regained,
}

impl Backoff {
    /// A success: resets the delay.
    pub fn succeeded(&mut self) -> Change {
        let change = if self.failures > 0 {
            Change::Regained
        } else {
            Change::Same
        };
        self.failures = 0;
        change
    }

    /// A failure: returns the delay before the next try (between half and all of
    /// `FIRST_DELAY * 2^(failures-1)`, capped at [`MAX_DELAY`]; `random` picks where, so
    /// nodes that lost the notary together do not come back together) and what changed.
    pub fn failed(&mut self, random: u64) -> (Duration, Change) {
        self.failures = self.failures.saturating_add(1);
        let change = if self.failures == 1 {
            Change::Lost
        } else {
            Change::Same
        };
        let doublings = self.failures.saturating_sub(1).min(16);
        let full = FIRST_DELAY.saturating_mul(1u32 << doublings).min(MAX_DELAY);
        let half = full / 2;
        let span = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(if span == 0 { 0 } else { random % (span + 1) });
        (half + jitter, change)
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// 64 random bits for jitter (0 when the kernel has none to give: the delay is then the
/// shortest of its range, which is still bounded).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_in_their_jitter_range_and_are_capped() {
        let mut b = Backoff::default();
        let mut lows = Vec::new();
        for failure in 1..=10u32 {
            let (low, change) = b.clone().failed(0);
            let (high, _) = b.clone().failed(u64::MAX - 1);
            let (_, _) = b.failed(7);
            assert_eq!(change == Change::Lost, failure == 1);
            let full = (FIRST_DELAY * (1u32 << (failure - 1))).min(MAX_DELAY);
            assert_eq!(low, full / 2);
            assert!(high >= low && high <= full, "{high:?} {full:?}");
            lows.push(low.as_millis());
        }
        assert_eq!(lows[..7], [500, 1000, 2000, 4000, 8000, 16000, 30000]);
        assert_eq!(b.failures(), 10);
    }

    #[test]
    fn only_changes_are_reported() {
        let mut b = Backoff::default();
        assert_eq!(b.succeeded(), Change::Same);
        assert_eq!(b.failed(1).1, Change::Lost);
        assert_eq!(b.failed(1).1, Change::Same);
        assert_eq!(b.succeeded(), Change::Regained);
        assert_eq!(b.succeeded(), Change::Same);
        assert_eq!(b.failed(1).1, Change::Lost);
    }
}

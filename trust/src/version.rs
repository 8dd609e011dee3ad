//! Version counters and the rollback check.
//!
//! Every document stream (releases, a workload's manifests) carries a version that only grows.
//! A verifier that keeps state (stage 0, the node) persists the highest version it has accepted
//! and refuses anything lower, so an attacker cannot replay an old, validly signed release with
//! known holes. Equal versions are accepted: re-booting the release already running is normal.

use thiserror::Error;

/// Why a candidate version was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RollbackError {
    /// The candidate is older than a version already accepted.
    #[error("version {candidate} is older than version {highest_seen} already accepted (rollback refused)")]
    Older {
        /// The version offered.
        candidate: u64,
        /// The highest version accepted before.
        highest_seen: u64,
    },
}

/// Accepts `candidate` when it is at least `highest_seen`.
pub fn check_rollback(candidate: u64, highest_seen: u64) -> Result<(), RollbackError> {
    if candidate < highest_seen {
        return Err(RollbackError::Older {
            candidate,
            highest_seen,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn equal_and_newer_pass_older_fails() {
        assert_eq!(check_rollback(5, 5), Ok(()));
        assert_eq!(check_rollback(6, 5), Ok(()));
        assert_eq!(check_rollback(0, 0), Ok(()));
        assert_eq!(check_rollback(u64::MAX, 0), Ok(()));
        assert_eq!(
            check_rollback(4, 5),
            Err(RollbackError::Older {
                candidate: 4,
                highest_seen: 5
            })
        );
        assert_eq!(
            check_rollback(0, u64::MAX).map_err(|e| e.to_string()),
            Err("version 0 is older than version 18446744073709551615 already accepted (rollback refused)".to_string())
        );
    }
}

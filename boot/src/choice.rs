//! Which release to boot when the machine has a data disk: the pure part of boot counting.
//!
//! Stage 0 verifies the manifest of every source (the stick, the release cache on the data
//! disk, the release URLs) and hands the versions that passed to [`plan`], with the boot
//! state the data disk records ([`interfaces::boot_state`]). A trial with no tries left never
//! reached `nullos: ready`: it is marked bad ([`Plan::marked_bad`], the console line of
//! [`fallback_line`]). The rest are tried highest first, skipping every version marked bad.
//! Before the kexec of the one that verifies, [`before_boot`] gives the state to record: a
//! version above the good one is a trial and spends one of its tries; the good one records
//! nothing.

use interfaces::boot_state::{BootState, Trial, TRIAL_TRIES};

/// What stage 0 does with the versions it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The boot state after marking an exhausted trial bad (to be written if it changed).
    pub state: BootState,
    /// The trial that ran out of tries in this plan, now marked bad.
    pub marked_bad: Option<u64>,
    /// The versions to try, highest first, none marked bad, without repeats.
    pub order: Vec<u64>,
}

/// The plan for `candidates` (versions whose manifests verified, any order) on a machine whose
/// data disk records `state`.
pub fn plan(state: &BootState, candidates: &[u64]) -> Plan {
    let mut state = state.clone();
    let mut marked_bad = None;
    if let Some(trial) = state.trial.filter(|t| t.tries_left == 0) {
        state.mark_bad(trial.version);
        marked_bad = Some(trial.version);
    }
    let mut order: Vec<u64> = candidates
        .iter()
        .copied()
        .filter(|v| !state.is_bad(*v))
        .collect();
    order.sort_unstable_by_key(|v| std::cmp::Reverse(*v));
    order.dedup();
    Plan {
        state,
        marked_bad,
        order,
    }
}

/// The boot state to record before booting `version`, or `None` when it is the good one (or
/// older: nothing to count).
pub fn before_boot(state: &BootState, version: u64) -> Option<BootState> {
    if version <= state.good {
        return None;
    }
    let tries_left = match state.trial {
        Some(trial) if trial.version == version => trial.tries_left.saturating_sub(1),
        _ => TRIAL_TRIES - 1,
    };
    let mut next = state.clone();
    next.trial = Some(Trial {
        version,
        tries_left,
    });
    Some(next)
}

/// The versions the release cache keeps after booting `booting` (the good one and the one
/// booting; a trial may be either).
pub fn keep_in_cache(state: &BootState, booting: u64) -> Vec<u64> {
    let mut keep = vec![booting];
    if state.good != 0 && state.good != booting && !state.is_bad(state.good) {
        keep.push(state.good);
    }
    keep
}

/// The console line when a trial ran out of tries: `nullos: release version=<bad> did not
/// reach ready; marked bad, falling back to version=<next>` (or `...; marked bad, no release
/// to fall back to`).
pub fn fallback_line(bad: u64, next: Option<u64>) -> String {
    match next {
        Some(next) => format!(
            "nullos: release version={bad} did not reach ready; marked bad, falling back to version={next}"
        ),
        None => format!(
            "nullos: release version={bad} did not reach ready; marked bad, no release to fall back to"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(good: u64, trial: Option<(u64, u32)>, bad: &[u64]) -> BootState {
        BootState {
            good,
            trial: trial.map(|(version, tries_left)| Trial {
                version,
                tries_left,
            }),
            bad: bad.to_vec(),
        }
    }

    #[test]
    fn the_highest_version_not_marked_bad_comes_first() {
        let p = plan(&state(2, None, &[4]), &[2, 4, 3, 3, 2]);
        assert_eq!(p.order, vec![3, 2]);
        assert_eq!(p.marked_bad, None);
        assert_eq!(p.state, state(2, None, &[4]));
    }

    #[test]
    fn a_newer_release_is_a_trial_that_spends_its_tries() {
        let good = state(2, None, &[]);
        let first = before_boot(&good, 3).unwrap();
        assert_eq!(first, state(2, Some((3, TRIAL_TRIES - 1)), &[]));
        let mut s = first;
        for _ in 1..TRIAL_TRIES {
            assert_eq!(plan(&s, &[2, 3]).order, vec![3, 2], "still has tries");
            s = before_boot(&s, 3).unwrap();
        }
        assert_eq!(s.trial.unwrap().tries_left, 0);
        // Out of tries: marked bad, and the good release is next.
        let p = plan(&s, &[2, 3]);
        assert_eq!(p.marked_bad, Some(3));
        assert_eq!(p.order, vec![2]);
        assert_eq!(p.state, state(2, None, &[3]));
        assert_eq!(
            before_boot(&p.state, 2),
            None,
            "the good one records nothing"
        );
        assert_eq!(
            fallback_line(3, p.order.first().copied()),
            "nullos: release version=3 did not reach ready; marked bad, falling back to version=2"
        );
    }

    #[test]
    fn a_release_marked_bad_is_never_retried_but_a_newer_one_is() {
        let s = state(2, None, &[3]);
        let p = plan(&s, &[3, 3, 2]);
        assert_eq!(p.order, vec![2]);
        assert_eq!(p.marked_bad, None, "marked before, no new line");
        let p = plan(&s, &[4, 3, 2]);
        assert_eq!(p.order, vec![4, 2]);
        assert_eq!(
            before_boot(&s, 4),
            Some(state(2, Some((4, TRIAL_TRIES - 1)), &[3]))
        );
    }

    #[test]
    fn a_newer_trial_replaces_an_older_one_with_fresh_tries() {
        let s = state(2, Some((3, 0)), &[]);
        // The exhausted 3 is marked bad even though 4 came along.
        let p = plan(&s, &[4, 3, 2]);
        assert_eq!(p.marked_bad, Some(3));
        assert_eq!(p.order, vec![4, 2]);
        let s = state(2, Some((3, 1)), &[]);
        assert_eq!(
            before_boot(&s, 4),
            Some(state(2, Some((4, TRIAL_TRIES - 1)), &[]))
        );
    }

    #[test]
    fn an_exhausted_trial_with_nothing_else_leaves_nothing_to_boot() {
        let p = plan(&state(0, Some((1, 0)), &[]), &[1]);
        assert_eq!(p.order, Vec::<u64>::new());
        assert_eq!(
            fallback_line(1, None),
            "nullos: release version=1 did not reach ready; marked bad, no release to fall back to"
        );
        // The first release on a fresh disk is a trial too (nothing proved itself yet).
        assert_eq!(
            before_boot(&BootState::default(), 1),
            Some(state(0, Some((1, TRIAL_TRIES - 1)), &[]))
        );
    }

    #[test]
    fn the_cache_keeps_the_good_release_and_the_one_booting() {
        assert_eq!(keep_in_cache(&state(2, Some((3, 1)), &[]), 3), vec![3, 2]);
        assert_eq!(keep_in_cache(&state(2, None, &[3]), 2), vec![2]);
        assert_eq!(keep_in_cache(&BootState::default(), 1), vec![1]);
    }
}

//! `nullos-boot` at the root of the data disk: which release proved itself on this machine and
//! which one is on trial (boot counting, as Bottlerocket's and ChromeOS's A/B schemes do it).
//!
//! Stage 0 reads it to choose what to boot: a release newer than the last good one is a
//! trial, recorded here with its tries left before each kexec; a trial with no tries left
//! never reached `nullos: ready` and is marked bad, and a release marked bad is never booted
//! again. The node's `init`, once it printed `nullos: ready`, marks its own version good
//! ([`BootState::mark_good`]) and raises the version floor ([`crate::floor_state`]) to it.
//!
//! Text format (every key at most once; a missing file is [`BootState::default`]):
//!
//! ```text
//! # NullOS boot state: written by stage 0 and the node's init.
//! good_version = 2
//! trial_version = 3
//! trial_tries_left = 1
//! bad_versions = 4 5
//! ```
//!
//! The file comes from a disk anyone with the machine in hand can write, so [`parse`] is
//! bounded ([`MAX_BOOT_STATE_BYTES`], at most [`MAX_BAD_VERSIONS`] bad versions, tries at most
//! [`TRIAL_TRIES`]) and refuses what is inconsistent (a trial not above the good version, a
//! good version marked bad). Like the floor, a file that is there but damaged is an error, not
//! an empty state: stage 0 refuses to boot rather than forget which release is bad.

use std::fmt::Write as _;
use std::path::Path;

use crate::floor_state::{self, StateError};

/// The file's name at the data disk's root.
pub const BOOT_STATE_FILE: &str = "nullos-boot";
/// Largest file read.
pub const MAX_BOOT_STATE_BYTES: u64 = 4096;
/// Most bad versions kept (the lowest are dropped first: the floor refuses them anyway).
pub const MAX_BAD_VERSIONS: usize = 32;
/// How many times a new release is booted before it is marked bad if it never reached ready.
pub const TRIAL_TRIES: u32 = 2;

const GOOD: &str = "good_version";
const TRIAL: &str = "trial_version";
const TRIES: &str = "trial_tries_left";
const BAD: &str = "bad_versions";

/// A release on trial: booted, not yet seen ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial {
    /// Its version (above the good one).
    pub version: u64,
    /// How many more boots it gets; at 0 it is marked bad instead of booted.
    pub tries_left: u32,
}

/// What the data disk records about the releases booted on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootState {
    /// The highest version that reached `nullos: ready` (0: none yet).
    pub good: u64,
    /// The release on trial, if any.
    pub trial: Option<Trial>,
    /// Versions that never reached ready, ascending, without duplicates.
    pub bad: Vec<u64>,
}

impl BootState {
    /// Whether `version` was marked bad.
    pub fn is_bad(&self, version: u64) -> bool {
        self.bad.binary_search(&version).is_ok()
    }

    /// Records that `version` reached `nullos: ready`. Returns whether anything changed.
    pub fn mark_good(&mut self, version: u64) -> bool {
        let before = self.clone();
        self.good = self.good.max(version);
        if self.trial.is_some_and(|t| t.version <= self.good) {
            self.trial = None;
        }
        // It proved itself: whatever an earlier boot concluded, it is not bad.
        self.bad.retain(|v| *v != version);
        *self != before
    }

    /// Records that `version` never reached ready: it is never booted again.
    pub fn mark_bad(&mut self, version: u64) {
        if let Err(at) = self.bad.binary_search(&version) {
            self.bad.insert(at, version);
        }
        if self.bad.len() > MAX_BAD_VERSIONS {
            let extra = self.bad.len() - MAX_BAD_VERSIONS;
            self.bad.drain(..extra);
        }
        if self.trial.is_some_and(|t| t.version == version) {
            self.trial = None;
        }
    }

    /// The file's text.
    pub fn format(&self) -> String {
        let mut text =
            String::from("# NullOS boot state: written by stage 0 and the node's init.\n");
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{GOOD} = {}", self.good);
        if let Some(trial) = self.trial {
            let _ = writeln!(text, "{TRIAL} = {}", trial.version);
            let _ = writeln!(text, "{TRIES} = {}", trial.tries_left);
        }
        if !self.bad.is_empty() {
            let list: Vec<String> = self.bad.iter().map(u64::to_string).collect();
            let _ = writeln!(text, "{BAD} = {}", list.join(" "));
        }
        text
    }
}

/// Reads the file's text (see the module docs for what is refused).
pub fn parse(text: &str) -> Result<BootState, String> {
    if text.len() as u64 > MAX_BOOT_STATE_BYTES {
        return Err(format!("longer than {MAX_BOOT_STATE_BYTES} bytes"));
    }
    let (mut good, mut trial, mut tries, mut bad) = (None, None, None, None);
    let number = |key: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{key} '{value}' is not a number"))
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("unexpected line '{line}'"))?;
        let twice = || format!("{key} appears twice");
        match key {
            GOOD if good.is_none() => good = Some(number(key, value)?),
            TRIAL if trial.is_none() => trial = Some(number(key, value)?),
            TRIES if tries.is_none() => tries = Some(number(key, value)?),
            BAD if bad.is_none() => {
                let mut list = Vec::new();
                for word in value.split_ascii_whitespace() {
                    if list.len() == MAX_BAD_VERSIONS {
                        return Err(format!("{BAD} lists more than {MAX_BAD_VERSIONS} versions"));
                    }
                    list.push(number(key, word)?);
                }
                if !list.windows(2).all(|w| w[0] < w[1]) {
                    return Err(format!("{BAD} is not in ascending order without repeats"));
                }
                bad = Some(list);
            }
            GOOD | TRIAL | TRIES | BAD => return Err(twice()),
            _ => return Err(format!("unexpected key '{key}'")),
        }
    }
    let good = good.ok_or_else(|| format!("no {GOOD}"))?;
    let trial = match (trial, tries) {
        (None, None) => None,
        (Some(version), Some(tries_left)) => {
            let tries_left = u32::try_from(tries_left)
                .ok()
                .filter(|t| *t <= TRIAL_TRIES)
                .ok_or_else(|| format!("{TRIES} {tries_left} is more than {TRIAL_TRIES}"))?;
            if version <= good {
                return Err(format!("{TRIAL} {version} is not above {GOOD} {good}"));
            }
            Some(Trial {
                version,
                tries_left,
            })
        }
        _ => return Err(format!("{TRIAL} and {TRIES} go together")),
    };
    let bad = bad.unwrap_or_default();
    if bad.binary_search(&good).is_ok() {
        return Err(format!("{GOOD} {good} is also in {BAD}"));
    }
    if let Some(t) = trial.filter(|t| bad.binary_search(&t.version).is_ok()) {
        return Err(format!("{TRIAL} {} is also in {BAD}", t.version));
    }
    Ok(BootState { good, trial, bad })
}

/// The boot state recorded in `dir` (the data disk's mounted root); the default without a file.
pub fn read_in(dir: &Path) -> Result<BootState, StateError> {
    let path = dir.join(BOOT_STATE_FILE);
    match floor_state::read_text_nofollow(&path, MAX_BOOT_STATE_BYTES)? {
        None => Ok(BootState::default()),
        Some(text) => parse(&text).map_err(|reason| StateError::Damaged { path, reason }),
    }
}

/// Replaces the boot state in `dir` atomically.
pub fn write_in(dir: &Path, state: &BootState) -> Result<(), StateError> {
    floor_state::write_atomic(dir, BOOT_STATE_FILE, state.format().as_bytes())
}

/// What the node's `init` does once it printed `nullos: ready` on a data disk mounted at `dir`:
/// marks `version` good in the boot state and raises the version floor to it (never lowered).
/// Returns whether the boot state changed and the new floor if it was raised.
pub fn mark_ready_in(dir: &Path, version: u64) -> Result<(bool, Option<u64>), StateError> {
    let mut state = read_in(dir)?;
    let changed = state.mark_good(version);
    if changed {
        write_in(dir, &state)?;
    }
    let raised = floor_state::raise_in(dir, version)?;
    Ok((changed, raised))
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
    fn round_trips() {
        for s in [
            BootState::default(),
            state(2, Some((3, 1)), &[4, 5]),
            state(7, None, &[1]),
            state(0, Some((1, TRIAL_TRIES)), &[]),
        ] {
            assert_eq!(parse(&s.format()), Ok(s.clone()), "{}", s.format());
        }
    }

    #[test]
    fn damaged_or_inconsistent_text_is_an_error() {
        for text in [
            "",
            "good_version = x",
            "good_version = 1\ngood_version = 2",
            "good_version = 1\ntrial_version = 2",
            "good_version = 3\ntrial_version = 2\ntrial_tries_left = 1",
            "good_version = 1\ntrial_version = 2\ntrial_tries_left = 99",
            "good_version = 1\nbad_versions = 3 2",
            "good_version = 1\nbad_versions = 2 2",
            "good_version = 1\nbad_versions = 1",
            "good_version = 1\ntrial_version = 2\ntrial_tries_left = 1\nbad_versions = 2",
            "good_version = 1\nother = 2",
            "good_version",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
        let many: Vec<String> = (1..=MAX_BAD_VERSIONS as u64 + 1)
            .map(|v| v.to_string())
            .collect();
        let text = format!("good_version = 0\nbad_versions = {}", many.join(" "));
        assert!(parse(&text).unwrap_err().contains("more than"));
        assert!(parse(&"#".repeat(5000)).is_err(), "longer than the bound");
    }

    #[test]
    fn good_clears_a_trial_it_reaches_and_is_never_lowered() {
        let mut s = state(2, Some((3, 1)), &[]);
        assert!(s.mark_good(3));
        assert_eq!(s, state(3, None, &[]));
        assert!(!s.mark_good(3), "nothing changed");
        assert!(!s.mark_good(2), "never lowered");
        assert_eq!(s.good, 3);
        let mut s = state(2, Some((5, 1)), &[]);
        assert!(!s.mark_good(2), "already good");
        assert_eq!(s.trial.map(|t| t.version), Some(5), "a higher trial stays");
    }

    #[test]
    fn bad_versions_are_kept_sorted_and_bounded() {
        let mut s = state(1, Some((9, 0)), &[]);
        s.mark_bad(9);
        s.mark_bad(4);
        s.mark_bad(9);
        assert_eq!(s, state(1, None, &[4, 9]));
        for v in 100..200 {
            s.mark_bad(v);
        }
        assert_eq!(s.bad.len(), MAX_BAD_VERSIONS);
        assert_eq!(s.bad.last(), Some(&199));
        assert_eq!(parse(&s.format()), Ok(s));
    }

    #[test]
    fn the_node_marks_itself_good_and_raises_the_floor_on_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_in(dir.path()).unwrap(), BootState::default());
        write_in(dir.path(), &state(1, Some((2, 1)), &[])).unwrap();
        assert_eq!(mark_ready_in(dir.path(), 2).unwrap(), (true, Some(2)));
        assert_eq!(read_in(dir.path()).unwrap(), state(2, None, &[]));
        assert_eq!(floor_state::read_in(dir.path()).unwrap(), 2);
        assert_eq!(mark_ready_in(dir.path(), 2).unwrap(), (false, None));
        std::fs::write(dir.path().join(BOOT_STATE_FILE), "good_version = y\n").unwrap();
        let e = read_in(dir.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("nullos-boot: good_version 'y' is not a number"),
            "{e}"
        );
        assert!(
            mark_ready_in(dir.path(), 3).is_err(),
            "a damaged state is not overwritten"
        );
    }
}

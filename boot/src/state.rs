//! The highest release version this machine accepted, kept in `nullos-state` on the release
//! partition so a replayed older (validly signed) release is refused after a newer one booted.
//!
//! Text format, one key:
//!
//! ```text
//! # NullOS stage 0: the highest release version accepted on this machine. Never lowered.
//! highest_version = 5
//! ```
//!
//! A missing file means 0 (a fresh stick). A file that is there but unreadable is refused
//! rather than read as 0: failing closed is the only safe reading of a damaged rollback floor.

/// The state file's name on the release partition.
pub const STATE_FILE: &str = "nullos-state";
/// Largest state file read.
pub const MAX_STATE_BYTES: u64 = 4096;

const KEY: &str = "highest_version";

/// Reads the state file's text: the highest version accepted.
pub fn parse(text: &str) -> Result<u64, String> {
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value = line
            .split_once('=')
            .filter(|(k, _)| k.trim() == KEY)
            .map(|(_, v)| v.trim())
            .ok_or_else(|| format!("unexpected line '{line}' in {STATE_FILE}"))?;
        if found.is_some() {
            return Err(format!("{KEY} appears twice in {STATE_FILE}"));
        }
        found = Some(
            value
                .parse::<u64>()
                .map_err(|_| format!("{KEY} '{value}' is not a version number"))?,
        );
    }
    found.ok_or_else(|| format!("{STATE_FILE} has no {KEY}"))
}

/// The state file's text for `highest`.
pub fn format(highest: u64) -> String {
    format!(
        "# NullOS stage 0: the highest release version accepted on this machine. Never lowered.\n\
         {KEY} = {highest}\n"
    )
}

/// The version to persist after accepting `accepted`, if it raises the floor (never lowers it).
pub fn raised(highest_seen: u64, accepted: u64) -> Option<u64> {
    (accepted > highest_seen).then_some(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_comments() {
        assert_eq!(parse(&format(7)), Ok(7));
        assert_eq!(parse("highest_version=0"), Ok(0));
        assert_eq!(parse("\n# x\n  highest_version = 12  \n"), Ok(12));
    }

    #[test]
    fn damaged_state_is_an_error_not_zero() {
        assert!(parse("").is_err());
        assert!(parse("highest_version = -1").is_err());
        assert!(parse("highest_version = 1\nhighest_version = 2").is_err());
        assert!(parse("lowest_version = 1").is_err());
        assert!(parse("highest_version = 99999999999999999999999").is_err());
    }

    #[test]
    fn the_floor_only_rises() {
        assert_eq!(raised(3, 4), Some(4));
        assert_eq!(raised(3, 3), None);
        assert_eq!(raised(3, 2), None);
    }
}

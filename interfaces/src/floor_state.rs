//! The highest release version this machine accepted, kept in `nullos-state` on the release
//! partition and at the root of the machine's data disk, so a replayed older (validly signed)
//! release is refused after a newer one booted, even from a fresh stick.
//!
//! Text format, one key:
//!
//! ```text
//! # NullOS stage 0: the highest release version accepted on this machine. Never lowered.
//! highest_version = 5
//! ```
//!
//! The stick's file also pins the machine's data disk, once stage 0 has seen exactly one disk
//! labelled like ours (`data_disk = <ext4 UUID>`, [`StickState`]): from then on only that disk is
//! the data disk, for stage 0's floor and for the node (`nullos.data=`). It is written in the
//! same write as the floor.
//!
//! A missing file means 0 (a fresh stick, a data disk stage 0 has not written yet). A file that
//! is there but unreadable is refused rather than read as 0: failing closed is the only safe
//! reading of a damaged rollback floor.
//!
//! On the data disk (an ext4 filesystem, [`read_in`] and [`raise_in`] on its mounted root) the
//! file is replaced atomically: the new text goes to a temporary file that is synced, renamed
//! over the old one, and the folder synced; symbolic links are never followed. [`raise_in`]
//! reads the file again first and never writes a lower version.
//!
//! Written once here because two programs write it: stage 0 (`boot::state`, the stick's copy and
//! the data disk's) and the node's `init`, which raises the data disk's floor once its release
//! reached `nullos: ready` ([`crate::boot_state`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::data_disk::FsUuid;

/// The state file's name on the release partition.
pub const STATE_FILE: &str = "nullos-state";
/// Largest state file read.
pub const MAX_STATE_BYTES: u64 = 4096;

const KEY: &str = "highest_version";
/// The key of the pinned data disk's UUID (the stick's file only).
const DATA_DISK_KEY: &str = "data_disk";

/// What the stick's state file holds: the floor and the pinned data disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickState {
    /// The highest version accepted on this machine.
    pub highest: u64,
    /// The machine's data disk, pinned by its ext4 UUID.
    pub data_disk: Option<FsUuid>,
}

/// Reads the state file's text: the highest version accepted.
pub fn parse(text: &str) -> Result<u64, String> {
    parse_stick(text).map(|state| state.highest)
}

/// Reads the state file's text with the pinned data disk, if it names one.
pub fn parse_stick(text: &str) -> Result<StickState, String> {
    let mut found = None;
    let mut data_disk = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| *k == KEY || *k == DATA_DISK_KEY)
            .ok_or_else(|| format!("unexpected line '{line}' in {STATE_FILE}"))?;
        if key == DATA_DISK_KEY {
            if data_disk.is_some() {
                return Err(format!("{DATA_DISK_KEY} appears twice in {STATE_FILE}"));
            }
            data_disk =
                Some(FsUuid::parse(value).ok_or_else(|| {
                    format!("{DATA_DISK_KEY} '{value}' is not a filesystem UUID")
                })?);
            continue;
        }
        if found.is_some() {
            return Err(format!("{KEY} appears twice in {STATE_FILE}"));
        }
        found = Some(
            value
                .parse::<u64>()
                .map_err(|_| format!("{KEY} '{value}' is not a version number"))?,
        );
    }
    let highest = found.ok_or_else(|| format!("{STATE_FILE} has no {KEY}"))?;
    Ok(StickState { highest, data_disk })
}

/// The stick's state file's text.
pub fn format_stick(state: &StickState) -> String {
    match state.data_disk {
        None => format(state.highest),
        Some(uuid) => format!(
            "{}# The machine's data disk (ext4 UUID): no other disk is taken as the data disk.\n\
             {DATA_DISK_KEY} = {uuid}\n",
            format(state.highest)
        ),
    }
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

/// The bounded text of the regular file `path`, never through a symbolic link; `None` when it
/// does not exist. Longer than `max` bytes, not a regular file or not UTF-8 are [`StateError::Damaged`].
pub fn read_text_nofollow(path: &Path, max: u64) -> Result<Option<String>, StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if !file.metadata().map_err(io)?.is_file() {
        return Err(damaged(path, "not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(damaged(path, format!("longer than {max} bytes")));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| damaged(path, "not UTF-8 text".into()))
}

/// Replaces `dir/name` with `bytes` atomically: written to `dir/name.new` (a leftover removed,
/// never followed), synced, renamed over `name`, and the folder synced.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let temp = dir.join(format!("{name}.new"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io { path, source }
    };
    // A leftover of an interrupted write: never followed, replaced.
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&temp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&temp)
        .map_err(io(&temp))?;
    file.write_all(bytes).map_err(io(&temp))?;
    file.sync_all().map_err(io(&temp))?;
    drop(file);
    let path = dir.join(name);
    std::fs::rename(&temp, &path).map_err(io(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// Why the state file in a folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Opening, reading, writing, syncing or renaming failed.
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is there but is not a state file.
    #[error("{}: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The highest version recorded in `dir`'s state file; 0 without one.
pub fn read_in(dir: &Path) -> Result<u64, StateError> {
    let path = dir.join(STATE_FILE);
    match read_text_nofollow(&path, MAX_STATE_BYTES)? {
        None => Ok(0),
        Some(text) => parse(&text).map_err(|reason| damaged(&path, reason)),
    }
}

fn damaged(path: &Path, reason: String) -> StateError {
    StateError::Damaged {
        path: path.to_owned(),
        reason,
    }
}

/// Raises the floor recorded in `dir` to `accepted`, atomically, if it is higher than what the
/// file says now. Returns the new floor if it was written.
pub fn raise_in(dir: &Path, accepted: u64) -> Result<Option<u64>, StateError> {
    let Some(raised) = raised(read_in(dir)?, accepted) else {
        return Ok(None);
    };
    write_atomic(dir, STATE_FILE, format(raised).as_bytes())?;
    Ok(Some(raised))
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
    fn the_data_disk_file_is_replaced_atomically_and_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_in(dir.path()).unwrap(), 0, "no file: a fresh disk");
        assert_eq!(raise_in(dir.path(), 3).unwrap(), Some(3));
        assert_eq!(raise_in(dir.path(), 2).unwrap(), None, "never lowered");
        assert_eq!(raise_in(dir.path(), 3).unwrap(), None);
        assert_eq!(read_in(dir.path()).unwrap(), 3);
        // An interrupted earlier write left its temporary file: replaced, not in the way.
        std::fs::write(dir.path().join("nullos-state.new"), "junk").unwrap();
        assert_eq!(raise_in(dir.path(), 4).unwrap(), Some(4));
        assert!(!dir.path().join("nullos-state.new").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap(),
            format(4)
        );
    }

    #[test]
    fn a_damaged_or_planted_data_disk_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "highest_version = x\n").unwrap();
        let e = read_in(dir.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("nullos-state: highest_version 'x' is not a version number"),
            "{e}"
        );
        assert!(
            raise_in(dir.path(), 9).is_err(),
            "a damaged floor is not overwritten"
        );
        std::fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, format(1)).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(STATE_FILE)).unwrap();
        assert!(read_in(dir.path()).is_err(), "a symlink is not followed");
    }

    #[test]
    fn the_stick_pins_the_data_disk_beside_its_floor() {
        let uuid = FsUuid::parse("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9").unwrap();
        let pinned = StickState {
            highest: 4,
            data_disk: Some(uuid),
        };
        assert_eq!(parse_stick(&format_stick(&pinned)), Ok(pinned));
        assert_eq!(parse(&format_stick(&pinned)), Ok(4));
        let unpinned = StickState {
            highest: 2,
            data_disk: None,
        };
        assert_eq!(format_stick(&unpinned), format(2));
        assert_eq!(parse_stick(&format(2)), Ok(unpinned));
        assert!(parse_stick("highest_version = 1\ndata_disk = vdb").is_err());
        assert!(parse_stick("data_disk = 0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9").is_err());
        let twice = "highest_version = 1\ndata_disk = 0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\n\
                     data_disk = 0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        assert!(parse_stick(twice).is_err());
    }

    #[test]
    fn the_floor_only_rises() {
        assert_eq!(raised(3, 4), Some(4));
        assert_eq!(raised(3, 3), None);
        assert_eq!(raised(3, 2), None);
    }
}

//! What the node keeps in its state folder between boots (beside its key): the last notary
//! checkpoint it verified, so a notary that rewrote its log is caught after a reboot too, and
//! the high-water mark of the sequence numbers it signs with, so every registration, lease and
//! report stays newer than the last one the notary holds.
//!
//! Files are small text, replaced whole (written to `.partial`, synced, renamed).

use std::io::Write;
use std::path::{Path, PathBuf};

use tlog::{Checkpoint, NoteVerifier};

/// The last verified checkpoint, its signed note as received.
pub const CHECKPOINT_FILE: &str = "notary.checkpoint";
/// The sequence high-water mark.
pub const SEQUENCE_FILE: &str = "sequence";
/// Sequence numbers reserved per write of [`SEQUENCE_FILE`].
const RESERVE: u64 = 1000;
/// The largest state file read.
const MAX_FILE: u64 = 64 * 1024;

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something else than what the node wrote.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The folder (made if missing).
    pub fn new(dir: &Path) -> Result<StateDir, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn read(&self, name: &str) -> Result<Option<String>, StateError> {
        use std::io::Read;
        let path = self.dir.join(name);
        match std::fs::File::open(&path) {
            Ok(file) => {
                let mut text = String::new();
                file.take(MAX_FILE)
                    .read_to_string(&mut text)
                    .map_err(|source| StateError::Io { path, source })?;
                Ok(Some(text))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    fn write(&self, name: &str, text: &str) -> Result<(), StateError> {
        let path = self.dir.join(name);
        let partial = self.dir.join(format!("{name}.partial"));
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::create(&partial).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&partial, &path).map_err(io)
    }

    /// The kept checkpoint, verified again against the pinned key (a file changed on the disk
    /// is refused, not believed).
    pub fn checkpoint(
        &self,
        verifier: &NoteVerifier,
    ) -> Result<Option<(Checkpoint, String)>, StateError> {
        let Some(note) = self.read(CHECKPOINT_FILE)? else {
            return Ok(None);
        };
        let checkpoint =
            Checkpoint::open(note.as_bytes(), verifier).map_err(|e| StateError::Damaged {
                path: self.dir.join(CHECKPOINT_FILE),
                reason: e.to_string(),
            })?;
        Ok(Some((checkpoint, note)))
    }

    /// Keeps a verified checkpoint's note.
    pub fn keep_checkpoint(&self, note: &str) -> Result<(), StateError> {
        self.write(CHECKPOINT_FILE, note)
    }
}

/// Hands out growing sequence numbers that survive reboots: numbers are reserved in blocks, and
/// a block is written down before any number of it is used.
#[derive(Debug)]
pub struct Sequencer {
    state: Option<StateDir>,
    next: u64,
    reserved_to: u64,
}

impl Sequencer {
    /// Continues after the high-water mark in `state`, and after `floor` (e.g. the Unix time,
    /// so a node whose state was lost still writes newer documents than before).
    pub fn open(state: Option<StateDir>, floor: u64) -> Result<Sequencer, StateError> {
        let kept = match &state {
            Some(s) => match s.read(SEQUENCE_FILE)? {
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .map_err(|e| StateError::Damaged {
                        path: s.dir.join(SEQUENCE_FILE),
                        reason: e.to_string(),
                    })?,
                None => 0,
            },
            None => 0,
        };
        let start = kept.max(floor).saturating_add(1);
        Ok(Sequencer {
            state,
            next: start,
            reserved_to: start.saturating_sub(1),
        })
    }

    /// The next number.
    pub fn next_sequence(&mut self) -> Result<u64, StateError> {
        if self.next > self.reserved_to {
            let to = self.next.saturating_add(RESERVE);
            if let Some(state) = &self.state {
                state.write(SEQUENCE_FILE, &format!("{to}\n"))?;
            }
            self.reserved_to = to;
        }
        let n = self.next;
        self.next = self.next.saturating_add(1);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_grow_across_reopens_and_past_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path()).unwrap();
        let mut s = Sequencer::open(Some(state.clone()), 0).unwrap();
        let a = s.next_sequence().unwrap();
        let b = s.next_sequence().unwrap();
        assert!(b > a && a >= 1);
        let mut s = Sequencer::open(Some(state.clone()), 0).unwrap();
        assert!(s.next_sequence().unwrap() > b);
        let mut s = Sequencer::open(Some(state.clone()), 1_000_000).unwrap();
        assert!(s.next_sequence().unwrap() > 1_000_000);
        std::fs::write(dir.path().join(SEQUENCE_FILE), "x").unwrap();
        assert!(matches!(
            Sequencer::open(Some(state), 0),
            Err(StateError::Damaged { .. })
        ));
        let mut ephemeral = Sequencer::open(None, 5).unwrap();
        assert_eq!(ephemeral.next_sequence().unwrap(), 6);
    }
}

//! C2SP tlog checkpoints (`c2sp.org/tlog-checkpoint`): the signed tree head of a log.
//!
//! ```text
//! <origin>                 the log's name, also the key name of its signature
//! <size>                   decimal, no leading zeros
//! <root>                   base64 of the RFC 6962 root hash of the first <size> entries
//! [<extension line>...]    optional, non-empty, not interpreted here
//! ```
//!
//! Signed as a note (see [`crate::note`]). [`Checkpoint::open`] checks the signature against
//! the log's key, that the origin is the key's name, and the body's shape.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use thiserror::Error;

use crate::hash::Hash;
use crate::note::{open_note, NoteError, NoteSigner, NoteVerifier};
use crate::proof::{verify_consistency, ProofError};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// The note around it did not open.
    #[error("checkpoint note did not verify")]
    Note(#[source] NoteError),
    /// The body does not have the checkpoint shape.
    #[error("checkpoint is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The checkpoint names another log than the key it is checked against.
    #[error("checkpoint is for log '{found}', expected '{expected}'")]
    WrongOrigin {
        /// Origin in the checkpoint.
        found: String,
        /// The key's name.
        expected: String,
    },
    /// Two checkpoints of one log are not consistent (the log was rewritten), or the proof is
    /// bad.
    #[error("checkpoint of size {new} is not consistent with the kept one of size {old}")]
    Inconsistent {
        /// Size of the older checkpoint.
        old: u64,
        /// Size of the newer checkpoint.
        new: u64,
        /// Why the consistency proof failed.
        #[source]
        source: ProofError,
    },
    /// The newer checkpoint is smaller than the kept one: the log went back.
    #[error("checkpoint of size {new} is older than the kept one of size {old}")]
    Rollback {
        /// Size of the kept checkpoint.
        old: u64,
        /// Size of the offered checkpoint.
        new: u64,
    },
}

fn malformed(reason: &'static str) -> CheckpointError {
    CheckpointError::Malformed { reason }
}

/// A tree head: which log, how many entries, and their root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 6962 root of those entries.
    pub root: Hash,
    /// Extension lines, kept as read (none are written by the notary).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text (each line ends in a newline).
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Reads the note text of a checkpoint (no signatures).
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(malformed("does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(malformed("origin line is empty"));
        }
        let size = lines.next().ok_or(malformed("no size line"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(malformed(
                "size is not a decimal number without leading zeros",
            ));
        }
        let size: u64 = size.parse().map_err(|_| malformed("size is too large"))?;
        let root = lines.next().ok_or(malformed("no root hash line"))?;
        let root = Hash::from_base64(root)
            .map_err(|_| malformed("root hash is not base64 of 32 bytes"))?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(malformed("extension line is empty"));
            }
            extensions.push(line.to_string());
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// The signed note. The signer's key name must be the origin.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        if signer.name() != self.origin {
            return Err(CheckpointError::WrongOrigin {
                found: self.origin.clone(),
                expected: signer.name().to_string(),
            });
        }
        signer.sign(&self.to_text()).map_err(CheckpointError::Note)
    }

    /// Opens a signed checkpoint note from the log whose key is `log` (its name is the origin).
    pub fn open(note: &[u8], log: &NoteVerifier) -> Result<Checkpoint, CheckpointError> {
        let text = open_note(note, core::slice::from_ref(log)).map_err(CheckpointError::Note)?;
        let checkpoint = Checkpoint::parse(text)?;
        if checkpoint.origin != log.name() {
            return Err(CheckpointError::WrongOrigin {
                found: checkpoint.origin,
                expected: log.name().to_string(),
            });
        }
        Ok(checkpoint)
    }

    /// Checks that `self` (newer) extends `kept` (older) of the same log, with the consistency
    /// proof from `kept.size` to `self.size`. This is the check that makes every client a
    /// witness: a log that rewrote anything a client has seen fails it.
    pub fn check_extends(&self, kept: &Checkpoint, proof: &[Hash]) -> Result<(), CheckpointError> {
        if self.origin != kept.origin {
            return Err(CheckpointError::WrongOrigin {
                found: self.origin.clone(),
                expected: kept.origin.clone(),
            });
        }
        if self.size < kept.size {
            return Err(CheckpointError::Rollback {
                old: kept.size,
                new: self.size,
            });
        }
        verify_consistency(kept.size, self.size, &kept.root, &self.root, proof).map_err(|source| {
            CheckpointError::Inconsistent {
                old: kept.size,
                new: self.size,
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::MerkleTree;

    fn signer() -> NoteSigner {
        NoteSigner::new("example.org/log", SigningKey::from_bytes(&[5; 32])).unwrap()
    }

    #[test]
    fn signed_checkpoint_round_trips() {
        let c = Checkpoint::new("example.org/log", 7, leaf_hash(b"x"));
        let note = c.sign(&signer()).unwrap();
        assert!(note.starts_with("example.org/log\n7\n"));
        assert_eq!(
            Checkpoint::open(note.as_bytes(), &signer().verifier()),
            Ok(c)
        );
    }

    #[test]
    fn the_spec_example_body_parses() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let c = Checkpoint::parse(text).unwrap();
        assert_eq!(
            (c.origin.as_str(), c.size),
            ("example.com/behind-the-sofa", 20852163)
        );
        assert_eq!(c.to_text(), text);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let root = Hash::empty().to_base64();
        for bad in [
            String::new(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n99999999999999999999999\n{root}\n"),
            "o\n1\nAAAA\n".to_string(),
            format!("o\n1\n{root}"),
            format!("o\n1\n{root}\n\n"),
            "o\n1\n".to_string(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn another_logs_key_or_origin_is_refused() {
        let c = Checkpoint::new("other.org/log", 1, Hash::empty());
        assert!(matches!(
            c.sign(&signer()),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        // Signed by a key of the right name but another key: no known signature.
        let stranger =
            NoteSigner::new("example.org/log", SigningKey::from_bytes(&[6; 32])).unwrap();
        let note = Checkpoint::new("example.org/log", 1, Hash::empty())
            .sign(&stranger)
            .unwrap();
        assert!(matches!(
            Checkpoint::open(note.as_bytes(), &signer().verifier()),
            Err(CheckpointError::Note(NoteError::Unverified))
        ));
    }

    #[test]
    fn extension_is_checked_by_consistency() {
        let mut t = MerkleTree::new();
        for i in 0..10u8 {
            t.push(leaf_hash(&[i]));
        }
        let at = |n| Checkpoint::new("l", n, t.root(n).unwrap());
        let proof = t.consistency_proof(4, 10).unwrap();
        assert_eq!(at(10).check_extends(&at(4), &proof), Ok(()));
        assert!(matches!(
            at(4).check_extends(&at(10), &proof),
            Err(CheckpointError::Rollback { old: 10, new: 4 })
        ));
        let mut forked = at(10);
        forked.root = leaf_hash(b"fork");
        assert!(matches!(
            forked.check_extends(&at(4), &proof),
            Err(CheckpointError::Inconsistent { .. })
        ));
        assert_eq!(at(4).check_extends(&at(4), &[]), Ok(()));
    }
}

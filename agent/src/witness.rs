//! The agent as a witness of the notary's log: the notary's key is pinned, the last checkpoint
//! verified from it is kept, and a new one is accepted only with a consistency proof from the
//! kept one (`notary_client::Client::checkpoint_extending`). A notary that drops, reorders or
//! changes anything this agent has already seen cannot produce that proof, so it is caught.
//!
//! # State directory
//!
//! `--state DIR`, or `$XDG_DATA_HOME/nullos`, or `~/.local/share/nullos`:
//!
//! ```text
//! pins/<first 32 hex of BLAKE3(notary URL)>   "<url>\n<nullos-ed25519 key line>\n"
//! checkpoints/<notary key hex>.note           the last verified checkpoint (signed note)
//! ```
//!
//! The key is pinned on first use of `--notary-key` (or `NULLOS_NOTARY_KEY`) for a URL, once a
//! checkpoint verified under it (so a mistyped key is not pinned); later commands may leave the
//! flag off. A flag naming another key than the pin is refused: a
//! notary's key does not change, and if it really did the user removes the pin file. The
//! checkpoints are kept per notary key (not URL), so several URLs of one notary share them.

use std::io::Write;
use std::path::{Path, PathBuf};

use notary_client::{Client, ClientError};
use tlog::Checkpoint;
use trust::{Digest, PublicKey};

/// Why the witness refused, or could not keep its state.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// No state directory could be found.
    #[error("no state directory: pass --state DIR (or set XDG_DATA_HOME or HOME)")]
    NoStateDir,
    /// No key is pinned for this notary and none was given.
    #[error("no notary key is pinned for {url}: pass --notary-key (the key nullos-notary printed when it started) once")]
    NoKey {
        /// The notary's URL.
        url: String,
    },
    /// The given key is not the pinned one.
    #[error("{url} is pinned to notary key {pinned} in {pin}, but --notary-key says {given} (remove the pin file if the notary's key really changed)")]
    KeyMismatch {
        /// The notary's URL.
        url: String,
        /// The pinned key.
        pinned: String,
        /// The given key.
        given: String,
        /// The pin file.
        pin: PathBuf,
    },
    /// A state file is damaged.
    #[error("state file {path} is damaged: {reason} (remove it to start over)")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A state file could not be read or written.
    #[error("cannot use state file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The notary's checkpoint is not consistent with the kept one: the log was rewritten.
    #[error("notary {url} is refused: its checkpoint does not extend the checkpoint of size {kept_size} kept in {kept}: the log was rewritten or forked ({reason})")]
    Inconsistent {
        /// The notary's URL.
        url: String,
        /// The kept checkpoint's size.
        kept_size: u64,
        /// The file holding it.
        kept: PathBuf,
        /// The verifier's reason.
        reason: String,
    },
    /// The notary's checkpoint does not verify under the key (a wrong `--notary-key`, or not
    /// that notary).
    #[error("the checkpoint of {url} does not verify under notary key {key}: is --notary-key the key nullos-notary printed? ({reason})")]
    NotSigned {
        /// The notary's URL.
        url: String,
        /// The key.
        key: String,
        /// The verifier's reason.
        reason: String,
    },
    /// The notary could not be asked.
    #[error("cannot read the notary's checkpoint")]
    Client(#[source] ClientError),
}

impl WitnessError {
    /// Whether the notary was caught rewriting its log (a long-running agent stops on it; an
    /// unreachable notary it retries).
    pub fn is_rewrite(&self) -> bool {
        matches!(self, WitnessError::Inconsistent { .. })
    }

    /// Whether the fault is the user's input (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            WitnessError::NoKey { .. } | WitnessError::KeyMismatch { .. }
        )
    }
}

/// The state directory: `explicit`, or `$XDG_DATA_HOME/nullos`, or `$HOME/.local/share/nullos`.
pub fn state_dir(explicit: Option<&Path>) -> Result<PathBuf, WitnessError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return Ok(PathBuf::from(xdg).join("nullos"));
    }
    non_empty("HOME")
        .map(|home| PathBuf::from(home).join(".local/share/nullos"))
        .ok_or(WitnessError::NoStateDir)
}

/// One notary as this agent witnesses it.
#[derive(Debug)]
pub struct Witness {
    url: String,
    key: PublicKey,
    /// The pin file to write once a checkpoint verified under the key (first use).
    pin_pending: Option<PathBuf>,
    kept_path: PathBuf,
    kept: Option<Checkpoint>,
}

/// What [`Witness::observe`] saw.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The checkpoint now kept.
    pub checkpoint: Checkpoint,
    /// The size of the checkpoint kept before, if there was one.
    pub previous_size: Option<u64>,
}

impl Witness {
    /// Opens the witness state of the notary at `url` under `dir`, pinning `given` (or checking
    /// it against the pin).
    pub fn open(dir: &Path, url: &str, given: Option<PublicKey>) -> Result<Witness, WitnessError> {
        let pin = dir
            .join("pins")
            .join(&Digest::of(url.as_bytes()).to_hex()[..32]);
        let pinned = read_optional(&pin)?
            .map(|text| {
                let key_line = text.lines().nth(1).unwrap_or_default();
                PublicKey::from_text(key_line).map_err(|e| WitnessError::Damaged {
                    path: pin.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let mut pin_pending = None;
        let key = match (pinned, given) {
            (Some(p), Some(g)) if p != g => {
                return Err(WitnessError::KeyMismatch {
                    url: url.to_owned(),
                    pinned: p.to_string(),
                    given: g.to_string(),
                    pin,
                })
            }
            (Some(p), _) => p,
            (None, Some(g)) => {
                pin_pending = Some(pin.clone());
                g
            }
            (None, None) => {
                return Err(WitnessError::NoKey {
                    url: url.to_owned(),
                })
            }
        };
        let kept_path = dir
            .join("checkpoints")
            .join(format!("{}.note", hex::encode(key.as_bytes())));
        let verifier =
            tlog::notary_verifier(key.as_bytes()).map_err(|e| WitnessError::Damaged {
                path: pin.clone(),
                reason: e.to_string(),
            })?;
        let kept = read_optional(&kept_path)?
            .map(|note| {
                Checkpoint::open(note.as_bytes(), &verifier).map_err(|e| WitnessError::Damaged {
                    path: kept_path.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Witness {
            url: url.to_owned(),
            key,
            pin_pending,
            kept_path,
            kept,
        })
    }

    /// The pinned notary key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// A client of this notary, pinned to its key.
    pub fn client(&self) -> Result<Client, WitnessError> {
        Client::new(&self.url, &self.key).map_err(WitnessError::Client)
    }

    /// The checkpoint kept, if any.
    pub fn kept(&self) -> Option<&Checkpoint> {
        self.kept.as_ref()
    }

    /// The file the kept checkpoint lives in.
    pub fn kept_path(&self) -> &Path {
        &self.kept_path
    }

    /// Fetches the notary's latest checkpoint, accepts it only if it extends the kept one, and
    /// keeps it.
    pub fn observe(&mut self, client: &Client) -> Result<Observation, WitnessError> {
        let previous_size = self.kept.as_ref().map(|k| k.size);
        // The signature first (a key mismatch is its own line), then consistency with the
        // kept checkpoint (`Client::checkpoint_extending`'s steps, told apart).
        let (latest, note) = client.checkpoint().map_err(|e| match e {
            ClientError::Checkpoint(_) => WitnessError::NotSigned {
                url: self.url.clone(),
                key: self.key.to_string(),
                reason: chain(&e),
            },
            e => WitnessError::Client(e),
        })?;
        if let Some(kept) = &self.kept {
            let inconsistent = |reason: String| WitnessError::Inconsistent {
                url: self.url.clone(),
                kept_size: kept.size,
                kept: self.kept_path.clone(),
                reason,
            };
            let proof = if latest.size > kept.size && kept.size > 0 {
                client
                    .consistency_proof(kept.size, latest.size)
                    .map_err(|e| match e {
                        // A notary that will not prove what it claims (a 4xx) is refused; a
                        // failing one (5xx) is asked again later.
                        e @ ClientError::Refused { status, .. } if status < 500 => {
                            inconsistent(chain(&e))
                        }
                        e => WitnessError::Client(e),
                    })?
            } else {
                Vec::new()
            };
            latest
                .check_extends(kept, &proof)
                .map_err(|e| inconsistent(chain(&e)))?;
        }
        if let Some(pin) = self.pin_pending.take() {
            write_atomic(&pin, format!("{}\n{}\n", self.url, self.key).as_bytes())?;
        }
        if self.kept.as_ref().is_none_or(|k| latest.size > k.size) {
            // Another nullos process sharing the state may have kept a larger one meanwhile
            // (it was checked against the same kept checkpoint); keep the larger.
            if !self.kept_elsewhere_covers(latest.size) {
                write_atomic(&self.kept_path, note.as_bytes())?;
            }
            self.kept = Some(latest.clone());
        }
        Ok(Observation {
            checkpoint: self.kept.clone().unwrap_or(latest),
            previous_size,
        })
    }
}

impl Witness {
    fn kept_elsewhere_covers(&self, size: u64) -> bool {
        let Ok(Some(note)) = read_optional(&self.kept_path) else {
            return false;
        };
        tlog::notary_verifier(self.key.as_bytes())
            .ok()
            .and_then(|v| Checkpoint::open(note.as_bytes(), &v).ok())
            .is_some_and(|on_disk| on_disk.size > size)
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Largest state file read.
const MAX_STATE_FILE_BYTES: u64 = 64 * 1024;

fn read_optional(path: &Path) -> Result<Option<String>, WitnessError> {
    match crate::keys::read_small_text(path, MAX_STATE_FILE_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(WitnessError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `path` whole or not at all (a temporary file beside it, synced, then renamed).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WitnessError> {
    let io = |source| WitnessError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_key_is_pinned_only_once_a_checkpoint_verified_and_another_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://127.0.0.1:7878";
        assert!(matches!(
            Witness::open(dir.path(), url, None),
            Err(WitnessError::NoKey { .. })
        ));
        let a = trust::SecretKey::from_seed([1; 32]).public();
        let b = trust::SecretKey::from_seed([2; 32]).public();
        let w = Witness::open(dir.path(), url, Some(a)).unwrap();
        assert_eq!(*w.key(), a);
        // Nothing verified under it yet: not pinned.
        assert!(matches!(
            Witness::open(dir.path(), url, None),
            Err(WitnessError::NoKey { .. })
        ));
        // As `observe` writes it after a checkpoint verified.
        let pin = w.pin_pending.clone().unwrap();
        write_atomic(&pin, format!("{url}\n{a}\n").as_bytes()).unwrap();
        assert_eq!(*Witness::open(dir.path(), url, None).unwrap().key(), a);
        let err = Witness::open(dir.path(), url, Some(b)).unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("pinned"), "{err}");
        // Another URL is another pin.
        let other = Witness::open(dir.path(), "http://other:1", Some(b)).unwrap();
        assert_ne!(other.pin_pending, Some(pin));
    }

    #[test]
    fn a_damaged_kept_checkpoint_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = trust::SecretKey::from_seed([1; 32]).public();
        let w = Witness::open(dir.path(), "http://x:1", Some(a)).unwrap();
        std::fs::create_dir_all(w.kept_path().parent().unwrap()).unwrap();
        std::fs::write(w.kept_path(), "garbage\n").unwrap();
        let err = Witness::open(dir.path(), "http://x:1", Some(a)).unwrap_err();
        assert!(matches!(err, WitnessError::Damaged { .. }), "{err}");
    }
}

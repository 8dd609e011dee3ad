//! `trust`'s key files on disk, for the host-side programs: the one place that generates a key
//! pair, loads a secret key, a public key or a signer policy, and loads-or-creates a service's
//! own key. The agent (`nullos key new`), the image builder (`keygen`, `--key`, `--trust`) and
//! the notary (its checkpoint key) all go through here, so a key written by one is read the same
//! way by the others and the file rules below hold everywhere.
//!
//! Why a crate of its own rather than a `std` feature of `trust`: `trust` is `no_std` + `alloc`
//! with no I/O and no randomness of its own (stage 0 and the guests build it), and Cargo unifies
//! features across the packages of one build, so a `std` feature turned on by the host tools
//! would also be on in `trust` wherever it is built beside them. Here the file handling, the OS
//! random source and `std` stay out of `trust` entirely; this crate only calls its text formats.
//!
//! The rules:
//! - A secret key file is created with mode 0600 and `O_EXCL` (`create_new`), so neither an
//!   existing file nor a race overwrites a key; [`generate`] also refuses when the public file
//!   exists. The seed comes from the OS random source before any file is made.
//! - The public key file is one line, `nullos-ed25519 <64 hex>` and a newline, mode 0644.
//! - Reads are bounded: each file is read up to one byte over the cap of its format in `trust`
//!   (`trust::limits`), so a huge file is never read whole and an oversized one is refused by
//!   the parser, which names the limit.
//! - Every error names the file ([`KeyFileError`]); [`KeyFileError::is_bad_input`] tells a
//!   user's mistake (a missing, malformed or existing file) from a fault of the machine.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(missing_docs, clippy::unwrap_used))]

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use trust::limits::{MAX_KEY_TEXT_BYTES, MAX_POLICY_TEXT_BYTES};
use trust::{KeyError, PolicyTextError, PublicKey, SecretKey, SignerPolicy};

/// Why a key file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read {what} {path}")]
    Read {
        /// What the file should hold ("secret key file", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The folder of a new key could not be created.
    #[error("cannot create the folder {path}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing key.
    #[error("{0} already exists; refusing to overwrite a key (remove it first)")]
    Exists(PathBuf),
    /// The file is not a key of the expected kind.
    #[error("{path} is not a valid {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// The parser's reason.
        #[source]
        source: KeyError,
    },
    /// The file is not a valid signer policy.
    #[error("{path} is not a valid signer policy")]
    ParsePolicy {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: PolicyTextError,
    },
    /// The operating system's random source failed.
    #[error("no randomness for key generation: {0}")]
    Random(String),
}

impl KeyFileError {
    /// Whether the fault is in the user's input (a missing, unreadable, malformed or already
    /// existing file) rather than in the machine (a failed write, no randomness).
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            KeyFileError::CreateDir { .. } | KeyFileError::Write { .. } | KeyFileError::Random(_)
        )
    }
}

/// What [`load_secret`] and [`load_or_create_secret`] call the file in their errors.
const SECRET_KEY_FILE: &str = "secret key file";
/// What [`load_public`] calls the file in its errors.
const PUBLIC_KEY_FILE: &str = "public key file";
/// What [`load_signer_policy`] calls the file in its errors.
const TRUST_FILE: &str = "public key or signer policy";
/// The first word of a signer policy file (`trust::policy::POLICY_HEADER` without its version,
/// so a policy of another version reaches the policy parser and is refused by it by name).
const POLICY_TYPE_WORD: &str = "nullos-signer-policy";

/// `FILE` → `FILE.pub`: where the agent (and anything new) puts the public half of the secret
/// key file `secret`.
pub fn public_path_beside(secret: &Path) -> PathBuf {
    let mut name = OsString::from(secret.as_os_str());
    name.push(".pub");
    PathBuf::from(name)
}

/// Generates a key pair: the secret key file `secret` (mode 0600) and the public key file
/// `public` (one line, mode 0644), creating their folders if needed. Refuses with
/// [`KeyFileError::Exists`] if either file exists, before or during the call: nothing is
/// overwritten. Returns the public key.
pub fn generate(secret: &Path, public: &Path, comment: &str) -> Result<PublicKey, KeyFileError> {
    for path in [secret, public] {
        if path.exists() {
            return Err(KeyFileError::Exists(path.to_owned()));
        }
    }
    let key = SecretKey::from_seed(random_seed()?);
    let public_key = key.public();
    for path in [secret, public] {
        create_parent(path)?;
    }
    write_new(secret, 0o600, key.to_text(comment).as_bytes())?;
    write_new(public, 0o644, format!("{public_key}\n").as_bytes())?;
    Ok(public_key)
}

/// Loads the secret key file `path`, first creating it (mode 0600, with `comment`, and its
/// folder) if it does not exist. Returns the key and whether this call created it. An existing
/// file is never rewritten: a damaged one is an error, not a reason to make a new key.
pub fn load_or_create_secret(
    path: &Path,
    comment: &str,
) -> Result<(SecretKey, bool), KeyFileError> {
    let created = if path.exists() {
        false
    } else {
        let key = SecretKey::from_seed(random_seed()?);
        create_parent(path)?;
        match write_new(path, 0o600, key.to_text(comment).as_bytes()) {
            Ok(()) => true,
            // Another process made it meanwhile: load theirs.
            Err(KeyFileError::Exists(_)) => false,
            Err(e) => return Err(e),
        }
    };
    Ok((load_secret(path)?, created))
}

/// Loads the secret key file `path`.
pub fn load_secret(path: &Path) -> Result<SecretKey, KeyFileError> {
    load_key(path, SECRET_KEY_FILE, SecretKey::from_text)
}

/// Loads the public key file `path` (one line, `nullos-ed25519 <64 hex>`).
pub fn load_public(path: &Path) -> Result<PublicKey, KeyFileError> {
    load_key(path, PUBLIC_KEY_FILE, PublicKey::from_text)
}

/// Reads the key file `path` (bounded) and parses it with `parse`, naming the file as `what`.
fn load_key<K>(
    path: &Path,
    what: &'static str,
    parse: fn(&str) -> Result<K, KeyError>,
) -> Result<K, KeyFileError> {
    let text = read_capped(path, what, MAX_KEY_TEXT_BYTES)?;
    parse(&text).map_err(|source| KeyFileError::Parse {
        path: path.to_owned(),
        what,
        source,
    })
}

/// Loads a trust file: a signer policy file, or a single public key file (which means "this key
/// alone must sign"), told apart by the policy header on the first line that is not blank or a
/// comment.
pub fn load_signer_policy(path: &Path) -> Result<SignerPolicy, KeyFileError> {
    let text = read_capped(path, TRUST_FILE, MAX_POLICY_TEXT_BYTES)?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(|l| l.starts_with(POLICY_TYPE_WORD)) {
        SignerPolicy::from_text(&text).map_err(|source| KeyFileError::ParsePolicy {
            path: path.to_owned(),
            source,
        })
    } else {
        let key = PublicKey::from_text(&text).map_err(|source| KeyFileError::Parse {
            path: path.to_owned(),
            what: TRUST_FILE,
            source,
        })?;
        Ok(SignerPolicy::single(key))
    }
}

/// Reads at most `max` bytes of `path` as text (for small files whose size is not trusted).
pub fn read_small_text(path: &Path, max: u64) -> Result<String, std::io::Error> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Reads `path` up to one byte over `cap`, so the format's parser refuses an oversized file.
fn read_capped(path: &Path, what: &'static str, cap: usize) -> Result<String, KeyFileError> {
    let max = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    read_small_text(path, max).map_err(|source| KeyFileError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// 32 bytes from the operating system's random source.
fn random_seed() -> Result<[u8; 32], KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
    Ok(seed)
}

/// Creates the folder `path` goes in, if it names one.
fn create_parent(path: &Path) -> Result<(), KeyFileError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| KeyFileError::CreateDir {
            path: dir.to_owned(),
            source,
        }),
        None => Ok(()),
    }
}

/// Creates `path` with `mode` and writes `bytes`, synced; fails with [`KeyFileError::Exists`]
/// if it exists (so a race cannot overwrite a key either).
fn write_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), KeyFileError> {
    let err = |source: std::io::Error| {
        if source.kind() == ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_owned())
        } else {
            KeyFileError::Write {
                path: path.to_owned(),
                source,
            }
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests;

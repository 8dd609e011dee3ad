//! Key files on disk, in `trust`'s formats (the same kind `image-builder keygen` makes): the
//! secret key file (mode 0600, never overwritten) and `FILE.pub`, the one-line public key.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use trust::{PublicKey, SecretKey};

/// Largest key file read, in bytes (`trust`'s own cap is 4 KiB; this stops a huge file early).
const MAX_KEY_FILE_BYTES: u64 = 8 * 1024;

/// Why a key file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}")]
    Read {
        /// The file.
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
    #[error("{path} is not a {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// The parser's reason.
        #[source]
        source: trust::KeyError,
    },
    /// The operating system's random source failed.
    #[error("no randomness for key generation: {0}")]
    Random(String),
}

impl KeyFileError {
    /// Whether the fault is in the user's input (exit status 2): an existing output, a missing
    /// or malformed key file.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, KeyFileError::Write { .. } | KeyFileError::Random(_))
    }
}

/// Where the public half of the secret key file `secret` goes: `FILE` → `FILE.pub`.
pub fn public_path_for(secret: &Path) -> PathBuf {
    let mut name = OsString::from(secret.as_os_str());
    name.push(".pub");
    PathBuf::from(name)
}

/// Generates a key pair: `secret` (mode 0600, created, never overwritten) and `secret.pub`
/// (also never overwritten), creating their folder if needed. Returns the public key path and
/// the key.
pub fn generate(secret: &Path, comment: &str) -> Result<(PathBuf, PublicKey), KeyFileError> {
    let public_path = public_path_for(secret);
    for path in [secret, public_path.as_path()] {
        if path.exists() {
            return Err(KeyFileError::Exists(path.to_owned()));
        }
    }
    if let Some(dir) = secret.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyFileError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
    let key = SecretKey::from_seed(seed);
    let public = key.public();
    write_new(secret, 0o600, key.to_text(comment).as_bytes())?;
    write_new(&public_path, 0o644, format!("{public}\n").as_bytes())?;
    Ok((public_path, public))
}

/// Creates `path` with `mode`, failing if it exists (so a race cannot overwrite a key either).
fn write_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), KeyFileError> {
    let err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
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

/// Reads at most `max` bytes of `path` as text.
pub fn read_small_text(path: &Path, max: u64) -> Result<String, std::io::Error> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Loads a secret key file.
pub fn load_secret(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = read_small_text(path, MAX_KEY_FILE_BYTES).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    SecretKey::from_text(&text).map_err(|source| KeyFileError::Parse {
        path: path.to_owned(),
        what: "secret key file",
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generate_writes_a_private_secret_and_its_public_line_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("keys/alice.key");
        let (public_path, public) = generate(&secret, "alice").unwrap();
        assert_eq!(public_path, dir.path().join("keys/alice.key.pub"));
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_secret(&secret).unwrap().public(), public);
        let line = std::fs::read_to_string(&public_path).unwrap();
        assert_eq!(PublicKey::from_text(&line).unwrap(), public);

        let before = std::fs::read(&secret).unwrap();
        assert!(matches!(
            generate(&secret, "again"),
            Err(KeyFileError::Exists(_))
        ));
        assert_eq!(std::fs::read(&secret).unwrap(), before);
    }

    #[test]
    fn generate_refuses_when_only_the_public_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("k");
        std::fs::write(dir.path().join("k.pub"), "x").unwrap();
        assert!(matches!(
            generate(&secret, ""),
            Err(KeyFileError::Exists(_))
        ));
        assert!(!secret.exists());
    }

    #[test]
    fn load_secret_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key\n").unwrap();
        let err = load_secret(&path).unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("bad.key"), "{err}");
    }
}

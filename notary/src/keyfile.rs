//! The notary's signing key: `<data dir>/notary.key`, in `trust`'s secret key file format,
//! created with mode 0600 on first start.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use thiserror::Error;
use trust::limits::MAX_KEY_TEXT_BYTES;
use trust::{PublicKey, SecretKey};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "notary.key";

/// Why the key could not be loaded or created.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid secret key file.
    #[error("{} is not a NullOS secret key file", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: trust::KeyError,
    },
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

/// The loaded key.
#[derive(Debug)]
pub struct NotaryKey {
    /// Signs checkpoints.
    pub signing: SigningKey,
    /// Its public half, in `trust`'s form.
    pub public: PublicKey,
    /// Whether this start created it.
    pub created: bool,
}

/// Loads `<dir>/notary.key`, creating it (0600) if it does not exist.
pub fn load_or_create(dir: &Path) -> Result<NotaryKey, KeyFileError> {
    let path = dir.join(KEY_FILE);
    let io = |what, source| KeyFileError::Io {
        what,
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
    let created = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
            let text = SecretKey::from_seed(seed).to_text("nullos-notary checkpoint key");
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| io("cannot write", e))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io("cannot create", e)),
    };
    let mut text = String::new();
    fs::File::open(&path)
        .and_then(|f| {
            f.take(MAX_KEY_TEXT_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(|e| io("cannot read", e))?;
    let secret = SecretKey::from_text(&text).map_err(|source| KeyFileError::Parse {
        path: path.clone(),
        source,
    })?;
    // `trust` signs only documents; checkpoints are notes, signed here with the same seed.
    // The file was validated above (the seed line parses and matches the public line).
    let seed = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("seed "))
        .and_then(|hex| hex::decode(hex.trim()).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
    let Some(seed) = seed else {
        return Err(KeyFileError::Parse {
            path,
            source: trust::KeyError::SecretMissingField { field: "seed" },
        });
    };
    let signing = SigningKey::from_bytes(&seed);
    if signing.verifying_key().as_bytes() != secret.public().as_bytes() {
        return Err(KeyFileError::Parse {
            path,
            source: trust::KeyError::SecretMissingField { field: "seed" },
        });
    }
    Ok(NotaryKey {
        signing,
        public: secret.public(),
        created,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert!(first.created);
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(dir.path()).unwrap();
        assert!(!again.created);
        assert_eq!(again.public, first.public);
        assert_eq!(again.signing.verifying_key(), first.signing.verifying_key());
    }

    #[test]
    fn a_damaged_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(KEY_FILE),
            "nullos-ed25519-secret v1\nseed 00\n",
        )
        .unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyFileError::Parse { .. })
        ));
    }
}

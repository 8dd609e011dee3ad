//! The node's identity: an ed25519 key made on the first boot and kept in the node's state
//! folder (on the data disk), mode 0600, reused on every later boot. It never leaves the node
//! and is never logged; only its public half (the node id) is.
//!
//! Without a data disk the state folder is a tmpfs, so the key lives until power-off and the
//! node comes back as a new node ([`Persistence::Ephemeral`]); the caller says so on the
//! console.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use trust::{PublicKey, SecretKey};

/// The key file in the state folder.
pub const KEY_FILE: &str = "node.key";
/// The largest key file read (a secret key file is a few lines).
const MAX_KEY_FILE: u64 = 4096;

/// Why the identity could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a secret key file.
    #[error("{path} is not a secret key file")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: trust::KeyError,
    },
    /// The key file can be read by others than the node.
    #[error("{path} has mode {mode:o}; a node key must be 0600")]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No randomness for a new key.
    #[error("no randomness for a new node key: {0}")]
    Random(String),
}

/// Whether the key outlives this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// On the data disk: the same node after a reboot.
    Persistent,
    /// On tmpfs: a new node every boot.
    Ephemeral,
}

/// The node's key pair.
pub struct Identity {
    secret: SecretKey,
    /// The node id.
    pub public: PublicKey,
    /// Whether the key was made now (first boot) or read.
    pub created: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret half.
        f.debug_struct("Identity")
            .field("public", &self.public)
            .field("created", &self.created)
            .finish()
    }
}

impl Identity {
    /// Reads the key in `dir`, or makes one there (0600, written then renamed into place).
    /// A key file that others could read is refused rather than used.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => {
                let mode = file.metadata().map_err(io)?.mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(IdentityError::Mode { path, mode });
                }
                let mut text = String::new();
                file.take(MAX_KEY_FILE)
                    .read_to_string(&mut text)
                    .map_err(io)?;
                let secret = SecretKey::from_text(&text)
                    .map_err(|source| IdentityError::Parse { path, source })?;
                Ok(Identity::from_secret(secret, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed)
                    .map_err(|e| IdentityError::Random(e.to_string()))?;
                let secret = SecretKey::from_seed(seed);
                std::fs::create_dir_all(dir).map_err(io)?;
                let partial = dir.join(format!("{KEY_FILE}.partial"));
                let _ = std::fs::remove_file(&partial);
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&partial)
                    .map_err(io)?;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
                file.write_all(secret.to_text("nullos node key").as_bytes())
                    .map_err(io)?;
                file.sync_all().map_err(io)?;
                std::fs::rename(&partial, &path).map_err(io)?;
                Ok(Identity::from_secret(secret, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The identity of a known key (tests, simulated nodes).
    pub fn from_secret(secret: SecretKey, created: bool) -> Identity {
        let public = secret.public();
        Identity {
            secret,
            public,
            created,
        }
    }

    /// The secret key, for signing the node's documents.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The node id as it appears on the console and in index keys: 64 hex digits.
    pub fn id_hex(&self) -> String {
        hex::encode(self.public.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        assert!(first.created);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert!(!again.created);
        assert_eq!(again.public, first.public);
        assert!(!format!("{again:?}").contains("seed"));
    }

    #[test]
    fn a_readable_or_garbled_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(err, IdentityError::Mode { mode: 0o644, .. }),
            "{err}"
        );
        std::fs::write(&path, "garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()).unwrap_err(),
            IdentityError::Parse { .. }
        ));
    }
}

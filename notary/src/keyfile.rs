//! The notary's signing key: `<data dir>/notary.key`, in `trust`'s secret key file format,
//! created with mode 0600 on first start (by the shared `keyfile` crate, never overwritten).

use std::path::Path;

use ed25519_dalek::SigningKey;
pub use keyfile::KeyFileError;
use trust::PublicKey;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "notary.key";

/// The comment written into a new key file.
const KEY_COMMENT: &str = "nullos-notary checkpoint key";

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
    let (secret, created) = keyfile::load_or_create_secret(&path, KEY_COMMENT)?;
    // `trust` signs only documents; checkpoints are notes, signed here with the same seed, taken
    // from the key's file text as `trust` writes it (the loaded file's seed matched its public).
    let seed = secret
        .to_text("")
        .lines()
        .find_map(|l| l.strip_prefix("seed "))
        .and_then(|hex| hex::decode(hex.trim()).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
    let signing = seed.map(|seed| SigningKey::from_bytes(&seed));
    let Some(signing) =
        signing.filter(|s| s.verifying_key().as_bytes() == secret.public().as_bytes())
    else {
        return Err(KeyFileError::Parse {
            path,
            what: "secret key file",
            source: trust::KeyError::SecretMissingField { field: "seed" },
        });
    };
    Ok(NotaryKey {
        signing,
        public: secret.public(),
        created,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
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

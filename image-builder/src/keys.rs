//! Key files and trust files on disk (the formats themselves live in `trust`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use trust::{PublicKey, SecretKey, SignerPolicy};

/// Why a key or trust file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read {path}")]
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
    /// Refusing to overwrite an existing secret key.
    #[error("{0} already exists; refusing to overwrite a key (remove it first)")]
    Exists(PathBuf),
    /// The file's contents are not a key of the expected kind.
    #[error("{path} is not a valid {what}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should have been.
        what: &'static str,
        /// The parser's one-line message.
        message: String,
    },
    /// The operating system's random source failed.
    #[error("no randomness for key generation: {0}")]
    Random(String),
}

/// Where the public half of a secret key file goes: `dev.key` → `dev.pub`.
pub fn public_path_for(secret: &Path) -> PathBuf {
    secret.with_extension("pub")
}

/// Generates a key pair: the secret key file (mode 0600, never overwritten) and its public key
/// file beside it. Returns the public key path and the key.
pub fn generate(secret_path: &Path, comment: &str) -> Result<(PathBuf, PublicKey), KeyFileError> {
    if secret_path.exists() {
        return Err(KeyFileError::Exists(secret_path.to_owned()));
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
    let secret = SecretKey::from_seed(seed);
    let public = secret.public();
    if let Some(dir) = secret_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyFileError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    let write_err = |source| KeyFileError::Write {
        path: secret_path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secret_path)
        .map_err(write_err)?;
    file.write_all(secret.to_text(comment).as_bytes())
        .map_err(write_err)?;
    let public_path = public_path_for(secret_path);
    std::fs::write(&public_path, format!("{}\n", public.to_text())).map_err(|source| {
        KeyFileError::Write {
            path: public_path.clone(),
            source,
        }
    })?;
    Ok((public_path, public))
}

fn read_text(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads a secret key file.
pub fn load_secret(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = read_text(path)?;
    SecretKey::from_text(&text).map_err(|e| KeyFileError::Parse {
        path: path.to_owned(),
        what: "secret key file",
        message: e.to_string(),
    })
}

/// Loads what `--trust` names: a signer policy file, or a single public key (which means "this
/// key alone must sign").
pub fn load_trust(path: &Path) -> Result<SignerPolicy, KeyFileError> {
    let text = read_text(path)?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(|l| l.starts_with("nullos-signer-policy")) {
        SignerPolicy::from_text(&text).map_err(|e| KeyFileError::Parse {
            path: path.to_owned(),
            what: "signer policy",
            message: e.to_string(),
        })
    } else {
        let key = PublicKey::from_text(text.trim()).map_err(|e| KeyFileError::Parse {
            path: path.to_owned(),
            what: "public key or signer policy",
            message: e.to_string(),
        })?;
        Ok(SignerPolicy::single(key))
    }
}

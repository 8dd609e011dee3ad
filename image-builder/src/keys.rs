//! Key files and trust files on disk (the formats live in `trust`, the file handling in the
//! shared `keyfile` crate); this module names the image builder's conventions.

use std::path::{Path, PathBuf};

pub use keyfile::{load_secret, load_signer_policy as load_trust, KeyFileError};
use trust::PublicKey;

/// Where the public half of a secret key file goes: `dev.key` → `dev.pub` (the names the
/// Makefile, the configs and the docs use; the agent's `nullos key new` writes `FILE.pub`).
pub fn public_path_for(secret: &Path) -> PathBuf {
    secret.with_extension("pub")
}

/// Generates a key pair: the secret key file (mode 0600) and its public key file beside it,
/// neither ever overwritten. Returns the public key path and the key.
pub fn generate(secret_path: &Path, comment: &str) -> Result<(PathBuf, PublicKey), KeyFileError> {
    let public_path = public_path_for(secret_path);
    let public = keyfile::generate(secret_path, &public_path, comment)?;
    Ok((public_path, public))
}

//! Key files on disk, in `trust`'s formats (the same kind `image-builder keygen` makes): the
//! secret key file (mode 0600, never overwritten) and `FILE.pub`, the one-line public key. The
//! file handling is the shared `keyfile` crate's; this module names the agent's conventions.

use std::path::{Path, PathBuf};

pub use keyfile::{
    load_secret, public_path_beside as public_path_for, read_small_text, KeyFileError,
};
use trust::PublicKey;

/// Generates a key pair: `secret` (mode 0600) and `secret.pub`, neither ever overwritten,
/// creating their folder if needed. Returns the public key path and the key.
pub fn generate(secret: &Path, comment: &str) -> Result<(PathBuf, PublicKey), KeyFileError> {
    let public_path = public_path_for(secret);
    let public = keyfile::generate(secret, &public_path, comment)?;
    Ok((public_path, public))
}

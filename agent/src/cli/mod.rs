//! The online commands (they talk to the notary): thin I/O around the library's pure decisions
//! ([`agent::placement`], [`agent::ledger`]) and its witness ([`agent::witness`]).

pub mod args;
pub mod deploy;
pub mod grid;
pub mod heal;
pub mod offline;
pub mod online;

use std::path::Path;

use agent::contract_file::{ContractFile, MAX_FILE_BYTES};
use anyhow::{Context, Result};
use trust::{NamedSigner, PublicKey, SecretKey};

/// The user's input is at fault (exit status 2); the line says how.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The operation failed (exit status 1); the line says why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

/// The signed document of `body` by `key`.
pub fn sign<B: NamedSigner>(body: &B, key: &SecretKey) -> Result<Vec<u8>> {
    let mut document = body.to_document();
    document
        .sign(key)
        .with_context(|| format!("cannot sign the {}", B::KIND.name()))?;
    Ok(document.encode())
}

/// A public key given on the command line: `nullos-ed25519 <hex>`, 64 hex characters, or a
/// `.pub` file.
pub fn parse_key_arg(text: &str) -> Result<PublicKey> {
    if let Ok(k) = PublicKey::from_text(text) {
        return Ok(k);
    }
    if let Some(k) = hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| PublicKey::from_bytes(&b).ok())
    {
        return Ok(k);
    }
    let path = Path::new(text);
    if path.is_file() {
        // A `KeyFileError` names the file and the problem; it counts as bad input.
        return Ok(keyfile::load_public(path)?);
    }
    Err(BadInput(format!(
        "'{text}' is not a public key (nullos-ed25519 <64 hex>, 64 hex, or a .pub file)"
    ))
    .into())
}

/// The error chain on one line; a cause already spelled out by the error above it (as the
/// HTTP client's errors repeat theirs) is not repeated.
pub fn chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

/// Reads and verifies a contract file.
pub fn read_contract(path: &Path) -> Result<ContractFile> {
    let bytes = offline::read_bounded(path, MAX_FILE_BYTES as u64 + 1)?;
    ContractFile::decode(&bytes)
        .with_context(|| format!("contract file {} is refused", path.display()))
}

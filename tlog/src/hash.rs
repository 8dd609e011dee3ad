//! RFC 6962 tree hashing: `SHA-256(0x00 ‖ leaf)` for leaves, `SHA-256(0x01 ‖ left ‖ right)` for
//! interior nodes, `SHA-256("")` for the empty tree.

use alloc::string::String;
use core::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// A SHA-256 tree hash (a leaf hash, a node hash or a root).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

/// Why a hash could not be read from text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    /// Not standard base64 (with padding) of exactly 32 bytes.
    #[error("tree hash must be base64 of 32 bytes")]
    Base64,
    /// Not 64 hex characters.
    #[error("tree hash must be 64 hex characters")]
    Hex,
}

impl Hash {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// The root of the empty tree, `SHA-256("")`.
    pub fn empty() -> Hash {
        Hash(Sha256::digest([]).into())
    }

    /// Standard base64 with padding, as checkpoints write it (44 characters).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads standard base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Hash, HashError> {
        // 32 bytes are 44 characters; anything longer is refused before decoding.
        if text.len() != 44 {
            return Err(HashError::Base64);
        }
        let mut out = [0u8; 32];
        match STANDARD.decode_slice(text, &mut out) {
            Ok(32) => Ok(Hash(out)),
            _ => Err(HashError::Base64),
        }
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Reads 64 hex characters (either case).
    pub fn from_hex(text: &str) -> Result<Hash, HashError> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(HashError::Hex);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = nibble(pair[0]).ok_or(HashError::Hex)?;
            let lo = nibble(pair[1]).ok_or(HashError::Hex)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Hash(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The RFC 6962 hash of a log entry: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The RFC 6962 hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tree_is_sha256_of_nothing() {
        assert_eq!(
            Hash::empty().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn text_forms_round_trip_and_refuse_junk() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Ok(h));
        assert!(Hash::from_base64("AAAA").is_err());
        assert!(Hash::from_base64(&"!".repeat(44)).is_err());
        assert!(Hash::from_hex(&"g".repeat(64)).is_err());
        assert!(Hash::from_hex("00").is_err());
    }
}

//! BLAKE3-256 digests: the one content hash used everywhere in NullOS.

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use thiserror::Error;

use crate::hexfmt::{self, HexError};

/// A BLAKE3-256 digest. Displayed (and parsed) as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

/// Why a digest could not be parsed from text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The text is not 64 hex characters.
    #[error("invalid BLAKE3 digest")]
    Hex(#[source] HexError),
}

impl Digest {
    /// Length of a digest in bytes.
    pub const LEN: usize = 32;

    /// The BLAKE3-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hexfmt::encode(&self.0)
    }

    /// Parses 64 hex characters (either case; surrounding whitespace is not accepted).
    pub fn from_hex(text: &str) -> Result<Digest, ParseError> {
        hexfmt::decode::<32>(text)
            .map(Digest)
            .map_err(ParseError::Hex)
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::from_hex(s)
    }
}

/// Streaming BLAKE3-256, for inputs that arrive in pieces.
#[derive(Debug, Clone, Default)]
pub struct Hasher(blake3::Hasher);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher(blake3::Hasher::new())
    }

    /// Feeds more input.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed so far.
    pub fn finalize(self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// BLAKE3 of the empty input, from the BLAKE3 reference test vectors (test_vectors.json,
    /// input_len 0, first 32 bytes of "hash").
    const EMPTY: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn known_answer_empty() {
        assert_eq!(Digest::of(b"").to_hex(), EMPTY);
        assert_eq!(Hasher::new().finalize().to_string(), EMPTY);
    }

    #[test]
    fn known_answer_abc() {
        // BLAKE3("abc"), as printed by b3sum.
        assert_eq!(
            Digest::of(b"abc").to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn streaming_matches_one_shot() {
        let data: alloc::vec::Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut h = Hasher::new();
        for chunk in data.chunks(333) {
            h.update(chunk);
        }
        assert_eq!(h.finalize(), Digest::of(&data));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let d = Digest::of(b"nullos");
        assert_eq!(Digest::from_hex(&d.to_hex()), Ok(d));
        assert_eq!(d.to_hex().parse::<Digest>(), Ok(d));
        assert_eq!(Digest::from_hex(&d.to_hex().to_uppercase()), Ok(d));
        assert!(Digest::from_hex(&d.to_hex()[1..]).is_err());
        let bad = alloc::format!("x{}", &d.to_hex()[1..]);
        assert_eq!(
            Digest::from_hex(&bad),
            Err(ParseError::Hex(HexError::Digit { index: 0, ch: 'x' }))
        );
    }
}

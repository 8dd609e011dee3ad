//! Lowercase hex for fixed-size byte strings (digests, keys, seeds).
//!
//! Written here rather than taken from the `hex` crate: the workspace declares `hex` with its
//! default `std` feature, which this `no_std` crate cannot switch off per member, and all we need
//! is "encode to lowercase" and "decode exactly N bytes", about twenty lines.

use alloc::string::String;

use thiserror::Error;

/// Why a hex string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HexError {
    /// The string has the wrong number of characters for the expected byte count.
    #[error("expected {expected} hex characters, found {found}")]
    Length {
        /// Characters expected (twice the byte count).
        expected: usize,
        /// Characters found.
        found: usize,
    },
    /// A character is not a hex digit.
    #[error("character {index} ({ch:?}) is not a hex digit")]
    Digit {
        /// Zero-based character index.
        index: usize,
        /// The offending character.
        ch: char,
    },
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes exactly `N` bytes of hex (either case accepted).
pub fn decode<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let raw = text.as_bytes();
    if raw.len() != N * 2 {
        return Err(HexError::Length {
            expected: N * 2,
            found: text.chars().count(),
        });
    }
    let mut out = [0u8; N];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or_else(|| digit_error(text, 2 * i))?;
        let lo = nibble(pair[1]).ok_or_else(|| digit_error(text, 2 * i + 1))?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Builds the error for the byte at `byte_index`, reporting it as a character position.
fn digit_error(text: &str, byte_index: usize) -> HexError {
    // A non-ASCII byte may sit inside a multi-byte character: report that whole character.
    let (index, ch) = text
        .char_indices()
        .enumerate()
        .take_while(|(_, (start, _))| *start <= byte_index)
        .last()
        .map(|(n, (_, ch))| (n, ch))
        .unwrap_or((0, char::REPLACEMENT_CHARACTER));
    HexError::Digit { index, ch }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_case() {
        let bytes = [0x00, 0x01, 0xab, 0xff];
        assert_eq!(encode(&bytes), "0001abff");
        assert_eq!(decode::<4>("0001abff"), Ok(bytes));
        assert_eq!(decode::<4>("0001ABFF"), Ok(bytes));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            decode::<2>("abc"),
            Err(HexError::Length {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            decode::<2>("ab0g"),
            Err(HexError::Digit { index: 3, ch: 'g' })
        );
        // "é" is two bytes: four bytes in total, but not four hex characters.
        assert_eq!(
            decode::<2>("aé0"),
            Err(HexError::Digit { index: 1, ch: 'é' })
        );
        assert_eq!(
            decode::<2>("a\u{e9}0").map_err(|e| alloc::string::ToString::to_string(&e)),
            Err(alloc::string::String::from(
                "character 1 ('é') is not a hex digit"
            ))
        );
    }
}

//! ed25519 keys and their plain-text file formats.
//!
//! # Public key: one line
//!
//! ```text
//! nullos-ed25519 d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
//! ```
//!
//! The type word `nullos-ed25519`, one space, and the 32-byte ed25519 public key as 64 hex
//! characters (written lowercase; either case is read). Surrounding whitespace, such as a final
//! newline, is ignored when reading; anything else on the line is an error. This is what
//! [`PublicKey`]'s `Display` prints, so a key can be pasted into a policy file, a chat, or a
//! command line as it is. Keys that are not valid curve points, or are weak (small-order) points,
//! are refused at load time.
//!
//! # Secret key file
//!
//! ```text
//! nullos-ed25519-secret v1
//! comment release key on build-host-1
//! seed 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
//! public nullos-ed25519 d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
//! ```
//!
//! - line 1 is exactly `nullos-ed25519-secret v1`;
//! - then `field value` lines, each field at most once: `seed` (required: the 32-byte RFC 8032
//!   secret seed as 64 hex), `public` (required: the public key line above; it must match the key
//!   derived from the seed, which catches a corrupted or hand-edited file), `comment` (optional,
//!   free text to the end of the line, at most 256 bytes, no control characters);
//! - blank lines and lines starting with `#` are ignored; lines may end in `\n` or `\r\n`;
//! - the whole file is at most 4 KiB.
//!
//! The seed is the secret: whoever has it can sign. The binary that generates keys supplies the
//! 32 random seed bytes (from the OS RNG); this crate has no randomness of its own.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;
use core::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::hexfmt::{self, HexError};
use crate::limits::{MAX_KEY_COMMENT_BYTES, MAX_KEY_TEXT_BYTES};

/// The type word that starts a public key line.
pub const PUBLIC_KEY_PREFIX: &str = "nullos-ed25519";
/// The first line of a secret key file.
pub const SECRET_KEY_HEADER: &str = "nullos-ed25519-secret v1";

/// Hex characters of the key shown by [`PublicKey::short`].
const SHORT_HEX: usize = 12;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The text is larger than any key file.
    #[error("key text is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Text length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A public key line does not have the shape `nullos-ed25519 <64 hex>`.
    #[error("public key must be one line 'nullos-ed25519 <64 hex digits>', found {words} words")]
    PublicShape {
        /// Number of whitespace-separated words found.
        words: usize,
    },
    /// A public key line starts with another type word.
    #[error("public key type is '{found}', expected 'nullos-ed25519'")]
    PublicType {
        /// The type word found (cut to 32 characters).
        found: String,
    },
    /// The public key hex is not 64 hex characters.
    #[error("public key hex is invalid")]
    PublicHex(#[source] HexError),
    /// The 32 bytes are not an ed25519 curve point.
    #[error("public key is not a valid ed25519 point")]
    NotAPoint,
    /// The key is a small-order point: signatures under it prove nothing.
    #[error("public key is a weak (small-order) ed25519 point")]
    WeakKey,
    /// The secret key file does not start with the header line.
    #[error("secret key file must start with '{SECRET_KEY_HEADER}'")]
    SecretHeader,
    /// A secret key file line is not `field value`.
    #[error("secret key file line {line}: expected 'field value'")]
    SecretLine {
        /// One-based line number.
        line: usize,
    },
    /// A secret key file line has an unknown field name.
    #[error("secret key file line {line}: unknown field '{field}'")]
    SecretUnknownField {
        /// One-based line number.
        line: usize,
        /// The field name (cut to 32 characters).
        field: String,
    },
    /// A field appears twice.
    #[error("secret key file line {line}: field '{field}' appears twice")]
    SecretDuplicateField {
        /// One-based line number.
        line: usize,
        /// The repeated field.
        field: &'static str,
    },
    /// A required field is missing.
    #[error("secret key file has no '{field}' line")]
    SecretMissingField {
        /// The missing field.
        field: &'static str,
    },
    /// The seed is not 64 hex characters.
    #[error("secret key file line {line}: seed hex is invalid")]
    SeedHex {
        /// One-based line number.
        line: usize,
        /// What is wrong with the hex.
        #[source]
        source: HexError,
    },
    /// The `public` line does not parse.
    #[error("secret key file line {line}: public key is invalid")]
    SecretPublic {
        /// One-based line number.
        line: usize,
        /// Why the public key line was refused.
        #[source]
        source: Box<KeyError>,
    },
    /// The comment holds a control character (the writer never writes one; a reader that
    /// printed it could be sent terminal escapes).
    #[error("secret key file line {line}: comment holds a control character")]
    CommentControl {
        /// One-based line number.
        line: usize,
    },
    /// The comment is over its limit.
    #[error("secret key file line {line}: comment is {len} bytes, over the {max}-byte limit")]
    CommentTooLong {
        /// One-based line number.
        line: usize,
        /// Comment length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The `public` line is not the key derived from `seed`.
    #[error(
        "secret key file: public key {public} does not match the seed (which gives {derived})"
    )]
    PublicMismatch {
        /// The key in the file.
        public: PublicKey,
        /// The key derived from the seed.
        derived: PublicKey,
    },
}

/// An ed25519 public key (verifying key), printable as one line of text.
///
/// Holds the 32 compressed bytes, checked at construction to be a valid, non-weak point; the
/// curve point is recomputed when verifying, which keeps the type small and cheap to copy.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Reads a key from its 32 bytes, refusing invalid and weak (small-order) points.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::NotAPoint)?;
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        Ok(PublicKey(key.to_bytes()))
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The one-line text form, `nullos-ed25519 <64 hex>` (no newline).
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX} {}", hexfmt::encode(self.as_bytes()))
    }

    /// Reads the one-line text form; surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<PublicKey, KeyError> {
        if text.len() > MAX_KEY_TEXT_BYTES {
            return Err(KeyError::TooLarge {
                len: text.len(),
                max: MAX_KEY_TEXT_BYTES,
            });
        }
        let mut words = text.split_ascii_whitespace();
        let (Some(kind), Some(hex), None) = (words.next(), words.next(), words.next()) else {
            return Err(KeyError::PublicShape {
                words: text.split_ascii_whitespace().count(),
            });
        };
        if kind != PUBLIC_KEY_PREFIX {
            return Err(KeyError::PublicType { found: cut(kind) });
        }
        let bytes = hexfmt::decode::<32>(hex).map_err(KeyError::PublicHex)?;
        PublicKey::from_bytes(&bytes)
    }

    /// A short form for messages: `nullos-ed25519 d75a980182b1…`.
    pub fn short(&self) -> String {
        let hex = hexfmt::encode(self.as_bytes());
        format!("{PUBLIC_KEY_PREFIX} {}…", &hex[..SHORT_HEX])
    }

    /// The X25519 public key of the same point (the birational map to Montgomery form, as
    /// libsodium's `crypto_sign_ed25519_pk_to_curve25519` and age's ssh-ed25519 recipients do):
    /// what a tail is sealed to ([`crate::grid::sealed`]).
    pub(crate) fn to_x25519(self) -> [u8; 32] {
        // The bytes were checked to decompress when this key was built.
        match VerifyingKey::from_bytes(&self.0) {
            Ok(key) => key.to_montgomery().to_bytes(),
            Err(_) => [0; 32],
        }
    }

    /// Verifies `signature` over `message` with the strict rules (no malleable or small-order
    /// components), the only verification this crate performs.
    pub(crate) fn verify_strict(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        // The bytes were checked to decompress when this key was built, so the `Err` arm is
        // unreachable; it fails closed all the same.
        match VerifyingKey::from_bytes(&self.0) {
            Ok(key) => key
                .verify_strict(message, &Signature::from_bytes(signature))
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_text(s)
    }
}

/// An ed25519 secret key (signing key). Zeroed when dropped; `Debug` shows only the public half.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// The key whose RFC 8032 secret seed is `seed`. Callers generate keys by passing 32 bytes
    /// from the operating system's RNG.
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// The X25519 secret scalar of this key (the clamped SHA-512 half of the seed ed25519 signs
    /// with), which opens what was sealed to [`PublicKey::to_x25519`] of [`SecretKey::public`].
    pub(crate) fn to_x25519(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The secret key file text (see the module docs), ending in a newline. Control characters in
    /// `comment` become spaces, and it is cut to 256 bytes; an empty comment writes no line.
    pub fn to_text(&self, comment: &str) -> String {
        let mut clean: String = comment
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut end = clean.trim_end().len().min(MAX_KEY_COMMENT_BYTES);
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
        let clean = clean.trim();
        let mut out = format!("{SECRET_KEY_HEADER}\n");
        if !clean.is_empty() {
            out.push_str(&format!("comment {clean}\n"));
        }
        out.push_str(&format!("seed {}\n", hexfmt::encode(self.0.as_bytes())));
        out.push_str(&format!("public {}\n", self.public()));
        out
    }

    /// Reads a secret key file (see the module docs).
    pub fn from_text(text: &str) -> Result<SecretKey, KeyError> {
        SecretKey::from_text_with_comment(text).map(|(key, _)| key)
    }

    /// Reads a secret key file and also returns its comment (empty when there is none).
    pub fn from_text_with_comment(text: &str) -> Result<(SecretKey, String), KeyError> {
        if text.len() > MAX_KEY_TEXT_BYTES {
            return Err(KeyError::TooLarge {
                len: text.len(),
                max: MAX_KEY_TEXT_BYTES,
            });
        }
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, first)) if first.trim_end() == SECRET_KEY_HEADER => {}
            _ => return Err(KeyError::SecretHeader),
        }
        let mut seed: Option<SecretKey> = None;
        let mut public: Option<PublicKey> = None;
        let mut comment: Option<String> = None;
        for (line, raw) in lines {
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let Some((field, value)) = content.split_once(|c: char| c.is_ascii_whitespace()) else {
                return Err(KeyError::SecretLine { line });
            };
            let value = value.trim();
            match field {
                "seed" => {
                    if seed.is_some() {
                        return Err(KeyError::SecretDuplicateField {
                            line,
                            field: "seed",
                        });
                    }
                    let bytes = hexfmt::decode::<32>(value)
                        .map_err(|source| KeyError::SeedHex { line, source })?;
                    seed = Some(SecretKey::from_seed(bytes));
                }
                "public" => {
                    if public.is_some() {
                        return Err(KeyError::SecretDuplicateField {
                            line,
                            field: "public",
                        });
                    }
                    public =
                        Some(
                            PublicKey::from_text(value).map_err(|e| KeyError::SecretPublic {
                                line,
                                source: Box::new(e),
                            })?,
                        );
                }
                "comment" => {
                    if comment.is_some() {
                        return Err(KeyError::SecretDuplicateField {
                            line,
                            field: "comment",
                        });
                    }
                    if value.len() > MAX_KEY_COMMENT_BYTES {
                        return Err(KeyError::CommentTooLong {
                            line,
                            len: value.len(),
                            max: MAX_KEY_COMMENT_BYTES,
                        });
                    }
                    if value.chars().any(char::is_control) {
                        return Err(KeyError::CommentControl { line });
                    }
                    comment = Some(value.to_string());
                }
                other => {
                    return Err(KeyError::SecretUnknownField {
                        line,
                        field: cut(other),
                    });
                }
            }
        }
        let key = seed.ok_or(KeyError::SecretMissingField { field: "seed" })?;
        let public = public.ok_or(KeyError::SecretMissingField { field: "public" })?;
        if public != key.public() {
            return Err(KeyError::PublicMismatch {
                public,
                derived: key.public(),
            });
        }
        Ok((key, comment.unwrap_or_default()))
    }

    /// Signs `message` as it is. Only the document module calls this, always with a domain tag
    /// in front, so that no raw signing primitive is exposed.
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public())
    }
}

/// At most 32 characters of untrusted text, for error messages.
fn cut(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests;

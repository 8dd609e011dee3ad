//! C2SP signed notes (`c2sp.org/signed-note`) with ed25519 keys.
//!
//! ```text
//! <text, one or more lines, each ending in \n>
//! <blank line>
//! — <key name> <base64(key id (4 bytes, big-endian) ‖ ed25519 signature (64 bytes))>
//! ```
//!
//! The signature covers the text exactly (with its final newline). The key id is the first four
//! bytes of `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)` (0x01: the ed25519 signature type).
//! A verifier key is written `<name>+<key id, 8 hex>+<base64(0x01 ‖ public key)>`.
//!
//! [`open_note`] follows the spec's rules: signature lines by keys the caller does not know are
//! ignored, a line by a known key that does not verify fails the whole note, and at least one
//! known key must have signed. Notes over [`MAX_NOTE_BYTES`] or with more than
//! [`MAX_SIGNATURES`] signature lines are refused before any signature is checked.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// The longest note read (checkpoints are a few hundred bytes).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// The most signature lines a note may carry (the Go reference's limit).
pub const MAX_SIGNATURES: usize = 100;
/// The signature type byte of ed25519 keys.
const ED25519_TYPE: u8 = 0x01;
/// What starts every signature line: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note could not be signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    /// The note is over [`MAX_NOTE_BYTES`].
    #[error("note is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Note length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The note is not text, or its text breaks the format's rules.
    #[error("note is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// A key name is empty or holds whitespace or '+'.
    #[error("key name is invalid (empty, or holds whitespace or '+')")]
    BadKeyName,
    /// A verifier key string does not parse.
    #[error("verifier key is malformed: {reason}")]
    BadVerifierKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// A signature line by a known key does not verify.
    #[error("signature by '{name}' does not verify")]
    BadSignature {
        /// The key name.
        name: String,
    },
    /// No signature line is by a key the caller knows.
    #[error("note has no signature by a known key")]
    Unverified,
}

fn malformed(reason: &'static str) -> NoteError {
    NoteError::Malformed { reason }
}

/// The spec's key id for an ed25519 key named `name`.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadKeyName);
    }
    Ok(())
}

/// Text rules: non-empty, ends in a newline, no blank line inside, no control characters other
/// than newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(malformed("text does not end in a newline"));
    }
    if text.starts_with('\n') || text.contains("\n\n") {
        return Err(malformed("text holds a blank line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed("text holds a control character"));
    }
    Ok(())
}

/// Signs notes as one named ed25519 key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl core::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NoteSigner({})", self.verifier().to_text())
    }
}

impl NoteSigner {
    /// A signer for `key` under the key name `name`.
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.to_string(),
            key,
            id,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// The note: `text`, a blank line, and this key's signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes()).to_bytes();
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&signature);
        let note = format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(raw)
        );
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                len: note.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        Ok(note)
    }
}

/// Checks signatures of one named ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl NoteVerifier {
    /// A verifier for the ed25519 public key `public` under the key name `name`. Invalid and
    /// weak (small-order) keys are refused.
    pub fn new(name: &str, public: &[u8; 32]) -> Result<NoteVerifier, NoteError> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(public).map_err(|_| NoteError::BadVerifierKey {
            reason: "not an ed25519 point",
        })?;
        if key.is_weak() {
            return Err(NoteError::BadVerifierKey {
                reason: "weak ed25519 key",
            });
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            key,
            id: key_id(name, public),
        })
    }

    /// Reads `<name>+<key id hex>+<base64(0x01 ‖ key)>`; the id must match the key.
    pub fn from_text(text: &str) -> Result<NoteVerifier, NoteError> {
        let bad = |reason| NoteError::BadVerifierKey { reason };
        if text.len() > 1024 {
            return Err(bad("too long"));
        }
        let mut parts = text.trim().split('+');
        let (Some(name), Some(id), Some(key), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected name+id+key"));
        };
        if id.len() != 8 {
            return Err(bad("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("key id is not 8 hex digits"))?;
        let mut raw = [0u8; 33];
        match STANDARD.decode_slice(key, &mut raw) {
            Ok(33) if raw[0] == ED25519_TYPE => {}
            Ok(33) => return Err(bad("not an ed25519 key")),
            _ => return Err(bad("key is not base64 of 33 bytes")),
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        let verifier = NoteVerifier::new(name, &public)?;
        if verifier.id != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(verifier)
    }

    /// The verifier key text, `<name>+<key id hex>+<base64(0x01 ‖ key)>`.
    pub fn to_text(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = ED25519_TYPE;
        raw[1..].copy_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32 public key bytes.
    pub fn public_key(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }
}

/// Opens `note`: checks its shape and that at least one of `verifiers` signed it (see the module
/// docs), and returns the signed text.
pub fn open_note<'a>(note: &'a [u8], verifiers: &[NoteVerifier]) -> Result<&'a str, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            len: note.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    let note = core::str::from_utf8(note).map_err(|_| malformed("not UTF-8"))?;
    let split = note
        .rfind("\n\n")
        .ok_or(malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    check_text(text)?;
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(malformed("signature block does not end in a newline"));
    }
    let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(malformed("too many signature lines"));
    }
    let mut verified = false;
    for line in lines {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(malformed("signature line does not start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(malformed("signature line is not 'name signature'"))?;
        check_name(name).map_err(|_| malformed("signature line names an invalid key"))?;
        let mut raw = [0u8; 96];
        let len = STANDARD
            .decode_slice(b64, &mut raw)
            .map_err(|_| malformed("signature is not base64"))?;
        if len < 5 {
            return Err(malformed("signature is too short"));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let Some(v) = verifiers.iter().find(|v| v.name == name && v.id == id) else {
            continue;
        };
        let bad = || NoteError::BadSignature {
            name: name.to_string(),
        };
        let sig: [u8; 64] = raw[4..len].try_into().map_err(|_| bad())?;
        v.key
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| bad())?;
        verified = true;
    }
    if !verified {
        return Err(NoteError::Unverified);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key and note of Go's `sumdb/note` package and of the signed-note spec.
    const PETER_SEED_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn peter() -> NoteSigner {
        let raw = STANDARD.decode(PETER_SEED_B64).unwrap();
        assert_eq!(raw[0], ED25519_TYPE);
        let seed: [u8; 32] = raw[1..].try_into().unwrap();
        NoteSigner::new("PeterNeumann", SigningKey::from_bytes(&seed)).unwrap()
    }

    #[test]
    fn signing_matches_the_reference_note() {
        let signer = peter();
        assert_eq!(signer.id, 0xc74f20a3);
        let note = signer.sign(PETER_TEXT).unwrap();
        assert_eq!(note, format!("{PETER_TEXT}\n{PETER_SIG}"));
        assert_eq!(
            open_note(note.as_bytes(), &[signer.verifier()]),
            Ok(PETER_TEXT)
        );
    }

    #[test]
    fn the_spec_example_verifies_with_its_published_key() {
        let v = NoteVerifier::from_text(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap();
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        assert_eq!(
            open_note(note.as_bytes(), core::slice::from_ref(&v)),
            Ok("This is an example message.\n")
        );
        assert_eq!(
            NoteVerifier::from_text(&v.to_text()),
            Ok(v.clone()),
            "verifier text round-trips"
        );
        let altered = note.replace("example message", "example massage");
        assert_eq!(
            open_note(altered.as_bytes(), &[v]),
            Err(NoteError::BadSignature {
                name: "example.com/foo".into()
            })
        );
    }

    #[test]
    fn unknown_keys_are_ignored_and_not_enough() {
        let signer = peter();
        let other = NoteSigner::new("other", SigningKey::from_bytes(&[9; 32])).unwrap();
        let note = signer.sign(PETER_TEXT).unwrap();
        assert_eq!(
            open_note(note.as_bytes(), &[other.verifier()]),
            Err(NoteError::Unverified)
        );
        // A second line by an unknown key does not hurt.
        let two = format!("{note}\u{2014} someone AAAAAAAA\n");
        assert_eq!(
            open_note(two.as_bytes(), &[signer.verifier()]),
            Ok(PETER_TEXT)
        );
        // A same-named key with another id is another key.
        let impostor = NoteSigner::new("PeterNeumann", SigningKey::from_bytes(&[3; 32])).unwrap();
        assert_eq!(
            open_note(
                impostor.sign(PETER_TEXT).unwrap().as_bytes(),
                &[signer.verifier()]
            ),
            Err(NoteError::Unverified)
        );
    }

    #[test]
    fn malformed_notes_are_refused() {
        let v = peter().verifier();
        for bad in [
            "",
            "no blank line\n\u{2014} x AAAA\n",
            "text\n\n",
            "text\n\nno dash\n",
            "text\n\n\u{2014} PeterNeumann not*base64\n",
            "text\n\n\u{2014} PeterNeumann AAAA\n",
            "text\n\n\u{2014} PeterNeumann x08go/ZJ",
            "\n\n\u{2014} PeterNeumann x08go/ZJ\n",
            "a\u{1}b\n\n\u{2014} PeterNeumann x08go/ZJ\n",
        ] {
            assert!(
                open_note(bad.as_bytes(), core::slice::from_ref(&v)).is_err(),
                "{bad:?}"
            );
        }
        assert!(open_note(&[0xff, b'\n', b'\n'], core::slice::from_ref(&v)).is_err());
        let huge = "a".repeat(MAX_NOTE_BYTES + 1);
        assert!(matches!(
            open_note(huge.as_bytes(), &[v]),
            Err(NoteError::TooLarge { .. })
        ));
        assert!(peter().sign("no newline").is_err());
        assert!(peter().sign("a\n\nb\n").is_err());
        assert!(NoteSigner::new("has space", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(NoteSigner::new("a+b", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(NoteVerifier::from_text(
            "name+00000000+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        )
        .is_err());
    }
}

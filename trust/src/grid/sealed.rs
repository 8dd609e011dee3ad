//! Console tails sealed to a contract's owner.
//!
//! A status report is public (the notary appends it to its log), but the last lines a workload
//! printed may say things only its owner should read. So the node seals each tail to the owner's
//! key, and the report carries only the sealed bytes: everyone sees that a tail exists and its
//! size, only the owner's secret key opens it.
//!
//! Sealing (an ECIES in the shape of libsodium's sealed boxes and age's ssh-ed25519 recipients):
//! - the owner's ed25519 public key, mapped to its X25519 (Montgomery) form, is the recipient;
//!   the owner opens with the X25519 scalar of the same ed25519 secret key;
//! - the node draws a fresh ephemeral X25519 secret per tail (the caller passes its 32 random
//!   bytes: this crate has no randomness of its own);
//! - key = BLAKE3 `derive_key`([`KDF_CONTEXT`], shared secret ‖ ephemeral public ‖ recipient ‖
//!   node ‖ contract ‖ version (u64 LE) ‖ sequence (u64 LE) ‖ workload name), so a tail opens
//!   only under the report and workload it was sealed for (a tail copied into another report does
//!   not open);
//! - ChaCha20-Poly1305 under that key with the all-zero nonce (each key seals one message).
//!
//! Sealed bytes: ephemeral X25519 public key (32) ‖ ciphertext ‖ tag (16). The plaintext is the
//! tail: at most [`MAX_TAIL_LINES`] lines joined by `\n`, at most [`MAX_TAIL_BYTES`] bytes of
//! UTF-8, no control character but the separators ([`bounded_tail`] builds one from lines).

use alloc::string::String;
use alloc::vec::Vec;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

use super::ContractId;
use crate::keys::{PublicKey, SecretKey};

/// Most lines in a tail.
pub const MAX_TAIL_LINES: usize = 20;
/// Most bytes in a tail (its UTF-8 text, before sealing).
pub const MAX_TAIL_BYTES: usize = 2 * 1024;
/// What sealing adds: the ephemeral public key (32 bytes) and the Poly1305 tag (16 bytes).
pub const SEAL_OVERHEAD: usize = 32 + 16;
/// Most bytes of a sealed tail.
pub const MAX_SEALED_TAIL_BYTES: usize = MAX_TAIL_BYTES + SEAL_OVERHEAD;
/// BLAKE3 `derive_key` context of the sealing key.
pub const KDF_CONTEXT: &str = "NullOS 2026-12 status report console tail sealed to the owner v1";

/// The report and workload a tail belongs to: bound into its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailContext<'a> {
    /// The node that reports.
    pub node: PublicKey,
    /// The contract.
    pub contract: ContractId,
    /// The contract version the report is about.
    pub version: u64,
    /// The report's sequence.
    pub sequence: u64,
    /// The workload whose console this is.
    pub workload: &'a str,
}

/// Why a tail could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The tail is over a bound.
    #[error("console tail of {lines} lines and {bytes} bytes is over the bound ({MAX_TAIL_LINES} lines, {MAX_TAIL_BYTES} bytes)")]
    TailTooLarge {
        /// Its lines.
        lines: usize,
        /// Its bytes.
        bytes: usize,
    },
    /// The tail has a control character other than the line separators.
    #[error("console tail contains a control character")]
    ControlCharacter,
    /// The sealed bytes are shorter or longer than any sealed tail.
    #[error("sealed tail is {len} bytes, outside {SEAL_OVERHEAD}..={MAX_SEALED_TAIL_BYTES}")]
    SealedSize {
        /// Its length.
        len: usize,
    },
    /// The key agreement gave the all-zero secret (a small-order point).
    #[error("the key agreement is not contributory (small-order point)")]
    NotContributory,
    /// Authentication failed: not the owner's key, bytes altered, or another report's tail.
    #[error("console tail does not open with this key (not the contract owner's key, or the tail was altered or belongs to another report)")]
    Open,
    /// The opened text is not a valid tail (not UTF-8, or over a bound).
    #[error("opened console tail is not valid UTF-8 text within the bounds")]
    Content,
}

/// The last lines of `lines` that fit the bounds, joined by `\n`: each line's control characters
/// become U+FFFD, a line longer than [`MAX_TAIL_BYTES`] keeps its end, and lines are kept from the
/// newest back while both [`MAX_TAIL_LINES`] and [`MAX_TAIL_BYTES`] hold.
pub fn bounded_tail<S: AsRef<str>>(lines: &[S]) -> String {
    let mut kept: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    for line in lines.iter().rev() {
        if kept.len() == MAX_TAIL_LINES {
            break;
        }
        let mut clean: String = line
            .as_ref()
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        let separator = usize::from(!kept.is_empty());
        let room = MAX_TAIL_BYTES.saturating_sub(bytes + separator);
        if clean.len() > room {
            if !kept.is_empty() {
                break;
            }
            // The newest line alone is too long: keep its end.
            let mut start = clean.len() - room;
            while !clean.is_char_boundary(start) {
                start += 1;
            }
            clean = String::from(&clean[start..]);
        }
        bytes += clean.len() + separator;
        kept.push(clean);
    }
    kept.reverse();
    kept.join("\n")
}

/// Checks `tail` against the bounds (what [`bounded_tail`] gives always passes).
pub fn check_tail(tail: &str) -> Result<(), SealError> {
    let lines = if tail.is_empty() {
        0
    } else {
        tail.split('\n').count()
    };
    if lines > MAX_TAIL_LINES || tail.len() > MAX_TAIL_BYTES {
        return Err(SealError::TailTooLarge {
            lines,
            bytes: tail.len(),
        });
    }
    if tail.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(SealError::ControlCharacter);
    }
    Ok(())
}

/// Seals `tail` to `owner` for the report and workload `context`, with the ephemeral X25519
/// secret `ephemeral` (32 fresh random bytes, never reused).
pub fn seal(
    owner: &PublicKey,
    ephemeral: [u8; 32],
    context: &TailContext<'_>,
    tail: &str,
) -> Result<Vec<u8>, SealError> {
    check_tail(tail)?;
    let ephemeral = StaticSecret::from(ephemeral);
    let ephemeral_public = X25519Public::from(&ephemeral);
    let recipient = owner.to_x25519();
    let shared = ephemeral.diffie_hellman(&X25519Public::from(recipient));
    if !shared.was_contributory() {
        return Err(SealError::NotContributory);
    }
    let key = sealing_key(
        shared.as_bytes(),
        ephemeral_public.as_bytes(),
        &recipient,
        context,
    );
    let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&key))
        .encrypt(&Nonce::default(), tail.as_bytes())
        .map_err(|_| SealError::TailTooLarge {
            lines: 0,
            bytes: tail.len(),
        })?;
    let mut sealed = Vec::with_capacity(32 + ciphertext.len());
    sealed.extend_from_slice(ephemeral_public.as_bytes());
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// Opens a tail sealed to `owner`'s public key for `context`.
pub fn open(
    owner: &SecretKey,
    context: &TailContext<'_>,
    sealed: &[u8],
) -> Result<String, SealError> {
    if !(SEAL_OVERHEAD..=MAX_SEALED_TAIL_BYTES).contains(&sealed.len()) {
        return Err(SealError::SealedSize { len: sealed.len() });
    }
    let (ephemeral_public, ciphertext) = sealed.split_at(32);
    let mut ephemeral_bytes = [0u8; 32];
    ephemeral_bytes.copy_from_slice(ephemeral_public);
    let secret = StaticSecret::from(owner.to_x25519());
    let recipient = X25519Public::from(&secret);
    let shared = secret.diffie_hellman(&X25519Public::from(ephemeral_bytes));
    if !shared.was_contributory() {
        return Err(SealError::Open);
    }
    let key = sealing_key(
        shared.as_bytes(),
        &ephemeral_bytes,
        recipient.as_bytes(),
        context,
    );
    let plain = ChaCha20Poly1305::new(Key::from_slice(&key))
        .decrypt(&Nonce::default(), ciphertext)
        .map_err(|_| SealError::Open)?;
    let tail = String::from_utf8(plain).map_err(|_| SealError::Content)?;
    check_tail(&tail).map_err(|_| SealError::Content)?;
    Ok(tail)
}

fn sealing_key(
    shared: &[u8; 32],
    ephemeral_public: &[u8; 32],
    recipient: &[u8; 32],
    context: &TailContext<'_>,
) -> [u8; 32] {
    let mut material = Vec::with_capacity(32 * 5 + 16 + context.workload.len());
    material.extend_from_slice(shared);
    material.extend_from_slice(ephemeral_public);
    material.extend_from_slice(recipient);
    material.extend_from_slice(context.node.as_bytes());
    material.extend_from_slice(context.contract.0.as_bytes());
    material.extend_from_slice(&context.version.to_le_bytes());
    material.extend_from_slice(&context.sequence.to_le_bytes());
    // Last, so its length needs no prefix: everything before it has a fixed size.
    material.extend_from_slice(context.workload.as_bytes());
    let key = blake3::derive_key(KDF_CONTEXT, &material);
    material.fill(0);
    key
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::vec;

    use super::*;
    use crate::digest::Digest;

    fn context(sequence: u64) -> TailContext<'static> {
        TailContext {
            node: SecretKey::from_seed([1; 32]).public(),
            contract: ContractId(Digest::of(b"contract")),
            version: 2,
            sequence,
            workload: "hello",
        }
    }

    const TAIL: &str = "hello: counter=1\nhello: bye";

    #[test]
    fn the_owner_opens_what_was_sealed_to_them() {
        let owner = SecretKey::from_seed([7; 32]);
        let sealed = seal(&owner.public(), [9; 32], &context(3), TAIL).expect("seal");
        assert_eq!(sealed.len(), TAIL.len() + SEAL_OVERHEAD);
        assert!(!sealed.windows(5).any(|w| w == b"hello"), "no clear text");
        assert_eq!(open(&owner, &context(3), &sealed).as_deref(), Ok(TAIL));
        // An empty tail seals too.
        let empty = seal(&owner.public(), [8; 32], &context(3), "").expect("seal");
        assert_eq!(open(&owner, &context(3), &empty).as_deref(), Ok(""));
    }

    #[test]
    fn another_key_does_not_open_it() {
        let owner = SecretKey::from_seed([7; 32]);
        let sealed = seal(&owner.public(), [9; 32], &context(3), TAIL).expect("seal");
        let other = SecretKey::from_seed([8; 32]);
        assert_eq!(open(&other, &context(3), &sealed), Err(SealError::Open));
    }

    #[test]
    fn a_flipped_byte_does_not_open() {
        let owner = SecretKey::from_seed([7; 32]);
        let sealed = seal(&owner.public(), [9; 32], &context(3), TAIL).expect("seal");
        for at in [0, 31, 32, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[at] ^= 0x01;
            assert!(open(&owner, &context(3), &altered).is_err(), "byte {at}");
        }
        assert_eq!(
            open(&owner, &context(3), &sealed[..SEAL_OVERHEAD - 1]),
            Err(SealError::SealedSize {
                len: SEAL_OVERHEAD - 1
            })
        );
    }

    #[test]
    fn another_reports_context_does_not_open() {
        let owner = SecretKey::from_seed([7; 32]);
        let sealed = seal(&owner.public(), [9; 32], &context(3), TAIL).expect("seal");
        let base = context(3);
        let others = [
            context(4),
            TailContext { version: 3, ..base },
            TailContext {
                workload: "other",
                ..base
            },
            TailContext {
                node: SecretKey::from_seed([2; 32]).public(),
                ..base
            },
            TailContext {
                contract: ContractId(Digest::of(b"another")),
                ..base
            },
        ];
        for other in others {
            assert_eq!(
                open(&owner, &other, &sealed),
                Err(SealError::Open),
                "{other:?}"
            );
        }
    }

    #[test]
    fn the_public_key_maps_to_the_secret_scalars_point() {
        // The owner's X25519 public key computed from the ed25519 public key equals the one
        // computed from the ed25519 secret key: what makes sealing to a public key work.
        for seed in [[0u8; 32], [7; 32], [0xff; 32]] {
            let key = SecretKey::from_seed(seed);
            let from_secret = X25519Public::from(&StaticSecret::from(key.to_x25519()));
            assert_eq!(from_secret.to_bytes(), key.public().to_x25519());
        }
    }

    #[test]
    fn tails_over_the_bounds_are_refused() {
        let owner = SecretKey::from_seed([7; 32]).public();
        let many = vec!["x"; MAX_TAIL_LINES + 1].join("\n");
        assert!(matches!(
            seal(&owner, [9; 32], &context(1), &many),
            Err(SealError::TailTooLarge { lines: 21, .. })
        ));
        let long = "x".repeat(MAX_TAIL_BYTES + 1);
        assert!(matches!(
            seal(&owner, [9; 32], &context(1), &long),
            Err(SealError::TailTooLarge { .. })
        ));
        assert_eq!(
            seal(&owner, [9; 32], &context(1), "a\x1b[2Jb"),
            Err(SealError::ControlCharacter)
        );
    }

    #[test]
    fn bounded_tail_keeps_the_newest_lines_within_the_bounds() {
        let lines: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        let tail = bounded_tail(&lines);
        assert_eq!(tail.lines().count(), MAX_TAIL_LINES);
        assert!(tail.starts_with("line 10\n") && tail.ends_with("line 29"));
        check_tail(&tail).expect("within bounds");

        let wide: Vec<String> = (0..5).map(|i| format!("{i}{}", "y".repeat(900))).collect();
        let tail = bounded_tail(&wide);
        assert_eq!(tail.lines().count(), 2, "two 901-byte lines fit 2 KiB");
        assert!(tail.starts_with('3'));
        check_tail(&tail).expect("within bounds");

        let huge = [format!("é{}", "z".repeat(MAX_TAIL_BYTES + 10))];
        let tail = bounded_tail(&huge);
        assert!(tail.len() <= MAX_TAIL_BYTES && tail.ends_with('z'));

        assert_eq!(bounded_tail(&["a\tb\x1b"]), "a\u{fffd}b\u{fffd}");
        assert_eq!(bounded_tail::<&str>(&[]), "");
    }
}

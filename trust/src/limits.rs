//! Size limits on untrusted input, and the bounded postcard reader and writer that enforce them.
//!
//! Every binary format in this crate is a sequence of postcard values (varints for integers and
//! lengths, raw bytes for fixed arrays, length-prefixed UTF-8 for text). Decoders read it field by
//! field through a bounded reader, which
//! - refuses the whole input up front when it is larger than the format's cap,
//! - reads counts and lengths first and refuses them when they exceed their cap, before anything
//!   is allocated (text and byte fields are borrowed from the input, never copied unchecked),
//! - names the field and the byte offset of every failure, and
//! - refuses trailing bytes.
//!
//! So a hostile document can make a verifier allocate at most a small multiple of the caps below,
//! and every malformed input is a [`DecodeError`], never a panic.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use alloc::vec::Vec;

/// Largest signed-document file accepted by `SignedDocument::decode`, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 128 * 1024;
/// Largest document body (the signed canonical bytes), in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most signatures one signed document may carry.
pub const MAX_SIGNATURES: usize = 32;
/// Most members one signer policy may have.
pub const MAX_POLICY_MEMBERS: usize = 32;
/// Longest policy member name, in bytes.
pub const MAX_MEMBER_NAME_BYTES: usize = 64;
/// Largest encoded signer policy (postcard), in bytes.
pub const MAX_POLICY_BYTES: usize = 8 * 1024;
/// Largest signer-policy text file, in bytes.
pub const MAX_POLICY_TEXT_BYTES: usize = 16 * 1024;
/// Largest key text file (public or secret), in bytes.
pub const MAX_KEY_TEXT_BYTES: usize = 4 * 1024;
/// Longest comment in a secret key file, in bytes.
pub const MAX_KEY_COMMENT_BYTES: usize = 256;
/// Largest encoded release manifest (the body of a signed release), in bytes.
pub const MAX_RELEASE_MANIFEST_BYTES: usize = 4 * 1024;
/// Longest short label in a manifest (`profile`, `target`), in bytes.
pub const MAX_LABEL_BYTES: usize = 64;
/// Longest build-input string in a manifest (package name, kernel version), in bytes.
pub const MAX_BUILD_STRING_BYTES: usize = 128;
/// Most Debian packages a release manifest names (`packages`).
pub const MAX_BUILD_PACKAGES: usize = 16;
/// Longest package name or version in a manifest's `packages`, in bytes.
pub const MAX_PACKAGE_STRING_BYTES: usize = 64;
/// Largest encoded workload manifest (the body of a signed workload document), in bytes: the
/// whole document body cap, which also bounds the sum of the per-field caps below.
pub const MAX_WORKLOAD_MANIFEST_BYTES: usize = MAX_BODY_BYTES;
/// Longest workload or volume name, in bytes (`[a-z0-9-]`).
pub const MAX_WORKLOAD_NAME_BYTES: usize = 32;
/// Most arguments in a workload's entrypoint (argv).
pub const MAX_WORKLOAD_ARGS: usize = 64;
/// Most environment variables of a workload.
pub const MAX_WORKLOAD_ENV: usize = 256;
/// Longest single string in a workload manifest (argument, env key or value, path), in bytes.
pub const MAX_WORKLOAD_STRING_BYTES: usize = 4096;
/// Most volumes of a workload.
pub const MAX_WORKLOAD_VOLUMES: usize = 8;

/// Why untrusted bytes could not be decoded. Offsets count from the first byte of the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The whole input is larger than the format allows.
    #[error("{what} is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Input length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The input does not start with the expected magic bytes.
    #[error("not a {what}: bad magic bytes")]
    BadMagic {
        /// What was expected.
        what: &'static str,
    },
    /// The input ended in the middle of a field.
    #[error("truncated at byte {at} while reading {field}")]
    Truncated {
        /// Input length (where it ended).
        at: usize,
        /// The field being read.
        field: &'static str,
    },
    /// A field is not a valid postcard encoding of its type.
    #[error("malformed {field} at byte {at}: {reason}")]
    Malformed {
        /// The field being read.
        field: &'static str,
        /// Offset where the field starts.
        at: usize,
        /// What is wrong with it (postcard's own error carries no more than this).
        reason: &'static str,
    },
    /// A count or length is over its cap.
    #[error("{field} at byte {at} has length {len}, over the limit of {max}")]
    OverLimit {
        /// The field being read.
        field: &'static str,
        /// Offset where the field starts.
        at: usize,
        /// The length or count found.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// A field decoded but holds a value the format does not allow.
    #[error("invalid {field} at byte {at}: {reason}")]
    InvalidValue {
        /// The field being read.
        field: &'static str,
        /// Offset where the field starts.
        at: usize,
        /// What is wrong with the value.
        reason: &'static str,
    },
    /// The format version is not one this build reads.
    #[error(
        "{what} format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedFormat {
        /// What was being decoded.
        what: &'static str,
        /// Version found.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Bytes are left over after the last field.
    #[error("trailing {count} bytes after {what}")]
    Trailing {
        /// Number of leftover bytes.
        count: usize,
        /// What was decoded.
        what: &'static str,
    },
}

/// Longest postcard encoding of a scalar read with [`Reader::take`] (a u64 varint: 10 bytes).
const MAX_SCALAR_BYTES: usize = 16;

/// Refuses `len` when it is over `max`.
pub(crate) fn check_size(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::TooLarge { what, len, max });
    }
    Ok(())
}

/// Field-by-field postcard reader over a borrowed, size-checked input.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    total: usize,
    /// Offset of `rest[0]` in the caller's input (after any magic the caller stripped).
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `input` (after checking it against `max`), whose first byte sits at
    /// `offset` in the caller's file (for error messages).
    pub(crate) fn new(
        what: &'static str,
        input: &'a [u8],
        max: usize,
        offset: usize,
    ) -> Result<Self, DecodeError> {
        check_size(what, input.len().saturating_add(offset), max)?;
        Ok(Self {
            rest: input,
            total: input.len().saturating_add(offset),
            offset,
        })
    }

    /// Offset of the next unread byte.
    pub(crate) fn position(&self) -> usize {
        self.offset
    }

    /// Reads one postcard scalar (integer or boolean) of type `T`, in its canonical encoding
    /// only: postcard itself accepts overlong varints (e.g. `81 00` for 1), which would give one
    /// value several spellings, so the bytes read must be exactly what encoding the value gives.
    pub(crate) fn take<T: Deserialize<'a> + Serialize>(
        &mut self,
        field: &'static str,
    ) -> Result<T, DecodeError> {
        let at = self.offset;
        let (value, rest) = match postcard::take_from_bytes::<T>(self.rest) {
            Ok(ok) => ok,
            Err(postcard::Error::DeserializeUnexpectedEnd) => {
                return Err(DecodeError::Truncated {
                    at: self.total,
                    field,
                })
            }
            Err(e) => {
                return Err(DecodeError::Malformed {
                    field,
                    at,
                    reason: reason(&e),
                })
            }
        };
        let used = self.rest.len() - rest.len();
        let mut canonical = [0u8; MAX_SCALAR_BYTES];
        match postcard::to_slice(&value, &mut canonical) {
            Ok(encoded) if encoded == &self.rest[..used] => {}
            _ => {
                return Err(DecodeError::Malformed {
                    field,
                    at,
                    reason: "non-canonical encoding (overlong varint)",
                })
            }
        }
        self.offset += used;
        self.rest = rest;
        Ok(value)
    }

    /// Reads a count or length (a varint) and refuses it when over `max`.
    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let at = self.offset;
        let len: u64 = self.take(field)?;
        match usize::try_from(len) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(DecodeError::OverLimit {
                field,
                at,
                len,
                max,
            }),
        }
    }

    /// Reads a fixed-size byte array (postcard writes arrays as their raw bytes, no length).
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let Some((head, tail)) = self.rest.split_first_chunk::<N>() else {
            return Err(DecodeError::Truncated {
                at: self.total,
                field,
            });
        };
        self.rest = tail;
        self.offset += N;
        Ok(*head)
    }

    /// Reads length-prefixed bytes of at most `max` bytes, borrowed from the input.
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len = self.count(field, max)?;
        if len > self.rest.len() {
            return Err(DecodeError::Truncated {
                at: self.total,
                field,
            });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        self.offset += len;
        Ok(head)
    }

    /// Reads length-prefixed UTF-8 text of at most `max` bytes, borrowed from the input.
    pub(crate) fn text(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let at = self.offset;
        let raw = self.bytes(field, max)?;
        core::str::from_utf8(raw).map_err(|_| DecodeError::Malformed {
            field,
            at,
            reason: "text is not valid UTF-8",
        })
    }

    /// Whether every byte has been read (for a trailing optional section).
    pub(crate) fn is_at_end(&self) -> bool {
        self.rest.is_empty()
    }

    /// Succeeds only when every byte has been read.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                count: self.rest.len(),
                what,
            })
        }
    }
}

/// Short explanation of a postcard decoding error.
fn reason(e: &postcard::Error) -> &'static str {
    match e {
        postcard::Error::DeserializeBadVarint => "bad varint (too long for its type)",
        postcard::Error::DeserializeBadBool => "boolean is neither 0 nor 1",
        postcard::Error::DeserializeBadUtf8 | postcard::Error::DeserializeBadChar => {
            "text is not valid UTF-8"
        }
        postcard::Error::DeserializeBadOption => "option tag is neither 0 nor 1",
        postcard::Error::DeserializeBadEnum => "enum tag out of range",
        _ => "invalid encoding",
    }
}

/// Field-by-field postcard writer, the mirror of [`Reader`].
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// Starts with `prefix` (e.g. magic bytes).
    pub(crate) fn with_prefix(prefix: &[u8]) -> Self {
        Self {
            out: prefix.to_vec(),
        }
    }

    /// Appends one postcard value.
    pub(crate) fn put<T: Serialize + ?Sized>(&mut self, value: &T) {
        // Serializing our own plain types into a growable vector cannot fail: postcard only errors
        // on a full fixed buffer, unknown-length sequences, or a failing custom Serialize impl,
        // none of which occur here (only integers, booleans and byte arrays are written). Ignoring
        // the impossible error keeps encode() infallible; the round-trip tests would catch a gap.
        if let Ok(encoded) = postcard::to_allocvec(value) {
            self.out.extend_from_slice(&encoded);
        }
    }

    /// Appends a count or length (a varint).
    pub(crate) fn count(&mut self, n: usize) {
        self.put(&(n as u64));
    }

    /// Appends a fixed-size byte array as its raw bytes (postcard's encoding of `[u8; N]`).
    pub(crate) fn array(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Appends length-prefixed bytes.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.count(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// Appends length-prefixed UTF-8 text.
    pub(crate) fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    /// The encoded bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_what_writer_wrote() {
        let mut w = Writer::with_prefix(b"MAGIC");
        w.put(&300u32);
        w.text("hello");
        w.bytes(&[1, 2, 3]);
        w.put(&[7u8; 32]);
        w.array(&[8u8; 64]);
        w.put(&true);
        let bytes = w.finish();
        let mut r = Reader::new("test", &bytes[5..], 200, 5).expect("size ok");
        assert_eq!(r.take::<u32>("n"), Ok(300));
        assert_eq!(r.text("s", 5), Ok("hello"));
        assert_eq!(r.bytes("b", 3), Ok(&[1u8, 2, 3][..]));
        assert_eq!(r.array::<32>("a"), Ok([7u8; 32]));
        assert_eq!(r.array::<64>("a64"), Ok([8u8; 64]));
        assert_eq!(r.take::<bool>("t"), Ok(true));
        assert_eq!(r.position(), bytes.len());
        assert_eq!(r.finish("test"), Ok(()));
    }

    #[test]
    fn limits_and_positions_are_reported() {
        let mut w = Writer::default();
        w.text("toolong");
        let bytes = w.finish();
        let mut r = Reader::new("test", &bytes, 100, 0).expect("size ok");
        assert_eq!(
            r.text("name", 6),
            Err(DecodeError::OverLimit {
                field: "name",
                at: 0,
                len: 7,
                max: 6
            })
        );

        let mut r = Reader::new("test", &bytes[..4], 100, 8).expect("size ok");
        assert_eq!(
            r.text("name", 64),
            Err(DecodeError::Truncated {
                at: 12,
                field: "name"
            })
        );

        assert_eq!(
            Reader::new("test", &[0; 10], 9, 0).map(|_| ()),
            Err(DecodeError::TooLarge {
                what: "test",
                len: 10,
                max: 9
            })
        );

        let mut r = Reader::new("test", &[2, 0], 100, 0).expect("size ok");
        assert_eq!(
            r.take::<bool>("flag"),
            Err(DecodeError::Malformed {
                field: "flag",
                at: 0,
                reason: "boolean is neither 0 nor 1"
            })
        );

        let mut r = Reader::new("test", &[1, 9, 9], 100, 0).expect("size ok");
        assert_eq!(r.take::<u8>("n"), Ok(1));
        assert_eq!(
            r.finish("thing"),
            Err(DecodeError::Trailing {
                count: 2,
                what: "thing"
            })
        );
    }

    #[test]
    fn non_canonical_varints_are_refused() {
        let mut r = Reader::new("test", &[0x81, 0x00], 100, 0).expect("size ok");
        assert_eq!(
            r.take::<u32>("n"),
            Err(DecodeError::Malformed {
                field: "n",
                at: 0,
                reason: "non-canonical encoding (overlong varint)"
            })
        );
        let mut r = Reader::new("test", &[0x80, 0x01], 100, 0).expect("size ok");
        assert_eq!(r.take::<u32>("n"), Ok(128));
    }

    #[test]
    fn overlong_varint_is_malformed_not_truncated() {
        let mut r = Reader::new("test", &[0xff; 11], 100, 0).expect("size ok");
        assert!(matches!(
            r.count("n", 10),
            Err(DecodeError::Malformed { at: 0, .. })
        ));
    }
}

//! The one path every signed document kind is read through.
//!
//! A kind of signed body (the release manifest, the workload manifest) implements [`SignedBody`]: its [`DocumentKind`] (so its signature domain
//! tag), its size cap, its canonical encoder and its bounded decoder, which checks every value
//! as it reads, so a body that decodes is valid (`validate` is "would this decode?").
//!
//! [`verify_document`] is the one verification: decode the envelope, require the kind, check the
//! signatures against the signer policy, then decode (and so validate) the body.

use alloc::vec::Vec;

use thiserror::Error;

use crate::document::{DocumentKind, SignedDocument, Verified, VerifyError};
use crate::limits::DecodeError;
use crate::policy::SignerPolicy;

/// A kind of signed document body. See the module docs.
pub trait SignedBody: Sized {
    /// The document kind bodies of this type are signed as (and so their domain tag).
    const KIND: DocumentKind;
    /// The largest encoded body accepted, in bytes (at most the document body cap).
    const MAX_BYTES: usize;

    /// The canonical body bytes (postcard, the format version first).
    fn encode(&self) -> Vec<u8>;

    /// Reads body bytes with bounded sizes: refuses input over [`Self::MAX_BYTES`], other
    /// format versions, any invalid value, and trailing bytes. What decodes is valid.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    /// Checks that this body would decode (format, limits, every value), before signing it.
    fn validate(&self) -> Result<(), DecodeError> {
        Self::decode(&self.encode()).map(|_| ())
    }

    /// An unsigned document holding this body, ready for [`SignedDocument::sign`].
    fn to_document(&self) -> SignedDocument {
        SignedDocument::new(Self::KIND, self.encode())
    }
}

/// A document that passed [`verify_document`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<B> {
    /// The signed document as read.
    pub document: SignedDocument,
    /// What the signature check saw (signers, weight, ignored entries).
    pub verified: Verified,
    /// The decoded, valid body.
    pub body: B,
}

/// Why a signed document was refused by [`verify_document`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DocumentError {
    /// The signed document envelope could not be decoded.
    #[error("{expected} envelope could not be decoded")]
    DecodeEnvelope {
        /// The kind the caller expected.
        expected: DocumentKind,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// The document is of another kind, or its signatures do not satisfy the policy.
    #[error("{expected} signatures rejected")]
    Verify {
        /// The kind the caller expected.
        expected: DocumentKind,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// The signed body is not a readable, valid body of its kind.
    #[error("{kind} could not be decoded")]
    DecodeBody {
        /// The kind.
        kind: DocumentKind,
        /// Why.
        #[source]
        source: DecodeError,
    },
}

/// Checks a signed document file against `policy`: decodes the envelope, requires kind
/// `B::KIND`, verifies the signatures (see [`SignedDocument::verify`]), and only then decodes
/// and validates the body.
pub fn verify_document<B: SignedBody>(
    file_bytes: &[u8],
    policy: &SignerPolicy,
) -> Result<Opened<B>, DocumentError> {
    let document = decode_envelope::<B>(file_bytes)?;
    let verified = document
        .verify(B::KIND, policy)
        .map_err(|source| DocumentError::Verify {
            expected: B::KIND,
            source,
        })?;
    let body = decode_body::<B>(&document)?;
    Ok(Opened {
        document,
        verified,
        body,
    })
}

fn decode_envelope<B: SignedBody>(file_bytes: &[u8]) -> Result<SignedDocument, DocumentError> {
    SignedDocument::decode(file_bytes).map_err(|source| DocumentError::DecodeEnvelope {
        expected: B::KIND,
        source,
    })
}

fn decode_body<B: SignedBody>(document: &SignedDocument) -> Result<B, DocumentError> {
    B::decode(document.body()).map_err(|source| DocumentError::DecodeBody {
        kind: B::KIND,
        source,
    })
}

#[cfg(test)]
mod tests;

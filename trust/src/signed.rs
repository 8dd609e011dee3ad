//! The one path every signed document kind is read through.
//!
//! A kind of signed body (the release manifest, the workload manifest, and the control plane's
//! kinds in [`crate::grid`]) implements [`SignedBody`]: its [`DocumentKind`] (so its signature domain
//! tag), its size cap, its canonical encoder and its bounded decoder, which checks every value
//! as it reads, so a body that decodes is valid (`validate` is "would this decode?").
//!
//! [`verify_document`] is the one verification: decode the envelope, require the kind, check the
//! signatures against the signer policy, then decode (and so validate) the body. Documents that
//! name their own signer in the body (a farm its farmer, a placement the contract's owner)
//! implement [`NamedSigner`] and go through [`verify_named`]: the same steps with the policy
//! "the key the body names must sign", which is known only once the body is read, so there the
//! (bounded) body decoding comes before the signature check.

use alloc::string::String;
use alloc::vec::Vec;

use thiserror::Error;

use crate::document::{DocumentKind, SignedDocument, Verified, VerifyError};
use crate::keys::PublicKey;
use crate::limits::DecodeError;
use crate::policy::{PolicyMember, SignerPolicy};

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

/// A body that names the one key that must sign it (the farmer of a farm, the owner of a
/// placement), checked by [`verify_named`].
pub trait NamedSigner: SignedBody {
    /// The signer's role, the member name in the policy built for it (and so in messages).
    const SIGNER_ROLE: &'static str;

    /// The key that must sign this body.
    fn signer(&self) -> PublicKey;

    /// The policy "this body's signer must sign": one required member named after the role.
    fn signer_policy(&self) -> SignerPolicy {
        SignerPolicy {
            threshold: 1,
            members: alloc::vec![PolicyMember {
                name: String::from(Self::SIGNER_ROLE),
                key: self.signer(),
                weight: 1,
                required: true,
            }],
        }
    }
}

/// A document that passed [`verify_document`] or [`verify_named`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<B> {
    /// The signed document as read.
    pub document: SignedDocument,
    /// What the signature check saw (signers, weight, ignored entries).
    pub verified: Verified,
    /// The decoded, valid body.
    pub body: B,
}

/// Why a signed document was refused by [`verify_document`] or [`verify_named`].
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

/// Checks a signed document file whose body names its signer: decodes the envelope, requires
/// kind `B::KIND`, decodes and validates the body, and verifies that the key it names signed
/// it ([`NamedSigner::signer_policy`]). Whether that key may write this document (is it the
/// contract's owner, a stakeholder?) is the caller's next step, with [`crate::grid::rules`].
pub fn verify_named<B: NamedSigner>(file_bytes: &[u8]) -> Result<Opened<B>, DocumentError> {
    let document = decode_envelope::<B>(file_bytes)?;
    if document.kind() != B::KIND {
        return Err(DocumentError::Verify {
            expected: B::KIND,
            source: VerifyError::WrongKind {
                found: document.kind(),
                expected: B::KIND,
            },
        });
    }
    let body = decode_body::<B>(&document)?;
    let verified = document
        .verify(B::KIND, &body.signer_policy())
        .map_err(|source| DocumentError::Verify {
            expected: B::KIND,
            source,
        })?;
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

//! A stakeholder's approval of one version of a contract.
//!
//! Body: format (varint u32, = 1), version (varint u64, ≥ 1: the contract version approved),
//! contract (32 bytes: the contract id), body (32 bytes: BLAKE3 of that version's body),
//! stakeholder (32-byte key). At most 256 bytes.
//!
//! The approval names the version's body digest as well as its number, so it approves exactly
//! the bytes the stakeholder read, and cannot be carried over to another body with that number.

use alloc::vec::Vec;

use super::limits::MAX_APPROVAL_BYTES;
use super::supersession::{Stream, Supersedes, Supersession};
use super::{put_key, read, read_counter, read_digest, read_key, writer, ContractId};
use crate::digest::Digest;
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::DecodeError;
use crate::signed::{NamedSigner, SignedBody};

/// A stakeholder's approval, signed by the stakeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The contract version approved.
    pub version: u64,
    /// The contract.
    pub contract: ContractId,
    /// BLAKE3 of the approved version's body.
    pub body: Digest,
    /// The stakeholder's key.
    pub stakeholder: PublicKey,
}

impl SignedBody for Approval {
    const KIND: DocumentKind = DocumentKind::Approval;
    const MAX_BYTES: usize = MAX_APPROVAL_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.version);
        w.array(self.contract.0.as_bytes());
        w.array(self.body.as_bytes());
        put_key(&mut w, &self.stakeholder);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            Ok(Approval {
                version: read_counter(r, "version")?,
                contract: ContractId(read_digest(r, "contract")?),
                body: read_digest(r, "body")?,
                stakeholder: read_key(r, "stakeholder")?,
            })
        })
    }
}

impl NamedSigner for Approval {
    const SIGNER_ROLE: &'static str = "stakeholder";

    fn signer(&self) -> PublicKey {
        self.stakeholder
    }
}

impl Supersedes for Approval {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Approval {
                contract: self.contract,
                stakeholder: self.stakeholder,
            },
            version: self.version,
        }
    }
}

//! The owner's placement: which node runs a version of a contract.
//!
//! Body: format (varint u32, = 1), sequence (varint u64, ≥ 1: grows with every placement of the
//! contract, so a re-placement after a node fails is newer), contract (32 bytes: the contract
//! id), version (varint u64, ≥ 1: the contract version to run), node (32-byte key), owner
//! (32-byte key), reason (string ≤ 256 bytes, one line, e.g. "node X stopped renewing its
//! lease"). At most 1 KiB.
//!
//! Stakeholders approve what runs; the owner alone decides where, so healing a contract onto
//! another node needs no new approvals ([`super::rules::placement_by_owner`]).

use alloc::string::String;
use alloc::vec::Vec;

use super::limits::{MAX_PLACEMENT_BYTES, MAX_REASON_BYTES};
use super::supersession::{Stream, Supersedes, Supersession};
use super::{
    check_line, checked_text, put_key, read, read_counter, read_digest, read_key, writer,
    ContractId,
};
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::DecodeError;
use crate::signed::{NamedSigner, SignedBody};

/// The node chosen for a contract version, signed by the contract's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Grows with every placement of this contract.
    pub sequence: u64,
    /// The contract.
    pub contract: ContractId,
    /// The contract version to run.
    pub version: u64,
    /// The node that runs it.
    pub node: PublicKey,
    /// The contract's owner, who signs this.
    pub owner: PublicKey,
    /// Why this node (one line, for people and logs).
    pub reason: String,
}

impl SignedBody for Placement {
    const KIND: DocumentKind = DocumentKind::Placement;
    const MAX_BYTES: usize = MAX_PLACEMENT_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.sequence);
        w.array(self.contract.0.as_bytes());
        w.put(&self.version);
        put_key(&mut w, &self.node);
        put_key(&mut w, &self.owner);
        w.text(&self.reason);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            Ok(Placement {
                sequence: read_counter(r, "sequence")?,
                contract: ContractId(read_digest(r, "contract")?),
                version: read_counter(r, "version")?,
                node: read_key(r, "node")?,
                owner: read_key(r, "owner")?,
                reason: checked_text(r, "reason", MAX_REASON_BYTES, check_line)?,
            })
        })
    }
}

impl NamedSigner for Placement {
    const SIGNER_ROLE: &'static str = "owner";

    fn signer(&self) -> PublicKey {
        self.owner
    }
}

impl Supersedes for Placement {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Placement(self.contract),
            version: self.sequence,
        }
    }
}

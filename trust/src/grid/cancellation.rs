//! The owner's cancellation of a contract: nothing of it runs any more.
//!
//! Body: format (varint u32, = 1), version (varint u64, ≥ 1: the latest contract version the
//! owner saw, which this cancels), contract (32 bytes: the contract id), owner (32-byte key),
//! reason (string ≤ 256 bytes, one line). At most 1 KiB.

use alloc::string::String;
use alloc::vec::Vec;

use super::limits::{MAX_CANCELLATION_BYTES, MAX_REASON_BYTES};
use super::supersession::{Stream, Supersedes, Supersession};
use super::{
    check_line, checked_text, put_key, read, read_counter, read_digest, read_key, writer,
    ContractId,
};
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::DecodeError;
use crate::signed::{NamedSigner, SignedBody};

/// A contract's cancellation, signed by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    /// The contract version cancelled (the latest the owner saw).
    pub version: u64,
    /// The contract.
    pub contract: ContractId,
    /// The contract's owner, who signs this.
    pub owner: PublicKey,
    /// Why (one line).
    pub reason: String,
}

impl SignedBody for Cancellation {
    const KIND: DocumentKind = DocumentKind::Cancellation;
    const MAX_BYTES: usize = MAX_CANCELLATION_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.version);
        w.array(self.contract.0.as_bytes());
        put_key(&mut w, &self.owner);
        w.text(&self.reason);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            Ok(Cancellation {
                version: read_counter(r, "version")?,
                contract: ContractId(read_digest(r, "contract")?),
                owner: read_key(r, "owner")?,
                reason: checked_text(r, "reason", MAX_REASON_BYTES, check_line)?,
            })
        })
    }
}

impl NamedSigner for Cancellation {
    const SIGNER_ROLE: &'static str = "owner";

    fn signer(&self) -> PublicKey {
        self.owner
    }
}

impl Supersedes for Cancellation {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Cancellation(self.contract),
            version: self.version,
        }
    }
}

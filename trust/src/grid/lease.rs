//! A node's lease: a heartbeat saying "I am alive until `expires`".
//!
//! Body: format (varint u32, = 1), sequence (varint u64, ≥ 1), node (32-byte key), expires
//! (varint u64, seconds since the Unix epoch). At most 128 bytes.

use alloc::vec::Vec;

use super::limits::MAX_LEASE_BYTES;
use super::supersession::{Stream, Supersedes, Supersession};
use super::{put_key, read, read_counter, read_key, writer};
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::DecodeError;
use crate::signed::{NamedSigner, SignedBody};

/// A node's heartbeat, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Grows with every lease the node sends.
    pub sequence: u64,
    /// The node's key.
    pub node: PublicKey,
    /// When the lease runs out, in seconds since the Unix epoch (the notary's clock decides).
    pub expires: u64,
}

impl SignedBody for Lease {
    const KIND: DocumentKind = DocumentKind::Lease;
    const MAX_BYTES: usize = MAX_LEASE_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.sequence);
        put_key(&mut w, &self.node);
        w.put(&self.expires);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            Ok(Lease {
                sequence: read_counter(r, "sequence")?,
                node: read_key(r, "node")?,
                expires: r.take("expires")?,
            })
        })
    }
}

impl NamedSigner for Lease {
    const SIGNER_ROLE: &'static str = "node";

    fn signer(&self) -> PublicKey {
        self.node
    }
}

impl Supersedes for Lease {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Lease(self.node),
            version: self.sequence,
        }
    }
}

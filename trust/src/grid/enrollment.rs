//! A farmer's enrollment of a node: "this node key is (or is no longer) one of my farm's".
//!
//! A node registration names its farm, but anyone can name any farm; the node counts toward the
//! farm's capacity (and may be placed on) only while the farmer's latest enrollment of that node
//! says `enrolled`. One stream per (farmer, node) pair, so vouching for a node never rewrites
//! the farm's record, and withdrawing one is a newer enrollment with `enrolled = false`.
//!
//! Body: format (varint u32, = 1), sequence (varint u64, ≥ 1), farmer (32-byte key), node
//! (32-byte key), enrolled (one byte, 0 or 1). At most 128 bytes.

use alloc::vec::Vec;

use super::limits::MAX_ENROLLMENT_BYTES;
use super::supersession::{Stream, Supersedes, Supersession};
use super::{invalid, put_key, read, read_counter, read_key, writer};
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::DecodeError;
use crate::signed::{NamedSigner, SignedBody};

/// A farmer's word on one node, signed by the farmer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// Grows with every enrollment of this node by this farmer.
    pub sequence: u64,
    /// The farmer's key (the farm's identity).
    pub farmer: PublicKey,
    /// The node's key.
    pub node: PublicKey,
    /// Whether the node is vouched for (`false` withdraws an earlier enrollment).
    pub enrolled: bool,
}

impl SignedBody for Enrollment {
    const KIND: DocumentKind = DocumentKind::Enrollment;
    const MAX_BYTES: usize = MAX_ENROLLMENT_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.sequence);
        put_key(&mut w, &self.farmer);
        put_key(&mut w, &self.node);
        w.array(&[u8::from(self.enrolled)]);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            let sequence = read_counter(r, "sequence")?;
            let farmer = read_key(r, "farmer")?;
            let node = read_key(r, "node")?;
            let at = r.position();
            let enrolled = match r.array::<1>("enrolled")? {
                [0] => false,
                [1] => true,
                _ => return Err(invalid("enrolled", at, "must be 0 or 1")),
            };
            Ok(Enrollment {
                sequence,
                farmer,
                node,
                enrolled,
            })
        })
    }
}

impl NamedSigner for Enrollment {
    const SIGNER_ROLE: &'static str = "farmer";

    fn signer(&self) -> PublicKey {
        self.farmer
    }
}

impl Supersedes for Enrollment {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Enrollment {
                farmer: self.farmer,
                node: self.node,
            },
            version: self.sequence,
        }
    }
}

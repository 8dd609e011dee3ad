//! A farm: the farmer's key and a name. The farm's id is the farmer's key.
//!
//! Body: format (varint u32, = 1), version (varint u64, ≥ 1), farmer (32-byte key), name
//! (string, 1 to 64 bytes, one line, no surrounding spaces). At most 512 bytes.

use alloc::string::String;
use alloc::vec::Vec;

use super::limits::{MAX_FARM_BYTES, MAX_FARM_NAME_BYTES};
use super::supersession::{Stream, Supersedes, Supersession};
use super::{check_label, checked_text, put_key, read, read_counter, read_key, writer};
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::DecodeError;
use crate::signed::{NamedSigner, SignedBody};

/// A farm, signed by its farmer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Farm {
    /// Version of this farm's record, growing with each change.
    pub version: u64,
    /// The farmer's key: the farm's id, and the key that signs this document.
    pub farmer: PublicKey,
    /// A name for people.
    pub name: String,
}

impl SignedBody for Farm {
    const KIND: DocumentKind = DocumentKind::Farm;
    const MAX_BYTES: usize = MAX_FARM_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.version);
        put_key(&mut w, &self.farmer);
        w.text(&self.name);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            Ok(Farm {
                version: read_counter(r, "version")?,
                farmer: read_key(r, "farmer")?,
                name: checked_text(r, "name", MAX_FARM_NAME_BYTES, check_label)?,
            })
        })
    }
}

impl NamedSigner for Farm {
    const SIGNER_ROLE: &'static str = "farmer";

    fn signer(&self) -> PublicKey {
        self.farmer
    }
}

impl Supersedes for Farm {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Farm(self.farmer),
            version: self.version,
        }
    }
}

//! The control plane's signed documents: what farmers, nodes, contract owners and stakeholders
//! write to the notary, and the rules all of them (notary, agent, node) apply to them.
//!
//! One file per kind; each body is canonical postcard, format version first, signed under its
//! own domain tag ([`crate::DocumentKind`]), decoded with bounded sizes ([`limits`]) and checked value
//! by value while decoding, so a body that decodes is valid:
//!
//! | kind | signed by | supersession stream, counter |
//! |---|---|---|
//! | [`Farm`] | the farmer | farmer key, `version` |
//! | [`NodeRegistration`] | the node | node key, `sequence` |
//! | [`Contract`] | the owner | contract id, `version` (and `supersedes` chains the bodies) |
//! | [`Approval`] | a stakeholder | contract id and stakeholder, approved contract `version` |
//! | [`Placement`] | the contract's owner | contract id, `sequence` |
//! | [`Cancellation`] | the contract's owner | contract id, cancelled contract `version` |
//! | [`StatusReport`] | the node | node key and contract id, `sequence` |
//! | [`Lease`] | the node | node key, `sequence` |
//! | [`Enrollment`] | the farmer | farmer key and node key, `sequence` |
//!
//! Every body names its signer, so each is read with [`crate::verify_named`], which requires that
//! key's signature. Whether the signer may write it (is the placement's signer the contract's
//! owner? is the approver a stakeholder?) and whether it is newer than what the notary holds are
//! the pure helpers of [`rules`] and [`supersession`], which the notary, the agent and the node
//! all call, so they cannot drift apart.

use core::fmt;

use crate::digest::Digest;
use crate::keys::PublicKey;
use crate::limits::{DecodeError, Reader, Writer};
use crate::signed::SignedBody;

pub mod approval;
pub mod cancellation;
pub mod contract;
pub mod enrollment;
pub mod farm;
pub mod lease;
pub mod limits;
pub mod node;
pub mod placement;
pub mod rules;
pub mod sealed;
pub mod status;
pub mod supersession;

pub use approval::Approval;
pub use cancellation::Cancellation;
pub use contract::{
    Constraints, Contract, ContractWorkload, Egress, Endpoint, Previous, VolumeClaim,
};
pub use enrollment::Enrollment;
pub use farm::Farm;
pub use lease::Lease;
pub use node::{Capacity, Disk, Nic, NodeRegistration};
pub use placement::Placement;
pub use rules::{
    approvals_satisfy, cancellation_by_owner, placement_by_owner, placement_fits, ApprovalTally,
    Resources, RuleError,
};
pub use sealed::{SealError, TailContext};
pub use status::{StatusReport, WorkloadState, WorkloadStatus};
pub use supersession::{
    check_successor, is_newer, Stream, SupersedeError, Supersedes, Supersession,
};

/// The body format version of every control-plane kind in this build.
pub const FORMAT: u32 = 1;

/// A contract's identity: the BLAKE3 digest of the canonical body of its first version
/// ([`Contract::id`]). It never changes across versions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContractId(pub Digest);

impl ContractId {
    /// The id of the contract whose first version's canonical body is `first_version_body`.
    pub fn of_first_version(first_version_body: &[u8]) -> ContractId {
        ContractId(Digest::of(first_version_body))
    }
}

impl fmt::Display for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContractId({})", self.0)
    }
}

/// Starts a body: the format version.
pub(crate) fn writer() -> Writer {
    let mut w = Writer::default();
    w.put(&FORMAT);
    w
}

/// Reads a body of kind `B` with `fields`: size cap first, then the format version, then the
/// fields, then nothing.
pub(crate) fn read<B: SignedBody>(
    bytes: &[u8],
    fields: impl FnOnce(&mut Reader<'_>) -> Result<B, DecodeError>,
) -> Result<B, DecodeError> {
    let what = B::KIND.name();
    let mut r = Reader::new(what, bytes, B::MAX_BYTES, 0)?;
    let format: u32 = r.take("format")?;
    if format != FORMAT {
        return Err(DecodeError::UnsupportedFormat {
            what,
            found: format,
            supported: FORMAT,
        });
    }
    let body = fields(&mut r)?;
    r.finish(what)?;
    Ok(body)
}

pub(crate) use crate::workload::{checked_text, invalid};

/// Reads a 32-byte ed25519 public key, refusing non-points and weak keys.
pub(crate) fn read_key(r: &mut Reader<'_>, field: &'static str) -> Result<PublicKey, DecodeError> {
    let at = r.position();
    PublicKey::from_bytes(&r.array::<32>(field)?)
        .map_err(|_| invalid(field, at, "not a usable ed25519 public key"))
}

pub(crate) fn read_digest(r: &mut Reader<'_>, field: &'static str) -> Result<Digest, DecodeError> {
    Ok(Digest(r.array::<32>(field)?))
}

/// A version or sequence counter: at least 1, so 0 can mean "nothing yet".
pub(crate) fn read_counter(r: &mut Reader<'_>, field: &'static str) -> Result<u64, DecodeError> {
    let at = r.position();
    let n: u64 = r.take(field)?;
    if n == 0 {
        return Err(invalid(field, at, "must be at least 1"));
    }
    Ok(n)
}

/// One line of free text (a reason): no control characters, so it cannot forge log lines.
pub(crate) fn check_line(text: &str) -> Result<(), &'static str> {
    if text.chars().any(char::is_control) {
        return Err("contains a control character (one line of text)");
    }
    Ok(())
}

/// A human label (a farm name): non-empty, one line, no surrounding spaces.
pub(crate) fn check_label(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("is empty");
    }
    if text.trim() != text {
        return Err("starts or ends with white space");
    }
    check_line(text)
}

/// Writes the key's 32 raw bytes.
pub(crate) fn put_key(w: &mut Writer, key: &PublicKey) {
    w.array(key.as_bytes());
}

#[cfg(test)]
mod tests;

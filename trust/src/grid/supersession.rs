//! Which documents replace which: every control-plane document belongs to one stream and carries
//! a counter that grows along it, so the notary keeps the newest per stream and refuses anything
//! not newer ([`is_newer`]). A contract's versions also chain by body digest and keep their owner
//! ([`check_successor`]).

use alloc::vec::Vec;

use thiserror::Error;

use super::contract::Contract;
use super::ContractId;
use crate::document::DocumentKind;
use crate::keys::PublicKey;

/// The stream a document belongs to: its kind and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// A farm's record, by farmer key.
    Farm(PublicKey),
    /// A node's registration, by node key.
    Node(PublicKey),
    /// A contract's versions, by contract id.
    Contract(ContractId),
    /// One stakeholder's approvals of one contract.
    Approval {
        /// The contract.
        contract: ContractId,
        /// The stakeholder.
        stakeholder: PublicKey,
    },
    /// A contract's placements.
    Placement(ContractId),
    /// A contract's cancellation.
    Cancellation(ContractId),
    /// One node's reports on one contract.
    Status {
        /// The node.
        node: PublicKey,
        /// The contract.
        contract: ContractId,
    },
    /// A node's leases.
    Lease(PublicKey),
    /// A farmer's word on one node.
    Enrollment {
        /// The farmer.
        farmer: PublicKey,
        /// The node.
        node: PublicKey,
    },
}

impl Stream {
    /// The kind of the documents of this stream.
    pub fn kind(&self) -> DocumentKind {
        match self {
            Stream::Farm(_) => DocumentKind::Farm,
            Stream::Node(_) => DocumentKind::NodeRegistration,
            Stream::Contract(_) => DocumentKind::Contract,
            Stream::Approval { .. } => DocumentKind::Approval,
            Stream::Placement(_) => DocumentKind::Placement,
            Stream::Cancellation(_) => DocumentKind::Cancellation,
            Stream::Status { .. } => DocumentKind::StatusReport,
            Stream::Lease(_) => DocumentKind::Lease,
            Stream::Enrollment { .. } => DocumentKind::Enrollment,
        }
    }

    /// A storage key for the stream: the kind code, then the 32-byte subject(s). Distinct
    /// streams give distinct keys, and the keys of one kind have one length.
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut out = alloc::vec![self.kind().code()];
        match self {
            Stream::Farm(key) | Stream::Node(key) | Stream::Lease(key) => {
                out.extend_from_slice(key.as_bytes());
            }
            Stream::Contract(id) | Stream::Placement(id) | Stream::Cancellation(id) => {
                out.extend_from_slice(id.0.as_bytes());
            }
            Stream::Approval {
                contract,
                stakeholder,
            } => {
                out.extend_from_slice(contract.0.as_bytes());
                out.extend_from_slice(stakeholder.as_bytes());
            }
            Stream::Status { node, contract } => {
                out.extend_from_slice(node.as_bytes());
                out.extend_from_slice(contract.0.as_bytes());
            }
            Stream::Enrollment { farmer, node } => {
                out.extend_from_slice(farmer.as_bytes());
                out.extend_from_slice(node.as_bytes());
            }
        }
        out
    }
}

/// A document's place in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Supersession {
    /// The stream.
    pub stream: Stream,
    /// The version or sequence, growing along the stream.
    pub version: u64,
}

/// A control-plane document's stream and counter.
pub trait Supersedes {
    /// Where this document sits.
    fn supersession(&self) -> Supersession;
}

/// Whether `next` replaces `prev`: the same stream, and a strictly greater counter (an equal
/// counter is a replay or a fork, never newer).
pub fn is_newer(prev: &Supersession, next: &Supersession) -> bool {
    prev.stream == next.stream && next.version > prev.version
}

/// Why a contract version does not follow the one the notary holds.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SupersedeError {
    /// The new version is of another contract.
    #[error("contract version is of contract {found}, not {expected}")]
    OtherContract {
        /// The id of the contract held.
        expected: ContractId,
        /// The id the new version names.
        found: ContractId,
    },
    /// The new version's counter is not greater.
    #[error("contract version {found} is not newer than version {current}")]
    NotNewer {
        /// Version held.
        current: u64,
        /// Version offered.
        found: u64,
    },
    /// The new version does not name the held version's body as the one it supersedes.
    #[error("contract version {found} supersedes another body than version {current}'s")]
    Fork {
        /// Version held.
        current: u64,
        /// Version offered.
        found: u64,
    },
    /// The new version has another owner: only the owner changes a contract, and not its owner.
    #[error("contract version {found} has another owner ({owner}) than the contract ({expected})")]
    OtherOwner {
        /// Version offered.
        found: u64,
        /// The contract's owner, shortened.
        expected: alloc::string::String,
        /// The new version's owner, shortened.
        owner: alloc::string::String,
    },
}

/// Checks that `next` may replace `current` as the head of a contract: the same contract, a
/// greater version, `supersedes` naming `current`'s body (no forks, no skipping a version the
/// notary holds), and the same owner.
pub fn check_successor(current: &Contract, next: &Contract) -> Result<(), SupersedeError> {
    let expected = current.id();
    let found = next.id();
    if expected != found {
        return Err(SupersedeError::OtherContract { expected, found });
    }
    if next.version <= current.version {
        return Err(SupersedeError::NotNewer {
            current: current.version,
            found: next.version,
        });
    }
    if next.supersedes.map(|p| p.body) != Some(current.body_digest()) {
        return Err(SupersedeError::Fork {
            current: current.version,
            found: next.version,
        });
    }
    if next.owner != current.owner {
        return Err(SupersedeError::OtherOwner {
            found: next.version,
            expected: current.owner.short(),
            owner: next.owner.short(),
        });
    }
    Ok(())
}

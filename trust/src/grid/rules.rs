//! The rules every party applies to verified control-plane documents, as pure functions, so the
//! notary (before it logs a document), the owner's agent (before it writes one) and the node
//! (before it runs anything) decide the same way.
//!
//! The documents given here must already have been verified ([`crate::verify_named`]), so each
//! is signed by the key it names; these rules decide whether that key may say what it says.

use alloc::string::String;
use alloc::vec::Vec;

use thiserror::Error;

use super::approval::Approval;
use super::cancellation::Cancellation;
use super::contract::Contract;
use super::node::NodeRegistration;
use super::placement::Placement;
use super::ContractId;
use crate::policy::{Counted, PolicyError};

/// Why a rule refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// The contract's stakeholder policy is unusable.
    #[error("the contract's stakeholder policy is invalid")]
    Stakeholders(#[source] PolicyError),
    /// Required stakeholders have not approved this version.
    #[error("required stakeholders {} have not approved", missing.join(", "))]
    MissingApprovals {
        /// Names of the required stakeholders without a matching approval.
        missing: Vec<String>,
    },
    /// The approvals do not weigh enough.
    #[error("approved weight {weight} is below threshold {threshold}")]
    BelowThreshold {
        /// Summed weight of the distinct stakeholders who approved.
        weight: u64,
        /// The policy's threshold.
        threshold: u32,
    },
    /// The node's farm is not one the contract allows.
    #[error("the node's farm {farm} is not one the contract allows")]
    FarmNotAllowed {
        /// The farm (farmer key, shortened).
        farm: String,
    },
    /// The node has less than the contract asks of any node it runs on.
    #[error("the node has {have} {what}, the contract needs a node with at least {need}")]
    NodeTooSmall {
        /// "CPUs" or "MiB of memory".
        what: &'static str,
        /// What the contract asks.
        need: u64,
        /// What the node has.
        have: u64,
    },
    /// The node has no room left for the contract's workloads.
    #[error("the node has {free} {what} free, the contract's workloads need {need}")]
    NoRoom {
        /// "CPUs", "MiB of memory" or "MiB of disk".
        what: &'static str,
        /// What the workloads need together.
        need: u64,
        /// What is left after the workloads already placed.
        free: u64,
    },
    /// The document is signed by someone else than the contract's owner.
    #[error("{what} is by {signer}, not by the contract's owner {owner}")]
    NotTheOwner {
        /// "placement" or "cancellation".
        what: &'static str,
        /// The key that signed it, shortened.
        signer: String,
        /// The owner, shortened.
        owner: String,
    },
    /// The document is about another contract.
    #[error("{what} is for contract {found}, not {expected}")]
    OtherContract {
        /// "placement" or "cancellation".
        what: &'static str,
        /// The contract's id.
        expected: ContractId,
        /// The id the document names.
        found: ContractId,
    },
    /// The document is about another version of the contract.
    #[error("{what} is for contract version {found}, not {expected}")]
    OtherVersion {
        /// "placement".
        what: &'static str,
        /// The contract's version.
        expected: u64,
        /// The version the document names.
        found: u64,
    },
}

/// What counted toward a contract version's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalTally {
    /// Summed weight of the distinct stakeholders who approved this version.
    pub weight: u64,
    /// Names of those stakeholders, in policy order.
    pub approvers: Vec<String>,
    /// Approvals of another contract, version or body (they count for nothing).
    pub other_version: usize,
    /// Approvals by keys that are not stakeholders (they count for nothing).
    pub unknown: usize,
    /// Repeated approvals by one stakeholder (they count once).
    pub duplicates: usize,
}

/// Whether `approvals` satisfy `contract`'s stakeholder policy for this very version: every
/// required stakeholder approved it, and the distinct approvers weigh at least the threshold.
/// Only approvals naming this contract's id, version and body digest count; unknown keys and
/// repeats add nothing; a stakeholder who is not required and did not approve fails nothing.
/// Counting is [`crate::policy::Tally`], the same as signature verification.
pub fn approvals_satisfy(
    contract: &Contract,
    approvals: &[Approval],
) -> Result<ApprovalTally, RuleError> {
    let policy = &contract.stakeholders;
    policy.validate().map_err(RuleError::Stakeholders)?;
    let (id, body) = (contract.id(), contract.body_digest());
    let mut tally = policy.tally();
    let (mut other_version, mut unknown, mut duplicates) = (0, 0, 0);
    for approval in approvals {
        if approval.contract != id || approval.version != contract.version || approval.body != body
        {
            other_version += 1;
            continue;
        }
        match tally.add(&approval.stakeholder) {
            Counted::Added => {}
            Counted::Duplicate => duplicates += 1,
            Counted::Unknown => unknown += 1,
        }
    }
    let missing = tally.missing_required();
    if !missing.is_empty() {
        return Err(RuleError::MissingApprovals { missing });
    }
    if !tally.is_met() {
        return Err(RuleError::BelowThreshold {
            weight: tally.weight(),
            threshold: policy.threshold,
        });
    }
    Ok(ApprovalTally {
        weight: tally.weight(),
        approvers: tally.counted_names(),
        other_version,
        unknown,
        duplicates,
    })
}

/// Resources counted against a node's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// vCPUs (counted one for one against the node's CPUs).
    pub vcpus: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Volume space in MiB.
    pub disk_mib: u64,
}

impl Resources {
    /// The sum, saturating (a saturated sum never fits).
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            vcpus: self.vcpus.saturating_add(other.vcpus),
            memory_mib: self.memory_mib.saturating_add(other.memory_mib),
            disk_mib: self.disk_mib.saturating_add(other.disk_mib),
        }
    }
}

/// Whether `contract` may be placed on `node`, which already runs workloads needing `placed`:
/// the node's farm is allowed, the node meets the contract's minimums, and the contract's
/// workloads fit in what is left (CPUs, memory, disk; no overcommit).
pub fn placement_fits(
    contract: &Contract,
    node: &NodeRegistration,
    placed: Resources,
) -> Result<(), RuleError> {
    let c = &contract.constraints;
    if !c.farms.is_empty() && !c.farms.contains(&node.farm) {
        return Err(RuleError::FarmNotAllowed {
            farm: node.farm.short(),
        });
    }
    let capacity = &node.capacity;
    let cpus = u64::from(capacity.cpus);
    if cpus < u64::from(c.min_cpus) {
        return Err(RuleError::NodeTooSmall {
            what: "CPUs",
            need: u64::from(c.min_cpus),
            have: cpus,
        });
    }
    if capacity.memory_mib < c.min_memory_mib {
        return Err(RuleError::NodeTooSmall {
            what: "MiB of memory",
            need: c.min_memory_mib,
            have: capacity.memory_mib,
        });
    }
    let need = contract.resources();
    for (what, need, total, used) in [
        ("CPUs", need.vcpus, cpus, placed.vcpus),
        (
            "MiB of memory",
            need.memory_mib,
            capacity.memory_mib,
            placed.memory_mib,
        ),
        (
            "MiB of disk",
            need.disk_mib,
            capacity.disk_mib(),
            placed.disk_mib,
        ),
    ] {
        let free = total.saturating_sub(used);
        if need > free {
            return Err(RuleError::NoRoom { what, need, free });
        }
    }
    Ok(())
}

/// Whether `placement` is the owner's word on this contract version: it names the contract's
/// id and version, and its signer (the key it names, verified) is the contract's owner.
pub fn placement_by_owner(contract: &Contract, placement: &Placement) -> Result<(), RuleError> {
    by_owner("placement", contract, placement.contract, placement.owner)?;
    if placement.version != contract.version {
        return Err(RuleError::OtherVersion {
            what: "placement",
            expected: contract.version,
            found: placement.version,
        });
    }
    Ok(())
}

/// Whether `cancellation` is the owner's word on this contract (any version of it).
pub fn cancellation_by_owner(
    contract: &Contract,
    cancellation: &Cancellation,
) -> Result<(), RuleError> {
    by_owner(
        "cancellation",
        contract,
        cancellation.contract,
        cancellation.owner,
    )
}

fn by_owner(
    what: &'static str,
    contract: &Contract,
    found: ContractId,
    signer: crate::keys::PublicKey,
) -> Result<(), RuleError> {
    let expected = contract.id();
    if found != expected {
        return Err(RuleError::OtherContract {
            what,
            expected,
            found,
        });
    }
    if signer != contract.owner {
        return Err(RuleError::NotTheOwner {
            what,
            signer: signer.short(),
            owner: contract.owner.short(),
        });
    }
    Ok(())
}

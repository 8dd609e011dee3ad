//! What the node decides about one contract, before anything of it runs: a pure function of the
//! verified documents ([`ContractView`]), the node's own registration and what it already runs.
//! The rules are `trust::grid`'s, the same the notary and the agent apply, so a notary that let
//! a bad document through (or lied) is still refused here.

use trust::grid::{
    approvals_satisfy, placement_by_owner, placement_fits, Contract, NodeRegistration, Placement,
    Resources,
};
use trust::PublicKey;

use crate::documents::ContractView;

/// The verdict on a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No placement names this node (none yet, or the latest moved it elsewhere).
    NotHere,
    /// The owner cancelled it.
    Cancelled,
    /// It runs here already at this version.
    Keep,
    /// Run this version (a first start, or a newer version to replace the running one).
    Run {
        /// The version to run.
        contract: Box<Contract>,
        /// The placement that says so.
        placement: Box<Placement>,
    },
    /// The placement names this node but may not run; `reason` is one line.
    Refuse {
        /// The version the placement names.
        version: u64,
        /// Why.
        reason: String,
    },
}

/// What the node knows of itself when judging.
#[derive(Debug, Clone)]
pub struct NodeFacts<'a> {
    /// The node's key.
    pub node: &'a PublicKey,
    /// Its registration as it stands (farm, capacity).
    pub registration: &'a NodeRegistration,
    /// What the node's other contracts use.
    pub others: Resources,
    /// The version of this contract the node runs now, if any.
    pub running: Option<u64>,
}

/// Judges `view` for this node. Order: where, cancelled, which version, whose word, approvals,
/// newer than what runs, fits.
pub fn judge(view: &ContractView, facts: &NodeFacts<'_>) -> Verdict {
    let Some(placement) = &view.placement else {
        return Verdict::NotHere;
    };
    if placement.node != *facts.node {
        return Verdict::NotHere;
    }
    if view.cancellation.is_some() {
        return Verdict::Cancelled;
    }
    let refuse = |reason: String| Verdict::Refuse {
        version: placement.version,
        reason,
    };
    let Some(contract) = view.versions.get(&placement.version) else {
        return refuse(format!(
            "contract version {} is not in the log",
            placement.version
        ));
    };
    if let Err(e) = placement_by_owner(contract, placement) {
        return refuse(e.to_string());
    }
    if let Err(e) = approvals_satisfy(contract, &view.approvals) {
        return refuse(format!("stakeholder policy not met: {e}"));
    }
    match facts.running {
        Some(running) if running == placement.version => return Verdict::Keep,
        Some(running) if running > placement.version => {
            return refuse(format!(
                "version {} is older than the running version {running}",
                placement.version
            ))
        }
        _ => {}
    }
    if let Err(e) = placement_fits(contract, facts.registration, facts.others) {
        return refuse(e.to_string());
    }
    Verdict::Run {
        contract: Box::new(contract.clone()),
        placement: Box::new(placement.clone()),
    }
}

#[cfg(test)]
mod tests;

//! The owner's placement decisions, as pure functions the online commands (`deploy`, the
//! self-healing `agent`) call with what they read from the notary:
//!
//! - [`choose_node`]: which live node a contract goes to, or why none fits (every node's reason);
//! - [`heal`]: given the contract's current placement, its node's lease and its latest status
//!   report, whether to leave it or to place it again, and why;
//! - [`next_placement`]: the placement document that follows the previous one.
//!
//! The fit itself is `trust`'s rule ([`placement_fits`]), the same the notary and the node apply.
//! A contract has one placement stream whose sequence grows, so a new placement supersedes the
//! old one: healing never leaves two live copies of a contract that asks for one.

use trust::grid::limits::MAX_REASON_BYTES;
use trust::grid::rules::{placement_fits, Resources, RuleError};
use trust::grid::{Contract, NodeRegistration, Placement, StatusReport, WorkloadState};
use trust::PublicKey;

/// A node as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its latest registration (verified).
    pub registration: NodeRegistration,
    /// When its latest lease runs out (seconds since the epoch); `None` without a lease.
    pub lease_expires: Option<u64>,
    /// What the workloads already placed there need (other contracts).
    pub placed: Resources,
}

impl Candidate {
    /// Whether the node's lease runs past `now`.
    pub fn is_live(&self, now: u64) -> bool {
        self.lease_expires.is_some_and(|t| t > now)
    }

    fn free_after(&self, need: Resources) -> (u64, u64) {
        let c = &self.registration.capacity;
        let used = self.placed.plus(need);
        (
            c.memory_mib.saturating_sub(used.memory_mib),
            u64::from(c.cpus).saturating_sub(used.vcpus),
        )
    }
}

/// Why no node was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoFit {
    /// No node (other than the one to avoid) has a current lease.
    #[error("no live node to place it on ({registered} registered; a node is live while its lease runs)")]
    NoLiveNode {
        /// Nodes in the directory.
        registered: usize,
    },
    /// Live nodes exist, none fits.
    #[error("no live node fits: {}", reasons(.0))]
    NoneFits(Vec<(String, RuleError)>),
}

fn reasons(list: &[(String, RuleError)]) -> String {
    list.iter()
        .map(|(node, e)| format!("{node}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Picks the live node `contract` fits on best, avoiding `avoid` (a node that just failed it):
/// the one with the most memory left after placing it, then the most CPUs left, then the
/// lowest key (so the choice is deterministic). When none fits, every live node's reason.
pub fn choose_node<'a>(
    contract: &Contract,
    candidates: &'a [Candidate],
    now: u64,
    avoid: Option<&PublicKey>,
) -> Result<&'a Candidate, NoFit> {
    let need = contract.resources();
    let mut unfit = Vec::new();
    let mut best: Option<&Candidate> = None;
    let mut considered = 0;
    for c in candidates.iter().filter(|c| c.is_live(now)) {
        let node = &c.registration.node;
        if avoid == Some(node) {
            continue;
        }
        considered += 1;
        if let Err(e) = placement_fits(contract, &c.registration, c.placed) {
            unfit.push((node.short(), e));
            continue;
        }
        let better = best.is_none_or(|b| {
            let (key_b, key_c) = (b.registration.node, *node);
            (c.free_after(need), std::cmp::Reverse(key_c))
                > (b.free_after(need), std::cmp::Reverse(key_b))
        });
        if better {
            best = Some(c);
        }
    }
    match best {
        Some(c) => Ok(c),
        None if considered == 0 => Err(NoFit::NoLiveNode {
            registered: candidates.len(),
        }),
        None => Err(NoFit::NoneFits(unfit)),
    }
}

/// What the owner's agent observed about one contract.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Whether the owner cancelled it.
    pub cancelled: bool,
    /// Its current placement, if any.
    pub placement: Option<&'a Placement>,
    /// When the placed node's lease runs out, if it has one.
    pub lease_expires: Option<u64>,
    /// The placed node's latest status report on the contract, if any.
    pub status: Option<&'a StatusReport>,
}

/// How patient healing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealPolicy {
    /// Seconds past a lease's expiry before its node counts as gone.
    pub grace_secs: u64,
    /// Restarts after which a failing workload counts as failed on that node.
    pub restart_limit: u32,
}

/// What to do about a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: it is cancelled.
    Idle,
    /// Leave it where it is.
    Keep,
    /// Place it (again), on a node other than `avoid`, and record `reason` in the placement.
    Place {
        /// The node that failed it, not to be chosen again now.
        avoid: Option<PublicKey>,
        /// Why (one line, recorded in the placement).
        reason: String,
    },
}

/// The self-healing decision for `contract` at `now` (seconds since the epoch).
pub fn heal(contract: &Contract, seen: &Observed<'_>, now: u64, policy: HealPolicy) -> Action {
    if seen.cancelled {
        return Action::Idle;
    }
    let Some(placement) = seen.placement else {
        return Action::Place {
            avoid: None,
            reason: "not placed yet".into(),
        };
    };
    if placement.version != contract.version {
        return Action::Place {
            avoid: None,
            reason: format!(
                "version {} is not placed (the placement runs version {})",
                contract.version, placement.version
            ),
        };
    }
    let node = placement.node;
    let replace = |reason: String| Action::Place {
        avoid: Some(node),
        reason,
    };
    match seen.lease_expires {
        None => return replace(format!("node {} has no lease", node.short())),
        Some(expires) if expires.saturating_add(policy.grace_secs) <= now => {
            return replace(format!(
                "node {} stopped renewing its lease ({} s ago, grace {} s)",
                node.short(),
                now - expires,
                policy.grace_secs
            ));
        }
        Some(_) => {}
    }
    let Some(status) = seen.status.filter(|s| {
        s.node == node && s.contract == placement.contract && s.version == placement.version
    }) else {
        return Action::Keep;
    };
    for w in &status.workloads {
        let failing = matches!(w.state, WorkloadState::Restarting | WorkloadState::Exited)
            && w.exit_code.is_some_and(|c| c != 0);
        if w.state == WorkloadState::Refused {
            return replace(format!(
                "node {} refused workload {}: {}",
                node.short(),
                w.name,
                w.reason
            ));
        }
        if failing && w.restarts >= policy.restart_limit {
            return replace(format!(
                "workload {} failed on node {} after {} restarts (exit code {})",
                w.name,
                node.short(),
                w.restarts,
                w.exit_code.unwrap_or_default()
            ));
        }
    }
    Action::Keep
}

/// The owner's next placement of `contract` on `node`: the sequence after `previous`'s, the
/// reason made one line of at most 256 bytes (control characters become spaces).
pub fn next_placement(
    contract: &Contract,
    previous: Option<&Placement>,
    node: PublicKey,
    reason: &str,
) -> Placement {
    let mut line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut end = line.len().min(MAX_REASON_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    Placement {
        sequence: previous.map_or(1, |p| p.sequence.saturating_add(1)),
        contract: contract.id(),
        version: contract.version,
        node,
        owner: contract.owner,
        reason: line,
    }
}

#[cfg(test)]
mod tests;

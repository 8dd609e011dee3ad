//! The directory: what the log says about farms, nodes and contracts right now, as JSON for
//! `GET /v1/nodes`, `/v1/farms`, `/v1/contracts…` and as the data of the explorer page.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use trust::grid::{
    approvals_satisfy, Contract, ContractId, Farm, NodeRegistration, Resources, StatusReport,
};
use trust::{DocumentKind, PublicKey};

use crate::admission::LogView;
use crate::grid::{self, kind_key, owner_key};
use crate::store::{StoreError, StoredLease};

fn key_hex(key: &PublicKey) -> String {
    hex::encode(key.as_bytes())
}

/// One node as the directory shows it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its latest registration.
    pub registration: NodeRegistration,
    /// Whether its farm's farmer vouches for it (and the farm is registered).
    pub approved: bool,
    /// What the contracts placed on it need together.
    pub used: Resources,
    /// Its latest lease.
    pub lease: Option<StoredLease>,
    /// Whether that lease runs past now.
    pub live: bool,
}

impl NodeInfo {
    /// The JSON form.
    pub fn to_json(&self) -> Value {
        let r = &self.registration;
        json!({
            "key": key_hex(&r.node),
            "farm": key_hex(&r.farm),
            "approved": self.approved,
            "capacity": {
                "cpus": r.capacity.cpus,
                "memory_mib": r.capacity.memory_mib,
                "disk_mib": r.capacity.disk_mib(),
            },
            "used": resources_json(self.used),
            "release_version": r.release_version,
            "last_lease": self.lease.as_ref().map(|l| json!({"sequence": l.sequence, "expires": l.expires})),
            "live": self.live,
        })
    }
}

fn resources_json(r: Resources) -> Value {
    json!({"cpus": r.vcpus, "memory_mib": r.memory_mib, "disk_mib": r.disk_mib})
}

/// Distinct keys (by `pick`) of the bodies of kind `B`, in first-seen order.
fn subjects<B: trust::SignedBody, K: Ord + Copy>(
    log: &dyn LogView,
    kind: DocumentKind,
    pick: impl Fn(&B) -> K,
) -> Result<Vec<K>, StoreError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (_, body) in grid::all::<B>(log, &kind_key(kind))? {
        let k = pick(&body);
        if seen.insert(k) {
            out.push(k);
        }
    }
    Ok(out)
}

/// Every registered node, with `now` deciding liveness.
pub fn nodes(log: &dyn LogView, now: u64) -> Result<Vec<NodeInfo>, StoreError> {
    let mut out = Vec::new();
    for key in subjects::<NodeRegistration, _>(log, DocumentKind::NodeRegistration, |n| n.node)? {
        let Some(registration) = grid::registration(log, &key)? else {
            continue;
        };
        let approved = grid::farm(log, &registration.farm)?.is_some()
            && grid::enrolled(log, &registration.farm, &key)?;
        let used = grid::used(log, &key, None)?;
        let lease = log.lease(key.as_bytes())?;
        let live = lease.as_ref().is_some_and(|l| l.expires > now);
        out.push(NodeInfo {
            registration,
            approved,
            used,
            lease,
            live,
        });
    }
    Ok(out)
}

/// Every registered farm, with its approved nodes' capacity.
pub fn farms(log: &dyn LogView, nodes: &[NodeInfo]) -> Result<Vec<(Farm, Value)>, StoreError> {
    let mut out = Vec::new();
    for farmer in subjects::<Farm, _>(log, DocumentKind::Farm, |f| f.farmer)? {
        let Some(farm) = grid::farm(log, &farmer)? else {
            continue;
        };
        let members: Vec<&NodeInfo> = nodes
            .iter()
            .filter(|n| n.approved && n.registration.farm == farmer)
            .collect();
        let value = json!({
            "farmer": key_hex(&farmer),
            "name": farm.name,
            "version": farm.version,
            "nodes": members.len(),
            "live_nodes": members.iter().filter(|n| n.live).count(),
            "capacity": {
                "cpus": members.iter().map(|n| u64::from(n.registration.capacity.cpus)).sum::<u64>(),
                "memory_mib": members.iter().map(|n| n.registration.capacity.memory_mib).sum::<u64>(),
            },
        });
        out.push((farm, value));
    }
    Ok(out)
}

/// One contract as the directory shows it.
#[derive(Debug, Clone)]
pub struct ContractInfo {
    /// Every version, oldest first.
    pub versions: Vec<Contract>,
    /// Names of the stakeholders who approved the latest version, in policy order.
    pub signed: Vec<String>,
    /// Names of those who have not.
    pub unsigned: Vec<String>,
    /// Whether the approvals of the latest version satisfy its policy, or why not.
    pub policy: Result<(), String>,
    /// The current placement: node and placed version.
    pub placement: Option<(PublicKey, u64)>,
    /// Whether the owner cancelled it.
    pub cancelled: bool,
    /// The latest report of each node.
    pub reports: Vec<StatusReport>,
}

impl ContractInfo {
    /// The latest version.
    pub fn latest(&self) -> Option<&Contract> {
        self.versions.last()
    }

    /// One word: cancelled, placed, approved, or awaiting approval.
    pub fn state(&self) -> &'static str {
        if self.cancelled {
            "cancelled"
        } else if self
            .placement
            .is_some_and(|(_, v)| Some(v) == self.latest().map(|c| c.version))
        {
            "placed"
        } else if self.policy.is_ok() {
            "approved"
        } else {
            "awaiting approval"
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        let Some(latest) = self.latest() else {
            return Value::Null;
        };
        json!({
            "id": latest.id().0.to_hex(),
            "owner": key_hex(&latest.owner),
            "state": self.state(),
            "versions": self.versions.iter().map(|c| json!({
                "version": c.version,
                "body": c.body_digest().to_hex(),
            })).collect::<Vec<_>>(),
            "approvals": {
                "version": latest.version,
                "signed": self.signed,
                "unsigned": self.unsigned,
                "policy_met": self.policy.is_ok(),
                "reason": self.policy.as_ref().err(),
            },
            "placement": self.placement.map(|(node, version)| json!({
                "node": key_hex(&node),
                "version": version,
            })),
            "cancelled": self.cancelled,
            "reports": self.reports.iter().map(|r| json!({
                "node": key_hex(&r.node),
                "sequence": r.sequence,
                "version": r.version,
                "workloads": r.workloads.iter().map(|w| json!({
                    "name": w.name,
                    "state": w.state.name(),
                    "exit_code": w.exit_code,
                    "restarts": w.restarts,
                    "reason": w.reason,
                    // Sealed to the contract's owner: only that a tail is there, and its size.
                    "tail_bytes": w.tail.as_ref().map(Vec::len),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The contract `id`, if registered.
pub fn contract(log: &dyn LogView, id: &ContractId) -> Result<Option<ContractInfo>, StoreError> {
    let versions = grid::contract_versions(log, id)?;
    let Some(latest) = versions.last() else {
        return Ok(None);
    };
    let approvals = grid::approvals(log, id)?;
    let (body, version) = (latest.body_digest(), latest.version);
    let approvers: BTreeSet<PublicKey> = approvals
        .iter()
        .filter(|a| a.version == version && a.body == body)
        .map(|a| a.stakeholder)
        .collect();
    let (signed, unsigned) = latest
        .stakeholders
        .members
        .iter()
        .partition::<Vec<_>, _>(|m| approvers.contains(&m.key));
    let policy = approvals_satisfy(latest, &approvals)
        .map(|_| ())
        .map_err(|e| e.to_string());
    Ok(Some(ContractInfo {
        signed: signed.into_iter().map(|m| m.name.clone()).collect(),
        unsigned: unsigned.into_iter().map(|m| m.name.clone()).collect(),
        policy,
        placement: grid::placement(log, id)?.map(|p| (p.node, p.version)),
        cancelled: grid::cancellation(log, id)?.is_some(),
        reports: grid::reports(log, id)?,
        versions,
    }))
}

/// Ids of every contract (or of `owner`'s), in registration order.
pub fn contract_ids(
    log: &dyn LogView,
    owner: Option<&PublicKey>,
) -> Result<Vec<ContractId>, StoreError> {
    let key = match owner {
        Some(owner) => owner_key(owner),
        None => kind_key(DocumentKind::Contract),
    };
    let mut seen = BTreeMap::new();
    for (index, c) in grid::all::<Contract>(log, &key)? {
        seen.entry(c.id()).or_insert(index);
    }
    let mut ids: Vec<(u64, ContractId)> = seen.into_iter().map(|(id, i)| (i, id)).collect();
    ids.sort();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

//! What the log says about one contract, folded from its entries (the ones the notary files
//! under `contract/<id>`), without I/O: its versions, approvals, current placement,
//! cancellation and the nodes' latest reports; and what `deploy --wait` and `status` make of
//! them ([`ContractLog::progress`]).
//!
//! Every entry is verified again here ([`trust::verify_named`]: signed by the key its body
//! names); entries of other contracts and kinds are skipped, so the notary cannot slip a
//! document of another contract into this one's view.

use trust::grid::rules::{approvals_satisfy, ApprovalTally, RuleError};
use trust::grid::sealed::{self, SealError};
use trust::grid::{
    Approval, Cancellation, Contract, ContractId, Placement, StatusReport, WorkloadState,
    WorkloadStatus,
};
use trust::{verify_named, DocumentKind, SecretKey, SignedDocument};

/// A contract as its log entries describe it.
#[derive(Debug, Clone, Default)]
pub struct ContractLog {
    /// Its versions in log order (each newer than the one before, by the notary's rules).
    pub versions: Vec<Contract>,
    /// Every approval of any version, in log order.
    pub approvals: Vec<Approval>,
    /// The newest placement.
    pub placement: Option<Placement>,
    /// The cancellation, if any.
    pub cancellation: Option<Cancellation>,
    /// The newest report of each node.
    pub reports: Vec<StatusReport>,
    /// The index of the last entry applied.
    pub last_index: Option<u64>,
}

/// The contract a grid document is about, if it is about one.
pub fn contract_of(document: &[u8]) -> Option<ContractId> {
    let d = SignedDocument::decode(document).ok()?;
    match d.kind() {
        DocumentKind::Contract => verify_named::<Contract>(document).ok().map(|c| c.body.id()),
        DocumentKind::Approval => verify_named::<Approval>(document)
            .ok()
            .map(|a| a.body.contract),
        DocumentKind::Placement => verify_named::<Placement>(document)
            .ok()
            .map(|p| p.body.contract),
        DocumentKind::Cancellation => verify_named::<Cancellation>(document)
            .ok()
            .map(|c| c.body.contract),
        DocumentKind::StatusReport => verify_named::<StatusReport>(document)
            .ok()
            .map(|s| s.body.contract),
        _ => None,
    }
}

/// A workload's console tail in a node's newest report, opened with a key.
#[derive(Debug)]
pub struct OpenedTail<'a> {
    /// The report that carries it.
    pub report: &'a StatusReport,
    /// The workload whose console it is.
    pub workload: &'a WorkloadStatus,
    /// Its lines, or why the key does not open it.
    pub text: Result<String, SealError>,
}

/// Where a deployed contract stands, for people and for `deploy --wait`'s exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet; the line says what is awaited.
    Waiting(String),
    /// Every workload runs on the placed node (or ran and exited with 0).
    Done(String),
    /// It will not get there by waiting: the line says why.
    Failed(String),
}

impl ContractLog {
    /// Applies entry `index` if it is about contract `id` (anything else is skipped).
    pub fn apply(&mut self, id: &ContractId, index: u64, document: &[u8]) {
        self.last_index = Some(self.last_index.map_or(index, |l| l.max(index)));
        let Ok(d) = SignedDocument::decode(document) else {
            return;
        };
        match d.kind() {
            DocumentKind::Contract => {
                if let Ok(c) = verify_named::<Contract>(document) {
                    if c.body.id() == *id
                        && self.latest().is_none_or(|l| c.body.version > l.version)
                    {
                        self.versions.push(c.body);
                    }
                }
            }
            DocumentKind::Approval => {
                if let Ok(a) = verify_named::<Approval>(document) {
                    if a.body.contract == *id {
                        self.approvals.push(a.body);
                    }
                }
            }
            DocumentKind::Placement => {
                if let Ok(p) = verify_named::<Placement>(document) {
                    if p.body.contract == *id
                        && self
                            .placement
                            .as_ref()
                            .is_none_or(|q| p.body.sequence > q.sequence)
                    {
                        self.placement = Some(p.body);
                    }
                }
            }
            DocumentKind::Cancellation => {
                if let Ok(c) = verify_named::<Cancellation>(document) {
                    if c.body.contract == *id {
                        self.cancellation = Some(c.body);
                    }
                }
            }
            DocumentKind::StatusReport => {
                if let Ok(s) = verify_named::<StatusReport>(document) {
                    let s = s.body;
                    if s.contract != *id {
                        return;
                    }
                    match self.reports.iter_mut().find(|r| r.node == s.node) {
                        Some(r) if s.sequence > r.sequence => *r = s,
                        Some(_) => {}
                        None => self.reports.push(s),
                    }
                }
            }
            _ => {}
        }
    }

    /// The latest version.
    pub fn latest(&self) -> Option<&Contract> {
        self.versions.last()
    }

    /// Whether the approvals in the log satisfy the latest version's policy.
    pub fn policy(&self) -> Option<Result<ApprovalTally, RuleError>> {
        self.latest().map(|c| approvals_satisfy(c, &self.approvals))
    }

    /// The console tails in each node's newest report, opened with `key`: only the key of the
    /// contract's owner, to which the node sealed them, opens them.
    pub fn tails(&self, key: &SecretKey) -> Vec<OpenedTail<'_>> {
        self.reports
            .iter()
            .flat_map(|report| {
                report.workloads.iter().filter_map(move |workload| {
                    let tail = workload.tail.as_deref()?;
                    Some(OpenedTail {
                        report,
                        workload,
                        text: sealed::open(key, &report.tail_context(&workload.name), tail),
                    })
                })
            })
            .collect()
    }

    /// The placed node's latest report on the placed version.
    pub fn placed_report(&self) -> Option<&StatusReport> {
        let p = self.placement.as_ref()?;
        self.reports
            .iter()
            .find(|r| r.node == p.node && r.version == p.version)
    }

    /// Where the contract stands.
    pub fn progress(&self) -> Progress {
        let Some(contract) = self.latest() else {
            return Progress::Waiting("the contract is not in the log yet".into());
        };
        if let Some(c) = &self.cancellation {
            return Progress::Failed(format!("cancelled by its owner: {}", c.reason));
        }
        let Some(p) = &self.placement else {
            return Progress::Waiting("not placed".into());
        };
        if p.version != contract.version {
            return Progress::Waiting(format!(
                "version {} is not placed yet (version {} is)",
                contract.version, p.version
            ));
        }
        let node = p.node.short();
        let Some(report) = self.placed_report() else {
            return Progress::Waiting(format!("placed on node {node}, waiting for its report"));
        };
        let describe = |w: &trust::grid::WorkloadStatus| {
            let mut s = format!("{} {}", w.name, w.state.name());
            if let Some(code) = w.exit_code {
                s.push_str(&format!(" (exit code {code})"));
            }
            if w.restarts > 0 {
                s.push_str(&format!(" after {} restarts", w.restarts));
            }
            if !w.reason.is_empty() {
                s.push_str(&format!(": {}", w.reason));
            }
            s
        };
        let all: Vec<String> = report.workloads.iter().map(describe).collect();
        let line = format!("node {node}: {}", all.join(", "));
        if let Some(w) = report
            .workloads
            .iter()
            .find(|w| w.state == WorkloadState::Refused)
        {
            return Progress::Failed(format!(
                "node {node} refused workload {}: {}",
                w.name, w.reason
            ));
        }
        // A crash loop is a reason now, not after a timeout (the agent may still move it).
        if let Some(w) = report.workloads.iter().find(|w| {
            w.state == WorkloadState::Restarting && w.exit_code.is_some_and(|code| code != 0)
        }) {
            return Progress::Failed(format!(
                "node {node}: workload {} exited with code {} and is restarting ({} restarts)",
                w.name,
                w.exit_code.unwrap_or_default(),
                w.restarts
            ));
        }
        let names_all = contract
            .workloads
            .iter()
            .all(|cw| report.workloads.iter().any(|w| w.name == cw.name));
        let ended = |w: &&trust::grid::WorkloadStatus| {
            matches!(w.state, WorkloadState::Running | WorkloadState::Exited)
        };
        if !names_all || !report.workloads.iter().all(|w| ended(&w)) {
            return Progress::Waiting(line);
        }
        if let Some(w) = report
            .workloads
            .iter()
            .find(|w| w.state == WorkloadState::Exited && w.exit_code.is_some_and(|code| code != 0))
        {
            return Progress::Failed(format!(
                "node {node}: workload {} exited with code {}",
                w.name,
                w.exit_code.unwrap_or_default()
            ));
        }
        Progress::Done(line)
    }
}

#[cfg(test)]
mod tests;

//! The log's entries as the node reads them: each entry is opened as the grid kind it says it
//! is and verified against the key its body names ([`trust::verify_named`]); a contract's
//! documents are gathered into a [`ContractView`], which keeps only what its rules allow
//! (versions that chain from the first, cancellations by the owner).
//!
//! Inclusion in a verified checkpoint is the caller's step ([`crate::pull`]); what reaches here
//! was proven to be in the log.

use std::collections::BTreeMap;

use trust::grid::{
    cancellation_by_owner, check_successor, Approval, Cancellation, Contract, ContractId,
    Enrollment, NodeRegistration, Placement, StatusReport,
};
use trust::{verify_named, DocumentError, DocumentKind, NamedSigner, SignedDocument};

/// A verified grid document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridDocument {
    /// A node's registration.
    Registration(NodeRegistration),
    /// A farmer's enrollment of a node.
    Enrollment(Enrollment),
    /// A contract version.
    Contract(Contract),
    /// A stakeholder's approval.
    Approval(Approval),
    /// The owner's placement.
    Placement(Placement),
    /// The owner's cancellation.
    Cancellation(Cancellation),
    /// A node's status report.
    Report(StatusReport),
    /// Another kind (a farm, a lease): nothing the node acts on.
    Other(DocumentKind),
}

impl GridDocument {
    /// The contract the document is about, if any.
    pub fn contract(&self) -> Option<ContractId> {
        match self {
            GridDocument::Contract(c) => Some(c.id()),
            GridDocument::Approval(a) => Some(a.contract),
            GridDocument::Placement(p) => Some(p.contract),
            GridDocument::Cancellation(c) => Some(c.contract),
            GridDocument::Report(r) => Some(r.contract),
            _ => None,
        }
    }
}

/// Opens one entry: envelope (bounded), kind, body, and the signature of the key it names.
pub fn open(entry: &[u8]) -> Result<GridDocument, DocumentError> {
    fn named<B: NamedSigner>(entry: &[u8]) -> Result<B, DocumentError> {
        Ok(verify_named::<B>(entry)?.body)
    }
    let kind = SignedDocument::decode(entry)
        .map_err(|source| DocumentError::DecodeEnvelope {
            expected: DocumentKind::Contract,
            source,
        })?
        .kind();
    Ok(match kind {
        DocumentKind::NodeRegistration => GridDocument::Registration(named(entry)?),
        DocumentKind::Enrollment => GridDocument::Enrollment(named(entry)?),
        DocumentKind::Contract => GridDocument::Contract(named(entry)?),
        DocumentKind::Approval => GridDocument::Approval(named(entry)?),
        DocumentKind::Placement => GridDocument::Placement(named(entry)?),
        DocumentKind::Cancellation => GridDocument::Cancellation(named(entry)?),
        DocumentKind::StatusReport => GridDocument::Report(named(entry)?),
        other => GridDocument::Other(other),
    })
}

/// Everything the log says about one contract, as far as its rules let it count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractView {
    /// The contract.
    pub id: ContractId,
    /// Its versions, each chained from the one before (version 1's body names the id).
    pub versions: BTreeMap<u64, Contract>,
    /// Every approval naming the contract (whether they count is `approvals_satisfy`'s call).
    pub approvals: Vec<Approval>,
    /// The owner's placement with the highest sequence.
    pub placement: Option<Placement>,
    /// The latest placement signed by someone else than the owner, and why it does not count.
    pub rejected: Option<(Placement, String)>,
    /// The owner's cancellation, if any.
    pub cancellation: Option<Cancellation>,
    /// Documents that did not count, with why (for the debug log).
    pub ignored: Vec<String>,
}

impl ContractView {
    /// An empty view of `id`.
    pub fn new(id: ContractId) -> ContractView {
        ContractView {
            id,
            versions: BTreeMap::new(),
            approvals: Vec::new(),
            placement: None,
            rejected: None,
            cancellation: None,
            ignored: Vec::new(),
        }
    }

    /// Adds a verified document of the log, in log order.
    pub fn add(&mut self, document: GridDocument) {
        if document.contract() != Some(self.id) {
            return;
        }
        match document {
            GridDocument::Contract(c) => self.add_version(c),
            GridDocument::Approval(a) => self.approvals.push(a),
            GridDocument::Placement(p) => self.add_placement(p),
            GridDocument::Cancellation(c) => match self.versions.get(&1) {
                Some(first) => match cancellation_by_owner(first, &c) {
                    Ok(()) => self.cancellation = Some(c),
                    Err(e) => self.ignored.push(format!("cancellation: {e}")),
                },
                None => self
                    .ignored
                    .push("cancellation before the contract's first version".into()),
            },
            _ => {}
        }
    }

    fn add_placement(&mut self, p: Placement) {
        // The owner never changes across versions (`check_successor`), so version 1 names it.
        let Some(owner) = self.versions.get(&1).map(|c| c.owner) else {
            self.ignored
                .push("placement before the contract's first version".into());
            return;
        };
        if p.owner != owner {
            let reason = format!(
                "placement is by {}, not by the contract's owner {}",
                p.owner.short(),
                owner.short()
            );
            self.rejected = Some((p, reason));
            return;
        }
        if self
            .placement
            .as_ref()
            .is_none_or(|held| p.sequence > held.sequence)
        {
            self.placement = Some(p);
        }
    }

    fn add_version(&mut self, c: Contract) {
        if c.version == 1 {
            self.versions.insert(1, c);
            return;
        }
        match self.versions.get(&(c.version - 1)) {
            Some(previous) => match check_successor(previous, &c) {
                Ok(()) => {
                    self.versions.insert(c.version, c);
                }
                Err(e) => self
                    .ignored
                    .push(format!("contract version {}: {e}", c.version)),
            },
            None => self.ignored.push(format!(
                "contract version {} without version {}",
                c.version,
                c.version - 1
            )),
        }
    }

    /// The latest version.
    pub fn latest(&self) -> Option<&Contract> {
        self.versions.values().next_back()
    }
}

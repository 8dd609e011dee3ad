//! The grid's admission rules ([`GridRules`]) and the directory reads over the log that they
//! and the HTTP layer share.
//!
//! Every write must be one of the control-plane kinds of `trust::grid`, signed by the key its
//! body names (the envelope check verified every signature strictly; the rule requires the
//! named key among them, which is what `trust::verify_named` checks), and newer than the head
//! of its supersession stream ([`trust::grid::is_newer`]). Then, per kind:
//!
//! | kind | also needs |
//! |---|---|
//! | farm | nothing more: any key may register a farm (one stream per farmer key) |
//! | node registration | nothing more (the node's own key signs) |
//! | enrollment | the farmer's farm is registered |
//! | contract | version 1: nothing more; later: [`check_successor`] of the held head, not cancelled |
//! | approval | the contract version it names exists and the approver is in its stakeholder policy |
//! | placement | see [`GridRules`]: owner, live and enrolled node, allowed farm, room, approvals |
//! | cancellation | by the contract's owner ([`cancellation_by_owner`]) |
//! | status report | by the node the contract is currently placed on, for that version |
//! | lease | not logged: kept beside the log by the core ([`DocumentRules::lease`]) |
//!
//! Index keys (what `GET /v1/wait?key=` long-polls on):
//! - `node/<hex>`: registrations and enrollments of the node, placements naming it (and the
//!   placement that moves a contract away from it), new versions and cancellations of
//!   contracts placed on it: everything a node must act on.
//! - `contract/<id hex>`: every document about the contract; `owner/<hex>`: every document about
//!   the owner's contracts (an agent's feed); `farm/<hex>`: the farm, its enrollments, the
//!   registrations naming it.
//! - internal: `kind/<code>`, `stream/<hex>` (supersession heads), `placed/<node hex>`,
//!   `approvals/<id hex>`, `reports/<id hex>`.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use trust::grid::{
    approvals_satisfy, cancellation_by_owner, check_successor, is_newer, placement_by_owner,
    placement_fits, Approval, Cancellation, Contract, ContractId, Enrollment, Farm, Lease,
    NodeRegistration, Placement, Resources, StatusReport, Stream, Supersedes,
};
use trust::{DocumentKind, NamedSigner, PublicKey, SignedBody, SignedDocument};

use crate::admission::{Checked, DocumentRules, LeaseUpdate, LogView, Refusal};
use crate::core::MAX_LOOKUP;
use crate::store::StoreError;

/// The longest a lease may reach into the future, by the notary's clock, in seconds.
pub const MAX_LEASE_SECONDS: u64 = 600;

/// The index key of everything that concerns `node`.
pub fn node_key(node: &PublicKey) -> String {
    format!("node/{}", hex::encode(node.as_bytes()))
}

/// The index key of everything about contract `id`.
pub fn contract_key(id: &ContractId) -> String {
    format!("contract/{}", id.0.to_hex())
}

/// The index key of everything about `owner`'s contracts.
pub fn owner_key(owner: &PublicKey) -> String {
    format!("owner/{}", hex::encode(owner.as_bytes()))
}

/// The index key of a farm, its enrollments and the registrations naming it.
pub fn farm_key(farmer: &PublicKey) -> String {
    format!("farm/{}", hex::encode(farmer.as_bytes()))
}

/// The index key of every document of `kind`.
pub fn kind_key(kind: DocumentKind) -> String {
    format!("kind/{}", kind.code())
}

fn stream_key(stream: &Stream) -> String {
    format!("stream/{}", hex::encode(stream.key_bytes()))
}

fn placed_key(node: &PublicKey) -> String {
    format!("placed/{}", hex::encode(node.as_bytes()))
}

fn approvals_key(id: &ContractId) -> String {
    format!("approvals/{}", id.0.to_hex())
}

fn reports_key(id: &ContractId) -> String {
    format!("reports/{}", id.0.to_hex())
}

/// Every index filed under `key`, ascending.
pub fn indexes(log: &dyn LogView, key: &str) -> Result<Vec<u64>, StoreError> {
    let mut out: Vec<u64> = Vec::new();
    loop {
        let page = log.lookup(key, out.last().copied(), MAX_LOOKUP)?;
        let full = page.len() == MAX_LOOKUP;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// The body of kind `B` at `index` (entries were verified when they were admitted).
fn body_at<B: SignedBody>(log: &dyn LogView, index: u64) -> Result<Option<B>, StoreError> {
    let Some(bytes) = log.entry(index)? else {
        return Ok(None);
    };
    let Ok(document) = SignedDocument::decode(&bytes) else {
        return Ok(None);
    };
    if document.kind() != B::KIND {
        return Ok(None);
    }
    Ok(B::decode(document.body()).ok())
}

/// Every body of kind `B` filed under `key`, with its index, ascending.
pub fn all<B: SignedBody>(log: &dyn LogView, key: &str) -> Result<Vec<(u64, B)>, StoreError> {
    let mut out = Vec::new();
    for index in indexes(log, key)? {
        if let Some(body) = body_at::<B>(log, index)? {
            out.push((index, body));
        }
    }
    Ok(out)
}

/// The newest body of kind `B` filed under `key`.
pub fn latest<B: SignedBody>(log: &dyn LogView, key: &str) -> Result<Option<B>, StoreError> {
    for index in indexes(log, key)?.into_iter().rev() {
        if let Some(body) = body_at::<B>(log, index)? {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// The head of `stream`.
pub fn head<B: SignedBody>(log: &dyn LogView, stream: &Stream) -> Result<Option<B>, StoreError> {
    latest(log, &stream_key(stream))
}

/// The farm registered by `farmer`.
pub fn farm(log: &dyn LogView, farmer: &PublicKey) -> Result<Option<Farm>, StoreError> {
    head(log, &Stream::Farm(*farmer))
}

/// The node's latest registration.
pub fn registration(
    log: &dyn LogView,
    node: &PublicKey,
) -> Result<Option<NodeRegistration>, StoreError> {
    head(log, &Stream::Node(*node))
}

/// Whether `farmer`'s latest enrollment of `node` vouches for it.
pub fn enrolled(
    log: &dyn LogView,
    farmer: &PublicKey,
    node: &PublicKey,
) -> Result<bool, StoreError> {
    let stream = Stream::Enrollment {
        farmer: *farmer,
        node: *node,
    };
    Ok(head::<Enrollment>(log, &stream)?.is_some_and(|e| e.enrolled))
}

/// The contract's latest version.
pub fn contract(log: &dyn LogView, id: &ContractId) -> Result<Option<Contract>, StoreError> {
    head(log, &Stream::Contract(*id))
}

/// Every version of the contract, oldest first.
pub fn contract_versions(log: &dyn LogView, id: &ContractId) -> Result<Vec<Contract>, StoreError> {
    Ok(all::<Contract>(log, &stream_key(&Stream::Contract(*id)))?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// The contract's latest placement.
pub fn placement(log: &dyn LogView, id: &ContractId) -> Result<Option<Placement>, StoreError> {
    head(log, &Stream::Placement(*id))
}

/// The contract's cancellation, if any.
pub fn cancellation(
    log: &dyn LogView,
    id: &ContractId,
) -> Result<Option<Cancellation>, StoreError> {
    head(log, &Stream::Cancellation(*id))
}

/// Every approval of any version of the contract, in log order.
pub fn approvals(log: &dyn LogView, id: &ContractId) -> Result<Vec<Approval>, StoreError> {
    Ok(all::<Approval>(log, &approvals_key(id))?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// The latest status report of each node on the contract.
pub fn reports(log: &dyn LogView, id: &ContractId) -> Result<Vec<StatusReport>, StoreError> {
    let mut out: Vec<StatusReport> = Vec::new();
    for (_, report) in all::<StatusReport>(log, &reports_key(id))?
        .into_iter()
        .rev()
    {
        if !out.iter().any(|r| r.node == report.node) {
            out.push(report);
        }
    }
    Ok(out)
}

/// The contracts currently placed on `node` (latest placement names it, not cancelled), with
/// their latest versions.
pub fn placed_on(log: &dyn LogView, node: &PublicKey) -> Result<Vec<Contract>, StoreError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (_, p) in all::<Placement>(log, &placed_key(node))? {
        if !seen.insert(p.contract) {
            continue;
        }
        let current = placement(log, &p.contract)?;
        if current.is_none_or(|c| c.node != *node) || cancellation(log, &p.contract)?.is_some() {
            continue;
        }
        if let Some(c) = contract(log, &p.contract)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// What the contracts placed on `node` need together, leaving out `except`.
pub fn used(
    log: &dyn LogView,
    node: &PublicKey,
    except: Option<ContractId>,
) -> Result<Resources, StoreError> {
    Ok(placed_on(log, node)?
        .iter()
        .filter(|c| Some(c.id()) != except)
        .fold(Resources::default(), |sum, c| sum.plus(c.resources())))
}

/// The grid's admission rules: see the module docs. A placement is admitted only when
/// - it is the owner's word on the contract's current version ([`placement_by_owner`]) and the
///   contract is not cancelled;
/// - the node is registered, its farm is registered, the farmer's latest enrollment of the node
///   vouches for it, and its lease is live by the notary's clock;
/// - the contract allows the node's farm and fits in what the contracts already placed there
///   leave free ([`placement_fits`]);
/// - the approvals of this contract version satisfy its stakeholder policy
///   ([`approvals_satisfy`]).
pub struct GridRules {
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Whether the rules above are enforced; `false` only for [`GridRules::unchecked`].
    judge: bool,
}

impl std::fmt::Debug for GridRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GridRules {{ judge: {} }}", self.judge)
    }
}

impl Default for GridRules {
    fn default() -> GridRules {
        GridRules::new()
    }
}

/// Seconds since the Unix epoch by the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn refused(reason: impl std::fmt::Display) -> Refusal {
    Refusal::refused(reason)
}

fn short_id(id: &ContractId) -> String {
    id.0.to_hex()[..16].to_string()
}

/// The body of a checked document of kind `B`, whose named signer must be among the keys
/// whose signatures the envelope check verified.
fn named<B: NamedSigner>(d: &Checked) -> Result<B, Refusal> {
    let body = B::decode(d.document.body())
        .map_err(|e| refused(format!("{} body does not decode: {e}", B::KIND.name())))?;
    if !d.signers.contains(&body.signer()) {
        return Err(refused(format!(
            "{} is not signed by its {} {}",
            B::KIND.name(),
            B::SIGNER_ROLE,
            body.signer().short()
        )));
    }
    Ok(body)
}

/// Refuses `body` unless it is newer than the head of its stream.
fn newer<B: SignedBody + Supersedes>(log: &dyn LogView, body: &B) -> Result<(), Refusal> {
    let next = body.supersession();
    if let Some(held) = head::<B>(log, &next.stream)? {
        let held = held.supersession();
        if !is_newer(&held, &next) {
            return Err(refused(format!(
                "{} {} is not newer than the held {}",
                B::KIND.name(),
                next.version,
                held.version
            )));
        }
    }
    Ok(())
}

impl GridRules {
    /// Rules on the system clock.
    pub fn new() -> GridRules {
        GridRules::with_clock(unix_now)
    }

    /// Rules on `clock` (seconds since the Unix epoch), for tests.
    pub fn with_clock(clock: impl Fn() -> u64 + Send + Sync + 'static) -> GridRules {
        GridRules {
            clock: Box::new(clock),
            judge: true,
        }
    }

    /// A notary that does not enforce the grid's rules, to show what the nodes do when their
    /// notary misbehaves (the notary is trusted for availability, not integrity: see
    /// docs/NOTARY.md, "Threat model"). Every grid document whose body decodes and is signed by
    /// the key it names is admitted and filed under the same index keys as [`GridRules::new`]
    /// files it (`node/…`, `contract/…`, `owner/…`, ...), so nodes and agents find it; nothing
    /// else is judged: not the stream's order, not who may write it, not the approvals, the
    /// node's enrollment, lease or room. Never for a real grid.
    pub fn unchecked() -> GridRules {
        GridRules {
            judge: false,
            ..GridRules::new()
        }
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// [`newer`], when the rules are judged.
    fn newer<B: SignedBody + Supersedes>(
        &self,
        log: &dyn LogView,
        body: &B,
    ) -> Result<(), Refusal> {
        if self.judge {
            newer(log, body)
        } else {
            Ok(())
        }
    }

    fn placement(&self, p: &Placement, log: &dyn LogView) -> Result<Vec<String>, Refusal> {
        let id = short_id(&p.contract);
        if !self.judge {
            let mut keys = vec![
                contract_key(&p.contract),
                node_key(&p.node),
                placed_key(&p.node),
            ];
            if let Some(c) = contract(log, &p.contract)? {
                keys.push(owner_key(&c.owner));
            }
            if let Some(previous) = placement(log, &p.contract)? {
                keys.push(node_key(&previous.node));
            }
            return Ok(keys);
        }
        let Some(c) = contract(log, &p.contract)? else {
            return Err(refused(format!(
                "placement names contract {id}, which is not registered"
            )));
        };
        placement_by_owner(&c, p).map_err(refused)?;
        if cancellation(log, &p.contract)?.is_some() {
            return Err(refused(format!("contract {id} is cancelled")));
        }
        let node = p.node.short();
        let Some(reg) = registration(log, &p.node)? else {
            return Err(refused(format!("node {node} is not registered")));
        };
        if farm(log, &reg.farm)?.is_none() {
            return Err(refused(format!(
                "node {node}'s farm {} is not registered",
                reg.farm.short()
            )));
        }
        if !enrolled(log, &reg.farm, &p.node)? {
            return Err(refused(format!(
                "node {node} is not enrolled by its farm {}",
                reg.farm.short()
            )));
        }
        match log.lease(p.node.as_bytes())? {
            None => return Err(refused(format!("node {node} has never sent a lease"))),
            Some(l) if l.expires <= self.now() => {
                return Err(refused(format!(
                    "node {node}'s lease ran out {} s ago",
                    self.now() - l.expires
                )))
            }
            Some(_) => {}
        }
        let placed = used(log, &p.node, Some(p.contract))?;
        placement_fits(&c, &reg, placed).map_err(refused)?;
        approvals_satisfy(&c, &approvals(log, &p.contract)?)
            .map_err(|e| refused(format!("contract {id} version {}: {e}", c.version)))?;
        let mut keys = vec![
            contract_key(&p.contract),
            owner_key(&c.owner),
            node_key(&p.node),
            placed_key(&p.node),
        ];
        // The node the contract moves away from must hear of it.
        if let Some(previous) = placement(log, &p.contract)? {
            keys.push(node_key(&previous.node));
        }
        Ok(keys)
    }

    fn contract(&self, c: &Contract, log: &dyn LogView) -> Result<Vec<String>, Refusal> {
        let id = c.id();
        let held = contract(log, &id)?;
        match (&held, &c.supersedes) {
            _ if !self.judge => {}
            (None, None) => {}
            (None, Some(_)) => {
                return Err(refused(format!(
                    "contract {} version {} supersedes a contract that is not registered",
                    short_id(&id),
                    c.version
                )))
            }
            (Some(current), _) => {
                check_successor(current, c).map_err(refused)?;
                if cancellation(log, &id)?.is_some() {
                    return Err(refused(format!("contract {} is cancelled", short_id(&id))));
                }
            }
        }
        let mut keys = vec![contract_key(&id), owner_key(&c.owner)];
        if let Some(p) = placement(log, &id)? {
            keys.push(node_key(&p.node));
        }
        Ok(keys)
    }

    fn approval(&self, a: &Approval, log: &dyn LogView) -> Result<Vec<String>, Refusal> {
        let id = short_id(&a.contract);
        let found = contract_versions(log, &a.contract)?
            .into_iter()
            .find(|c| c.version == a.version);
        if !self.judge {
            let mut keys = vec![contract_key(&a.contract), approvals_key(&a.contract)];
            if let Some(c) = found {
                keys.push(owner_key(&c.owner));
            }
            return Ok(keys);
        }
        let Some(version) = found else {
            return Err(refused(format!(
                "approval names contract {id} version {}, which is not registered",
                a.version
            )));
        };
        if version.body_digest() != a.body {
            return Err(refused(format!(
                "approval of contract {id} version {} names another body",
                a.version
            )));
        }
        if !version
            .stakeholders
            .members
            .iter()
            .any(|m| m.key == a.stakeholder)
        {
            return Err(refused(format!(
                "{} is not a stakeholder of contract {id} version {}",
                a.stakeholder.short(),
                a.version
            )));
        }
        Ok(vec![
            contract_key(&a.contract),
            owner_key(&version.owner),
            approvals_key(&a.contract),
        ])
    }

    fn status(&self, s: &StatusReport, log: &dyn LogView) -> Result<Vec<String>, Refusal> {
        let id = short_id(&s.contract);
        if !self.judge {
            let mut keys = vec![contract_key(&s.contract), reports_key(&s.contract)];
            if let Some(c) = contract(log, &s.contract)? {
                keys.push(owner_key(&c.owner));
            }
            return Ok(keys);
        }
        let Some(c) = contract(log, &s.contract)? else {
            return Err(refused(format!(
                "status report names contract {id}, which is not registered"
            )));
        };
        let placed_here = placement(log, &s.contract)?.is_some_and(|p| p.node == s.node);
        if !placed_here {
            return Err(refused(format!(
                "contract {id} is not placed on node {}",
                s.node.short()
            )));
        }
        if s.version > c.version {
            return Err(refused(format!(
                "status report is on contract {id} version {}, the latest is {}",
                s.version, c.version
            )));
        }
        Ok(vec![
            contract_key(&s.contract),
            owner_key(&c.owner),
            reports_key(&s.contract),
        ])
    }
}

impl DocumentRules for GridRules {
    fn admit(&self, d: &Checked, log: &dyn LogView) -> Result<Vec<String>, Refusal> {
        let kind = d.document.kind();
        let mut keys = match kind {
            DocumentKind::Farm => {
                let f = named::<Farm>(d)?;
                self.newer(log, &f)?;
                vec![farm_key(&f.farmer), stream_key(&f.supersession().stream)]
            }
            DocumentKind::NodeRegistration => {
                let n = named::<NodeRegistration>(d)?;
                self.newer(log, &n)?;
                vec![node_key(&n.node), farm_key(&n.farm)]
            }
            DocumentKind::Enrollment => {
                let e = named::<Enrollment>(d)?;
                self.newer(log, &e)?;
                if self.judge && farm(log, &e.farmer)?.is_none() {
                    return Err(refused(format!(
                        "enrollment is by {}, who has not registered a farm",
                        e.farmer.short()
                    )));
                }
                vec![farm_key(&e.farmer), node_key(&e.node)]
            }
            DocumentKind::Contract => {
                let c = named::<Contract>(d)?;
                self.newer(log, &c)?;
                self.contract(&c, log)?
            }
            DocumentKind::Approval => {
                let a = named::<Approval>(d)?;
                self.newer(log, &a)?;
                self.approval(&a, log)?
            }
            DocumentKind::Placement => {
                let p = named::<Placement>(d)?;
                self.newer(log, &p)?;
                self.placement(&p, log)?
            }
            DocumentKind::Cancellation => {
                let x = named::<Cancellation>(d)?;
                self.newer(log, &x)?;
                let id = short_id(&x.contract);
                let mut keys = vec![contract_key(&x.contract)];
                match contract(log, &x.contract)? {
                    Some(c) if !self.judge => keys.push(owner_key(&c.owner)),
                    None if !self.judge => {}
                    None => {
                        return Err(refused(format!(
                            "cancellation names contract {id}, which is not registered"
                        )))
                    }
                    Some(c) => {
                        cancellation_by_owner(&c, &x).map_err(refused)?;
                        keys.push(owner_key(&c.owner));
                    }
                }
                if let Some(p) = placement(log, &x.contract)? {
                    keys.push(node_key(&p.node));
                }
                keys
            }
            DocumentKind::StatusReport => {
                let s = named::<StatusReport>(d)?;
                self.newer(log, &s)?;
                self.status(&s, log)?
            }
            DocumentKind::Lease => {
                return Err(refused(
                    "a lease is kept beside the log, not appended to it",
                ))
            }
            other => {
                return Err(refused(format!(
                    "a {} is not a grid document",
                    other.name()
                )))
            }
        };
        keys.push(kind_key(kind));
        if let Some(stream) = stream_of(d) {
            keys.push(stream_key(&stream));
        }
        Ok(keys)
    }

    fn lease(&self, d: &Checked, held: Option<u64>) -> Result<Option<LeaseUpdate>, Refusal> {
        if d.document.kind() != DocumentKind::Lease {
            return Ok(None);
        }
        let lease = named::<Lease>(d)?;
        if let Some(held) = held {
            if lease.sequence <= held {
                return Err(refused(format!(
                    "lease {} is not newer than the held {held}",
                    lease.sequence
                )));
            }
        }
        let now = self.now();
        if lease.expires > now.saturating_add(MAX_LEASE_SECONDS) {
            return Err(refused(format!(
                "lease runs to {}, more than {MAX_LEASE_SECONDS} s after the notary's clock ({now})",
                lease.expires
            )));
        }
        if lease.sequence > i64::MAX as u64 {
            return Err(refused("lease sequence is over 2^63"));
        }
        Ok(Some(LeaseUpdate {
            node: *lease.node.as_bytes(),
            sequence: lease.sequence,
            expires: lease.expires,
        }))
    }
}

fn stream_of(d: &Checked) -> Option<Stream> {
    let body = d.document.body();
    Some(match d.document.kind() {
        DocumentKind::Farm => Farm::decode(body).ok()?.supersession().stream,
        DocumentKind::NodeRegistration => {
            NodeRegistration::decode(body).ok()?.supersession().stream
        }
        DocumentKind::Enrollment => Enrollment::decode(body).ok()?.supersession().stream,
        DocumentKind::Contract => Contract::decode(body).ok()?.supersession().stream,
        DocumentKind::Approval => Approval::decode(body).ok()?.supersession().stream,
        DocumentKind::Placement => Placement::decode(body).ok()?.supersession().stream,
        DocumentKind::Cancellation => Cancellation::decode(body).ok()?.supersession().stream,
        DocumentKind::StatusReport => StatusReport::decode(body).ok()?.supersession().stream,
        _ => return None,
    })
}

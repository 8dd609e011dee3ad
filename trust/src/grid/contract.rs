//! The smart contract for IT: what runs (workloads by the digest of their signed manifest, with
//! resources, volumes, network and environment), who must approve it (the stakeholders' signer
//! policy), where it may run (placement constraints), and who decides placements (the owner).
//!
//! Body, in order:
//!
//! ```text
//! format        varint u32   = 1
//! version       varint u64   ≥ 1; version 1 is the first
//! supersedes    option       0 for version 1; else 1, then contract id (32 bytes) and the
//!                            BLAKE3 of the previous version's body (32 bytes)
//! owner         32 bytes     the owner's key: signs every version, placement and cancellation
//! stakeholders  policy       a signer policy in its binary form (crate::policy), valid
//! workloads     count 1..=16 then per workload:
//!   name        string       as a workload name ([a-z0-9-], 1 to 32), unique in the contract
//!   manifest    32 bytes     BLAKE3 of the signed workload manifest file (its blob in the notary)
//!   vcpus       u8           1..=32
//!   memory_mib  varint u32   32..=65536
//!   volumes     count ≤ 8    then name (as a workload name, unique), size_mib (1..=1048576)
//!   egress      varint u32   0 = none, 1 = any, 2 = only: then count ≤ 32 endpoints, each a
//!                            host (1 to 253 bytes, a-z 0-9 . - :) and a port (varint u16,
//!                            0 = any port), unique
//!   env         count ≤ 256  then key (non-empty, no '=' or NUL), value (no NUL), ≤ 4096 each,
//!                            keys unique
//! farms         count ≤ 32   allowed farms (farmer keys), unique; none = any farm
//! min_memory_mib varint u64  a node must have at least this much memory
//! min_cpus      varint u32   a node must have at least this many CPUs
//! copies        varint u32   = 1 (one copy of the contract runs; more are a later format)
//! ```
//!
//! At most 64 KiB. Version 2 supersedes version 1, so its contract id and previous-body digest
//! are the same; the decoder checks that.

use alloc::string::String;
use alloc::vec::Vec;

use super::limits::{
    MAX_ALLOWED_FARMS, MAX_CONTRACT_BYTES, MAX_CONTRACT_WORKLOADS, MAX_EGRESS_ENDPOINTS,
    MAX_HOST_BYTES,
};
use super::rules::Resources;
use super::supersession::{Stream, Supersedes, Supersession};
use super::{
    checked_text, invalid, put_key, read, read_counter, read_digest, read_key, writer, ContractId,
};
use crate::digest::Digest;
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::{
    DecodeError, Reader, Writer, MAX_WORKLOAD_ENV, MAX_WORKLOAD_NAME_BYTES,
    MAX_WORKLOAD_STRING_BYTES, MAX_WORKLOAD_VOLUMES,
};
use crate::policy::{self, PolicyError, SignerPolicy};
use crate::signed::{NamedSigner, SignedBody};
use crate::workload::{check_name, VOLUME_SIZE_MIB};

/// What a later version of a contract supersedes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    /// The contract's id (the digest of its first version's body).
    pub contract: ContractId,
    /// BLAKE3 of the body of the version this one replaces.
    pub body: Digest,
}

/// A writable volume a contract workload gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeClaim {
    /// Volume name, as a workload name, unique within the workload.
    pub name: String,
    /// Size in MiB, 1 to 1048576.
    pub size_mib: u32,
}

/// One endpoint a workload may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address, 1 to 253 bytes from `a-z 0-9 . - :`.
    pub host: String,
    /// Port; 0 means any port.
    pub port: u16,
}

/// Where a workload may open connections (nothing can connect in, ever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Egress {
    /// No network.
    None,
    /// Anywhere.
    Any,
    /// Only these endpoints.
    Only(Vec<Endpoint>),
}

/// One workload of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractWorkload {
    /// Name, as a workload name, unique within the contract; status reports name it.
    pub name: String,
    /// BLAKE3 of the signed workload manifest file, by which the node fetches and checks it.
    pub manifest: Digest,
    /// Virtual CPUs, 1 to 32.
    pub vcpus: u8,
    /// Guest memory in MiB, 32 to 65536.
    pub memory_mib: u32,
    /// Writable volumes.
    pub volumes: Vec<VolumeClaim>,
    /// Where it may connect.
    pub egress: Egress,
    /// Environment given to the entrypoint, in order.
    pub env: Vec<(String, String)>,
}

/// Where a contract may be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    /// Farms (farmer keys) the contract may run in; empty means any farm.
    pub farms: Vec<PublicKey>,
    /// Least memory a node must have, in MiB.
    pub min_memory_mib: u64,
    /// Fewest CPUs a node must have.
    pub min_cpus: u32,
    /// How many copies run: 1 in this format.
    pub copies: u32,
}

/// One version of a smart contract for IT, signed by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// Version, 1 for the first.
    pub version: u64,
    /// What this version replaces: `None` exactly for version 1.
    pub supersedes: Option<Previous>,
    /// The owner's key: signs every version, its placements and its cancellation.
    pub owner: PublicKey,
    /// Who must approve each version (see [`super::rules::approvals_satisfy`]).
    pub stakeholders: SignerPolicy,
    /// What runs.
    pub workloads: Vec<ContractWorkload>,
    /// Where it may run.
    pub constraints: Constraints,
}

impl Contract {
    /// The contract's id: the digest of this body for version 1, else the id it names.
    pub fn id(&self) -> ContractId {
        match &self.supersedes {
            Some(previous) => previous.contract,
            None => ContractId::of_first_version(&self.encode()),
        }
    }

    /// BLAKE3 of this version's canonical body: what approvals and the next version name.
    pub fn body_digest(&self) -> Digest {
        Digest::of(&self.encode())
    }

    /// What the contract's workloads need together.
    pub fn resources(&self) -> Resources {
        self.workloads.iter().fold(Resources::default(), |sum, w| {
            sum.plus(Resources {
                vcpus: u64::from(w.vcpus),
                memory_mib: u64::from(w.memory_mib),
                disk_mib: w.volumes.iter().map(|v| u64::from(v.size_mib)).sum(),
            })
        })
    }
}

impl SignedBody for Contract {
    const KIND: DocumentKind = DocumentKind::Contract;
    const MAX_BYTES: usize = MAX_CONTRACT_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.version);
        w.put(&self.supersedes.is_some());
        if let Some(previous) = &self.supersedes {
            w.array(previous.contract.0.as_bytes());
            w.array(previous.body.as_bytes());
        }
        put_key(&mut w, &self.owner);
        self.stakeholders.write(&mut w);
        w.count(self.workloads.len());
        for workload in &self.workloads {
            write_workload(&mut w, workload);
        }
        let c = &self.constraints;
        w.count(c.farms.len());
        for farm in &c.farms {
            put_key(&mut w, farm);
        }
        w.put(&c.min_memory_mib);
        w.put(&c.min_cpus);
        w.put(&c.copies);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, read_contract)
    }
}

fn write_workload(w: &mut Writer, workload: &ContractWorkload) {
    w.text(&workload.name);
    w.array(workload.manifest.as_bytes());
    w.put(&workload.vcpus);
    w.put(&workload.memory_mib);
    w.count(workload.volumes.len());
    for v in &workload.volumes {
        w.text(&v.name);
        w.put(&v.size_mib);
    }
    match &workload.egress {
        Egress::None => w.put(&0u32),
        Egress::Any => w.put(&1u32),
        Egress::Only(endpoints) => {
            w.put(&2u32);
            w.count(endpoints.len());
            for e in endpoints {
                w.text(&e.host);
                w.put(&e.port);
            }
        }
    }
    w.count(workload.env.len());
    for (key, value) in &workload.env {
        w.text(key);
        w.text(value);
    }
}

fn read_contract(r: &mut Reader<'_>) -> Result<Contract, DecodeError> {
    let version = read_counter(r, "version")?;
    let at = r.position();
    let supersedes = if r.take::<bool>("supersedes")? {
        let contract = ContractId(read_digest(r, "supersedes contract")?);
        let body = read_digest(r, "supersedes body")?;
        Some(Previous { contract, body })
    } else {
        None
    };
    match (version, &supersedes) {
        (1, Some(_)) => {
            return Err(invalid("supersedes", at, "version 1 supersedes nothing"));
        }
        (2.., None) => {
            return Err(invalid(
                "supersedes",
                at,
                "a version after 1 must name the version it supersedes",
            ));
        }
        (2, Some(p)) if p.contract.0 != p.body => {
            return Err(invalid(
                "supersedes",
                at,
                "version 2 supersedes version 1, whose body digest is the contract id",
            ));
        }
        _ => {}
    }
    let owner = read_key(r, "owner")?;
    let at = r.position();
    let stakeholders = policy::read_unchecked(r)?;
    stakeholders
        .validate()
        .map_err(|e| invalid("stakeholders", at, policy_reason(&e)))?;

    let at = r.position();
    let count = r.count("workload count", MAX_CONTRACT_WORKLOADS)?;
    if count == 0 {
        return Err(invalid(
            "workload count",
            at,
            "a contract runs at least one workload",
        ));
    }
    let mut workloads: Vec<ContractWorkload> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.position();
        let workload = read_workload(r)?;
        if workloads.iter().any(|w| w.name == workload.name) {
            return Err(invalid(
                "workload name",
                at,
                "two workloads have the same name",
            ));
        }
        workloads.push(workload);
    }

    let count = r.count("farm count", MAX_ALLOWED_FARMS)?;
    let mut farms: Vec<PublicKey> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.position();
        let farm = read_key(r, "farm")?;
        if farms.contains(&farm) {
            return Err(invalid("farm", at, "the same farm is given twice"));
        }
        farms.push(farm);
    }
    let min_memory_mib: u64 = r.take("min_memory_mib")?;
    let min_cpus: u32 = r.take("min_cpus")?;
    let at = r.position();
    let copies: u32 = r.take("copies")?;
    if copies != 1 {
        return Err(invalid("copies", at, "must be 1 in this format"));
    }
    Ok(Contract {
        version,
        supersedes,
        owner,
        stakeholders,
        workloads,
        constraints: Constraints {
            farms,
            min_memory_mib,
            min_cpus,
            copies,
        },
    })
}

fn read_workload(r: &mut Reader<'_>) -> Result<ContractWorkload, DecodeError> {
    let name = checked_text(r, "workload name", MAX_WORKLOAD_NAME_BYTES, check_name)?;
    let manifest = read_digest(r, "workload manifest")?;
    let (vcpus, memory_mib) = crate::workload::read_resources(r)?;
    let count = r.count("volume count", MAX_WORKLOAD_VOLUMES)?;
    let mut volumes: Vec<VolumeClaim> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.position();
        let name = checked_text(r, "volume name", MAX_WORKLOAD_NAME_BYTES, check_name)?;
        if volumes.iter().any(|v| v.name == name) {
            return Err(invalid("volume name", at, "two volumes have the same name"));
        }
        let at = r.position();
        let size_mib: u32 = r.take("volume size_mib")?;
        if !VOLUME_SIZE_MIB.contains(&size_mib) {
            return Err(invalid("volume size_mib", at, "must be 1 to 1048576"));
        }
        volumes.push(VolumeClaim { name, size_mib });
    }
    let at = r.position();
    let egress = match r.take::<u32>("egress")? {
        0 => Egress::None,
        1 => Egress::Any,
        2 => {
            let count = r.count("endpoint count", MAX_EGRESS_ENDPOINTS)?;
            let mut endpoints: Vec<Endpoint> = Vec::with_capacity(count);
            for _ in 0..count {
                let at = r.position();
                let host = checked_text(r, "endpoint host", MAX_HOST_BYTES, check_host)?;
                let port: u16 = r.take("endpoint port")?;
                let endpoint = Endpoint { host, port };
                if endpoints.contains(&endpoint) {
                    return Err(invalid("endpoint", at, "the same endpoint is given twice"));
                }
                endpoints.push(endpoint);
            }
            Egress::Only(endpoints)
        }
        _ => {
            return Err(invalid(
                "egress",
                at,
                "must be 0 (none), 1 (any) or 2 (only)",
            ))
        }
    };
    let count = r.count("env count", MAX_WORKLOAD_ENV)?;
    let mut env: Vec<(String, String)> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.position();
        let key = checked_text(r, "env key", MAX_WORKLOAD_STRING_BYTES, check_env_key)?;
        if env.iter().any(|(k, _)| *k == key) {
            return Err(invalid("env key", at, "the same key is given twice"));
        }
        let value = checked_text(r, "env value", MAX_WORKLOAD_STRING_BYTES, check_no_nul)?;
        env.push((key, value));
    }
    Ok(ContractWorkload {
        name,
        manifest,
        vcpus,
        memory_mib,
        volumes,
        egress,
        env,
    })
}

/// Egress hosts: 1 to 253 bytes from `a-z 0-9 . - :` (a lower-case DNS name or an address).
pub fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("is empty");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:".contains(&b))
    {
        return Err("may only contain a-z, 0-9, '.', '-' and ':'");
    }
    Ok(())
}

fn check_no_nul(text: &str) -> Result<(), &'static str> {
    if text.contains('\0') {
        return Err("contains a NUL byte");
    }
    Ok(())
}

fn check_env_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("is empty");
    }
    if key.contains('=') {
        return Err("contains '='");
    }
    check_no_nul(key)
}

/// Why an embedded policy is unusable, as a decoding reason.
fn policy_reason(e: &PolicyError) -> &'static str {
    match e {
        PolicyError::NoMembers => "the policy has no members",
        PolicyError::TooManyMembers { .. } => "the policy has too many members",
        PolicyError::ZeroThreshold => "the policy threshold is 0",
        PolicyError::Unreachable { .. } => "the policy threshold is above the members' weight",
        PolicyError::BadName { .. } => "a policy member name is invalid",
        PolicyError::DuplicateName { .. } => "two policy members have the same name",
        PolicyError::DuplicateKey { .. } => "two policy members have the same key",
        PolicyError::Decode(_) => "the policy could not be decoded",
    }
}

impl NamedSigner for Contract {
    const SIGNER_ROLE: &'static str = "owner";

    fn signer(&self) -> PublicKey {
        self.owner
    }
}

impl Supersedes for Contract {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Contract(self.id()),
            version: self.version,
        }
    }
}

//! A small grid for the tests: a farm, nodes, a contract with stakeholders, and the documents
//! that tie them together, each signed by the key its body names.

use trust::grid::{
    Approval, Cancellation, Capacity, Constraints, Contract, ContractWorkload, Disk, Egress,
    Enrollment, Farm, Lease, NodeRegistration, Placement, Previous, StatusReport, WorkloadState,
    WorkloadStatus,
};
use trust::{Digest, NamedSigner, PolicyMember, PublicKey, SecretKey, SignerPolicy};

/// The notary's clock in these tests.
pub const NOW: u64 = 1_800_000_000;

pub const FARMER: u8 = 1;
pub const NODE: u8 = 2;
pub const LAPSED: u8 = 3;
pub const OWNER: u8 = 4;
pub const OTHER_FARMER: u8 = 5;
pub const STRANGER: u8 = 9;
pub const LEGAL: u8 = 10;
pub const IT: u8 = 11;

pub fn sk(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

pub fn pk(seed: u8) -> PublicKey {
    sk(seed).public()
}

/// `body` signed by the key with seed `seed` (normally the key it names).
pub fn signed<B: NamedSigner>(body: &B, seed: u8) -> Vec<u8> {
    let mut d = body.to_document();
    d.sign(&sk(seed)).unwrap();
    d.encode()
}

/// `body` signed by the key it names.
pub fn by_signer<B: NamedSigner>(body: &B) -> Vec<u8> {
    let mut d = body.to_document();
    let signer = body.signer();
    let seed = (0..=255u8).find(|s| pk(*s) == signer).unwrap();
    d.sign(&sk(seed)).unwrap();
    d.encode()
}

pub fn farm(farmer: u8, version: u64, name: &str) -> Farm {
    Farm {
        version,
        farmer: pk(farmer),
        name: name.into(),
    }
}

pub fn node(node: u8, farm: u8, sequence: u64, cpus: u32, memory_mib: u64) -> NodeRegistration {
    NodeRegistration {
        sequence,
        node: pk(node),
        farm: pk(farm),
        capacity: Capacity {
            cpus,
            memory_mib,
            disks: vec![Disk {
                name: "vdb".into(),
                size_mib: 20 * 1024,
            }],
            nics: vec![],
        },
        release_version: 1,
        release_manifest: Digest::of(b"release"),
    }
}

pub fn enroll(farmer: u8, node: u8, sequence: u64, enrolled: bool) -> Enrollment {
    Enrollment {
        sequence,
        farmer: pk(farmer),
        node: pk(node),
        enrolled,
    }
}

pub fn lease(node: u8, sequence: u64, expires: u64) -> Lease {
    Lease {
        sequence,
        node: pk(node),
        expires,
    }
}

/// legal (required) and it, threshold 2: both must approve.
pub fn contract(vcpus: u8, memory_mib: u32) -> Contract {
    Contract {
        version: 1,
        supersedes: None,
        owner: pk(OWNER),
        stakeholders: SignerPolicy {
            threshold: 2,
            members: vec![
                PolicyMember {
                    name: "legal".into(),
                    key: pk(LEGAL),
                    weight: 1,
                    required: true,
                },
                PolicyMember {
                    name: "it".into(),
                    key: pk(IT),
                    weight: 1,
                    required: false,
                },
            ],
        },
        workloads: vec![ContractWorkload {
            name: "web".into(),
            manifest: Digest::of(b"web"),
            vcpus,
            memory_mib,
            volumes: vec![],
            egress: Egress::None,
            env: vec![],
        }],
        constraints: Constraints {
            farms: vec![pk(FARMER)],
            min_memory_mib: 0,
            min_cpus: 0,
            copies: 1,
        },
    }
}

pub fn next_version(c: &Contract) -> Contract {
    let mut next = c.clone();
    next.version = c.version + 1;
    next.supersedes = Some(Previous {
        contract: c.id(),
        body: c.body_digest(),
    });
    next
}

pub fn approval(stakeholder: u8, c: &Contract) -> Approval {
    Approval {
        version: c.version,
        contract: c.id(),
        body: c.body_digest(),
        stakeholder: pk(stakeholder),
    }
}

pub fn placement(c: &Contract, sequence: u64, node: u8) -> Placement {
    Placement {
        sequence,
        contract: c.id(),
        version: c.version,
        node: pk(node),
        owner: c.owner,
        reason: "test".into(),
    }
}

pub fn cancellation(c: &Contract) -> Cancellation {
    Cancellation {
        version: c.version,
        contract: c.id(),
        owner: c.owner,
        reason: "done".into(),
    }
}

pub fn status(c: &Contract, node: u8, sequence: u64) -> StatusReport {
    StatusReport {
        sequence,
        node: pk(node),
        contract: c.id(),
        version: c.version,
        workloads: vec![WorkloadStatus {
            name: "web".into(),
            state: WorkloadState::Running,
            exit_code: None,
            restarts: 1,
            reason: "serving".into(),
            tail: None,
        }],
    }
}

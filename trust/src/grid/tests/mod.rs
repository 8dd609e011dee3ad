//! Control-plane documents: fixtures shared by the tests of every kind and rule.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::keys::SecretKey;
use crate::policy::{PolicyMember, SignerPolicy};

mod kinds;
mod rules;
mod supersession;

pub(super) fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

pub(super) fn pk(n: u8) -> PublicKey {
    key(n).public()
}

// Seeds: 1 farmer, 2 node, 3 owner, 10.. stakeholders.
pub(super) const FARMER: u8 = 1;
pub(super) const NODE: u8 = 2;
pub(super) const OWNER: u8 = 3;

pub(super) fn farm() -> Farm {
    Farm {
        version: 1,
        farmer: pk(FARMER),
        name: "Farm in Ghent".into(),
    }
}

pub(super) fn node() -> NodeRegistration {
    NodeRegistration {
        sequence: 4,
        node: pk(NODE),
        farm: pk(FARMER),
        capacity: Capacity {
            cpus: 8,
            memory_mib: 16 * 1024,
            disks: vec![
                Disk {
                    name: "vdb".into(),
                    size_mib: 10 * 1024,
                },
                Disk {
                    name: "nvme0n1".into(),
                    size_mib: 100 * 1024,
                },
            ],
            nics: vec![Nic {
                name: "eth0".into(),
                mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            }],
        },
        release_version: 7,
        release_manifest: Digest::of(b"release body"),
    }
}

pub(super) fn member(name: &str, n: u8, weight: u32, required: bool) -> PolicyMember {
    PolicyMember {
        name: name.to_string(),
        key: pk(n),
        weight,
        required,
    }
}

/// legal (required, weight 1), it (weight 1), finance (weight 1, optional); threshold 2.
pub(super) fn stakeholders() -> SignerPolicy {
    SignerPolicy {
        threshold: 2,
        members: vec![
            member("legal", 10, 1, true),
            member("it", 11, 1, false),
            member("finance", 12, 1, false),
        ],
    }
}

pub(super) fn contract() -> Contract {
    Contract {
        version: 1,
        supersedes: None,
        owner: pk(OWNER),
        stakeholders: stakeholders(),
        workloads: vec![
            ContractWorkload {
                name: "web".into(),
                manifest: Digest::of(b"web workload.manifest"),
                vcpus: 2,
                memory_mib: 1024,
                volumes: vec![VolumeClaim {
                    name: "data".into(),
                    size_mib: 2048,
                }],
                egress: Egress::Only(vec![Endpoint {
                    host: "api.example.org".into(),
                    port: 443,
                }]),
                env: vec![("MODE".into(), "production".into())],
            },
            ContractWorkload {
                name: "worker".into(),
                manifest: Digest::of(b"worker workload.manifest"),
                vcpus: 1,
                memory_mib: 512,
                volumes: vec![],
                egress: Egress::None,
                env: vec![],
            },
        ],
        constraints: Constraints {
            farms: vec![pk(FARMER)],
            min_memory_mib: 4096,
            min_cpus: 2,
            copies: 1,
        },
    }
}

/// Version 2 of [`contract`]: one more vCPU for the worker.
pub(super) fn contract_v2() -> Contract {
    let v1 = contract();
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.supersedes = Some(Previous {
        contract: v1.id(),
        body: v1.body_digest(),
    });
    v2.workloads[1].vcpus = 2;
    v2
}

pub(super) fn approval(stakeholder: u8, c: &Contract) -> Approval {
    Approval {
        version: c.version,
        contract: c.id(),
        body: c.body_digest(),
        stakeholder: pk(stakeholder),
    }
}

pub(super) fn placement() -> Placement {
    let c = contract();
    Placement {
        sequence: 1,
        contract: c.id(),
        version: c.version,
        node: pk(NODE),
        owner: pk(OWNER),
        reason: "first placement: most free memory in farm 1".into(),
    }
}

pub(super) fn cancellation() -> Cancellation {
    Cancellation {
        version: 1,
        contract: contract().id(),
        owner: pk(OWNER),
        reason: String::new(),
    }
}

pub(super) fn status() -> StatusReport {
    StatusReport {
        sequence: 12,
        node: pk(NODE),
        contract: contract().id(),
        version: 1,
        workloads: vec![
            WorkloadStatus {
                name: "web".into(),
                state: WorkloadState::Running,
                exit_code: None,
                restarts: 0,
                reason: String::new(),
                tail: None,
            },
            WorkloadStatus {
                name: "worker".into(),
                state: WorkloadState::Restarting,
                exit_code: Some(-11),
                restarts: 3,
                reason: "exited with signal 11".into(),
                tail: None,
            },
        ],
    }
}

pub(super) fn lease() -> Lease {
    Lease {
        sequence: 99,
        node: pk(NODE),
        expires: 1_790_000_000,
    }
}

/// A signed file of `body` by the key with seed `signer`.
pub(super) fn signed<B: SignedBody>(body: &B, signer: u8) -> Vec<u8> {
    let mut doc = body.to_document();
    doc.sign(&key(signer)).expect("sign");
    doc.encode()
}

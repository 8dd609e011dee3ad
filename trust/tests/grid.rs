//! Property tests of the control plane's documents: every decoder refuses garbage and
//! truncations without panicking and accepts only what its encoder writes; the approval rule
//! agrees with a plain reading of the policy; `is_newer` is a strict order per stream.

use proptest::prelude::*;
use trust::grid::{
    approvals_satisfy, is_newer, Approval, Cancellation, Capacity, Constraints, Contract,
    ContractWorkload, Disk, Egress, Endpoint, Farm, Lease, Nic, NodeRegistration, Placement,
    StatusReport, Stream, Supersession, VolumeClaim, WorkloadState, WorkloadStatus,
};
use trust::{Digest, PolicyMember, PublicKey, SecretKey, SignedBody, SignerPolicy};

fn pk(n: u8) -> PublicKey {
    SecretKey::from_seed([n; 32]).public()
}

fn key() -> impl Strategy<Value = PublicKey> {
    (1u8..40).prop_map(pk)
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn farm() -> impl Strategy<Value = Farm> {
    (1u64.., key(), "[A-Za-z0-9][A-Za-z0-9 ._-]{0,40}[a-z]").prop_map(|(version, farmer, name)| {
        Farm {
            version,
            farmer,
            name,
        }
    })
}

fn node() -> impl Strategy<Value = NodeRegistration> {
    (
        (1u64.., key(), key(), 1u32..=4096, 1u64..),
        prop::collection::btree_map("[a-z0-9]{1,15}", 1u64.., 0..5),
        prop::collection::btree_map("[a-z0-9.]{1,15}", any::<[u8; 6]>(), 0..5),
        (any::<u64>(), digest()),
    )
        .prop_map(
            |(
                (sequence, node, farm, cpus, memory_mib),
                disks,
                nics,
                (release_version, release_manifest),
            )| {
                NodeRegistration {
                    sequence,
                    node,
                    farm,
                    capacity: Capacity {
                        cpus,
                        memory_mib,
                        disks: disks
                            .into_iter()
                            .map(|(name, size_mib)| Disk { name, size_mib })
                            .collect(),
                        nics: nics
                            .into_iter()
                            .map(|(name, mac)| Nic { name, mac })
                            .collect(),
                    },
                    release_version,
                    release_manifest,
                }
            },
        )
}

fn egress() -> impl Strategy<Value = Egress> {
    prop_oneof![
        Just(Egress::None),
        Just(Egress::Any),
        prop::collection::btree_set(("[a-z0-9.:-]{1,30}", any::<u16>()), 0..4).prop_map(|s| {
            Egress::Only(
                s.into_iter()
                    .map(|(host, port)| Endpoint { host, port })
                    .collect(),
            )
        }),
    ]
}

fn workload(name: String) -> impl Strategy<Value = ContractWorkload> {
    (
        digest(),
        1u8..=32,
        32u32..=65536,
        prop::collection::btree_map("[a-z0-9-]{1,8}", 1u32..=1_048_576, 0..3),
        egress(),
        prop::collection::btree_map("[A-Z_]{1,8}", "\\PC{0,12}", 0..4),
    )
        .prop_map(move |(manifest, vcpus, memory_mib, volumes, egress, env)| {
            ContractWorkload {
                name: name.clone(),
                manifest,
                vcpus,
                memory_mib,
                volumes: volumes
                    .into_iter()
                    .map(|(name, size_mib)| VolumeClaim { name, size_mib })
                    .collect(),
                egress,
                env: env.into_iter().collect(),
            }
        })
}

fn policy() -> impl Strategy<Value = SignerPolicy> {
    prop::collection::vec((0u32..4, any::<bool>()), 1..6).prop_flat_map(|members| {
        let members: Vec<PolicyMember> = members
            .into_iter()
            .enumerate()
            .map(|(i, (weight, required))| PolicyMember {
                name: format!("s{i}"),
                key: pk(100 + u8::try_from(i).unwrap()),
                weight: if i == 0 { weight.max(1) } else { weight },
                required,
            })
            .collect();
        let total: u32 = members.iter().map(|m| m.weight).sum();
        (1..=total, Just(members))
            .prop_map(|(threshold, members)| SignerPolicy { threshold, members })
    })
}

fn contract() -> impl Strategy<Value = Contract> {
    (
        key(),
        policy(),
        prop::collection::btree_set("[a-z0-9-]{1,10}", 1..4)
            .prop_flat_map(|names| names.into_iter().map(workload).collect::<Vec<_>>()),
        prop::collection::btree_set(1u8..40, 0..3),
        any::<u64>(),
        any::<u32>(),
        prop::option::of((2u64.., digest(), digest())),
    )
        .prop_map(
            |(owner, stakeholders, workloads, farms, min_memory_mib, min_cpus, later)| {
                let supersedes = later.map(|(v, id, body)| {
                    let body = if v == 2 { id } else { body };
                    (
                        v,
                        trust::grid::Previous {
                            contract: trust::grid::ContractId(id),
                            body,
                        },
                    )
                });
                Contract {
                    version: supersedes.map_or(1, |(v, _)| v),
                    supersedes: supersedes.map(|(_, p)| p),
                    owner,
                    stakeholders,
                    workloads,
                    constraints: Constraints {
                        farms: farms.into_iter().map(pk).collect(),
                        min_memory_mib,
                        min_cpus,
                        copies: 1,
                    },
                }
            },
        )
}

fn status() -> impl Strategy<Value = StatusReport> {
    (
        (1u64.., key(), digest(), 1u64..),
        prop::collection::btree_map(
            "[a-z0-9-]{1,10}",
            (
                0usize..7,
                prop::option::of(any::<i32>()),
                any::<u32>(),
                "[ -~]{0,40}",
            ),
            0..5,
        ),
    )
        .prop_map(
            |((sequence, node, contract, version), workloads)| StatusReport {
                sequence,
                node,
                contract: trust::grid::ContractId(contract),
                version,
                workloads: workloads
                    .into_iter()
                    .map(
                        |(name, (state, exit_code, restarts, reason))| WorkloadStatus {
                            name,
                            state: WorkloadState::ALL[state],
                            exit_code,
                            restarts,
                            reason,
                            tail: None,
                        },
                    )
                    .collect(),
            },
        )
}

fn small() -> impl Strategy<Value = (Approval, Placement, Cancellation, Lease)> {
    (
        (1u64.., digest(), digest(), key()),
        (1u64.., 1u64.., key(), key(), "[ -~]{0,60}"),
        (any::<u64>(), key()),
    )
        .prop_map(
            |((version, contract, body, who), (seq, pver, node, owner, reason), (expires, n))| {
                let contract = trust::grid::ContractId(contract);
                (
                    Approval {
                        version,
                        contract,
                        body,
                        stakeholder: who,
                    },
                    Placement {
                        sequence: seq,
                        contract,
                        version: pver,
                        node,
                        owner,
                        reason: reason.clone(),
                    },
                    Cancellation {
                        version,
                        contract,
                        owner,
                        reason,
                    },
                    Lease {
                        sequence: seq,
                        node: n,
                        expires,
                    },
                )
            },
        )
}

/// Round trip, and every truncation is refused.
fn check<B: SignedBody + PartialEq + std::fmt::Debug>(body: &B) -> Result<(), TestCaseError> {
    let bytes = body.encode();
    let decoded = B::decode(&bytes);
    prop_assert_eq!(decoded.as_ref(), Ok(body));
    for cut in 0..bytes.len() {
        prop_assert!(B::decode(&bytes[..cut]).is_err());
    }
    Ok(())
}

/// Whatever decodes re-encodes to the same bytes.
fn canonical<B: SignedBody>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(b) = B::decode(bytes) {
        prop_assert_eq!(b.encode(), bytes);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_kind_round_trips(f in farm(), n in node(), c in contract(), s in status(), (a, p, x, l) in small()) {
        check(&f)?;
        check(&n)?;
        check(&c)?;
        check(&s)?;
        check(&a)?;
        check(&p)?;
        check(&x)?;
        check(&l)?;
    }

    #[test]
    fn arbitrary_bodies_never_panic_and_only_canonical_ones_decode(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        // Behind a valid format byte, so the fields themselves are exercised.
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&tail);
        canonical::<Farm>(&bytes)?;
        canonical::<NodeRegistration>(&bytes)?;
        canonical::<Contract>(&bytes)?;
        canonical::<Approval>(&bytes)?;
        canonical::<Placement>(&bytes)?;
        canonical::<Cancellation>(&bytes)?;
        canonical::<StatusReport>(&bytes)?;
        canonical::<Lease>(&bytes)?;
        let _ = trust::verify_named::<Contract>(&bytes);
    }

    #[test]
    fn approvals_agree_with_a_plain_reading_of_the_policy(c in contract(), approvers in prop::collection::vec(0usize..8, 0..10)) {
        let members = &c.stakeholders.members;
        let approvals: Vec<Approval> = approvers
            .iter()
            .map(|&i| Approval {
                version: c.version,
                contract: c.id(),
                body: c.body_digest(),
                // Indices past the members are strangers.
                stakeholder: members.get(i).map_or_else(|| pk(200), |m| m.key),
            })
            .collect();
        let approved = |m: &PolicyMember| approvals.iter().any(|a| a.stakeholder == m.key);
        let weight: u64 = members.iter().filter(|m| approved(m)).map(|m| u64::from(m.weight)).sum();
        let expected = members.iter().all(|m| !m.required || approved(m))
            && weight >= u64::from(c.stakeholders.threshold);
        let result = approvals_satisfy(&c, &approvals);
        prop_assert_eq!(result.is_ok(), expected, "{:?}", result);
        if let Ok(tally) = result {
            prop_assert_eq!(tally.weight, weight);
        }
    }

    #[test]
    fn is_newer_is_a_strict_order_within_a_stream(a in any::<u64>(), b in any::<u64>(), n in 1u8..5, m in 1u8..5) {
        let s = |key: u8, version: u64| Supersession { stream: Stream::Lease(pk(key)), version };
        prop_assert_eq!(is_newer(&s(n, a), &s(n, b)), b > a);
        prop_assert!(!(is_newer(&s(n, a), &s(n, b)) && is_newer(&s(n, b), &s(n, a))));
        if n != m {
            prop_assert!(!is_newer(&s(n, a), &s(m, b)));
        }
    }
}

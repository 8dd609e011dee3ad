//! The shared rules: approvals against the stakeholder policy, placement fit, owner checks.

use alloc::vec;

use super::*;

fn approvals(stakeholders: &[u8]) -> Vec<Approval> {
    let c = contract();
    stakeholders.iter().map(|&n| approval(n, &c)).collect()
}

#[test]
fn approvals_meeting_the_policy_pass() {
    let c = contract();
    let tally = approvals_satisfy(&c, &approvals(&[10, 11])).expect("legal + it");
    assert_eq!(tally.weight, 2);
    assert_eq!(tally.approvers, vec!["legal".to_string(), "it".to_string()]);
    assert_eq!(
        (tally.other_version, tally.unknown, tally.duplicates),
        (0, 0, 0)
    );
}

#[test]
fn an_optional_stakeholder_who_did_not_approve_fails_nothing() {
    // The mistake to avoid: treating every member as required. "finance" is optional and
    // silent; legal (required) and it reach the threshold.
    let c = contract();
    assert!(approvals_satisfy(&c, &approvals(&[11, 10])).is_ok());
    // And with a threshold of 1, legal alone suffices though two optional members are silent.
    let mut low = contract();
    low.stakeholders.threshold = 1;
    assert!(approvals_satisfy(&low, &[approval(10, &low)]).is_ok());
}

#[test]
fn a_missing_required_stakeholder_fails_even_above_threshold() {
    let c = contract();
    assert_eq!(
        approvals_satisfy(&c, &approvals(&[11, 12])),
        Err(RuleError::MissingApprovals {
            missing: vec!["legal".to_string()]
        })
    );
    assert_eq!(
        approvals_satisfy(&c, &approvals(&[11, 12]))
            .map_err(|e| e.to_string())
            .unwrap_err(),
        "required stakeholders legal have not approved"
    );
}

#[test]
fn below_threshold_fails() {
    let c = contract();
    assert_eq!(
        approvals_satisfy(&c, &approvals(&[10])),
        Err(RuleError::BelowThreshold {
            weight: 1,
            threshold: 2
        })
    );
    assert!(approvals_satisfy(&c, &[]).is_err());
}

#[test]
fn unknown_and_duplicate_approvals_add_nothing() {
    let c = contract();
    assert!(matches!(
        approvals_satisfy(&c, &approvals(&[10, 10, 10, 50, 51])),
        Err(RuleError::BelowThreshold { weight: 1, .. })
    ));
    let tally = approvals_satisfy(&c, &approvals(&[10, 10, 50, 12])).expect("legal + finance");
    assert_eq!((tally.unknown, tally.duplicates, tally.weight), (1, 1, 2));
}

#[test]
fn approvals_of_another_version_body_or_contract_count_nothing() {
    let c = contract();
    let v2 = contract_v2();
    let mut wrong_body = approval(11, &c);
    wrong_body.body = v2.body_digest();
    let mut wrong_version = approval(11, &c);
    wrong_version.version = 2;
    let mut wrong_contract = approval(11, &c);
    wrong_contract.contract = ContractId(Digest::of(b"other"));
    let list = vec![approval(10, &c), wrong_body, wrong_version, wrong_contract];
    assert!(matches!(
        approvals_satisfy(&c, &list),
        Err(RuleError::BelowThreshold { weight: 1, .. })
    ));
    // Approvals of version 1 do not carry over to version 2.
    assert!(approvals_satisfy(&v2, &approvals(&[10, 11])).is_err());
    let tally = approvals_satisfy(
        &v2,
        &[approval(10, &v2), approval(11, &v2), approval(12, &c)],
    )
    .expect("v2 approved");
    assert_eq!(tally.other_version, 1);
}

#[test]
fn an_unusable_stakeholder_policy_fails_closed() {
    let mut c = contract();
    c.stakeholders.threshold = 0;
    assert!(matches!(
        approvals_satisfy(&c, &approvals(&[10, 11, 12])),
        Err(RuleError::Stakeholders(_))
    ));
}

#[test]
fn a_contract_fits_an_empty_node() {
    let c = contract();
    assert_eq!(
        c.resources(),
        Resources {
            vcpus: 3,
            memory_mib: 1536,
            disk_mib: 2048
        }
    );
    assert_eq!(placement_fits(&c, &node(), Resources::default()), Ok(()));
}

#[test]
fn placement_respects_the_allowed_farms() {
    let c = contract();
    let mut elsewhere = node();
    elsewhere.farm = pk(40);
    assert!(matches!(
        placement_fits(&c, &elsewhere, Resources::default()),
        Err(RuleError::FarmNotAllowed { .. })
    ));
    let mut any_farm = contract();
    any_farm.constraints.farms.clear();
    assert_eq!(
        placement_fits(&any_farm, &elsewhere, Resources::default()),
        Ok(())
    );
}

#[test]
fn placement_respects_the_minimums() {
    let mut c = contract();
    c.constraints.min_cpus = 9;
    assert_eq!(
        placement_fits(&c, &node(), Resources::default()),
        Err(RuleError::NodeTooSmall {
            what: "CPUs",
            need: 9,
            have: 8
        })
    );
    let mut c = contract();
    c.constraints.min_memory_mib = 32 * 1024;
    assert!(matches!(
        placement_fits(&c, &node(), Resources::default()),
        Err(RuleError::NodeTooSmall {
            what: "MiB of memory",
            ..
        })
    ));
}

#[test]
fn placement_counts_what_is_already_placed() {
    let c = contract();
    let n = node();
    // Exactly full after placing: fits.
    let placed = Resources {
        vcpus: 5,
        memory_mib: 16 * 1024 - 1536,
        disk_mib: 110 * 1024 - 2048,
    };
    assert_eq!(placement_fits(&c, &n, placed), Ok(()));
    for (more, what) in [
        (
            Resources {
                vcpus: 1,
                ..Resources::default()
            },
            "CPUs",
        ),
        (
            Resources {
                memory_mib: 1,
                ..Resources::default()
            },
            "MiB of memory",
        ),
        (
            Resources {
                disk_mib: 1,
                ..Resources::default()
            },
            "MiB of disk",
        ),
    ] {
        assert!(
            matches!(
                placement_fits(&c, &n, placed.plus(more)),
                Err(RuleError::NoRoom { what: w, .. }) if w == what
            ),
            "{what}"
        );
    }
    // More placed than the node has (a stale registration): no room, no overflow.
    let over = Resources {
        vcpus: u64::MAX,
        memory_mib: u64::MAX,
        disk_mib: u64::MAX,
    };
    assert!(placement_fits(&c, &n, over.plus(over)).is_err());
}

#[test]
fn placements_and_cancellations_must_be_the_owners() {
    let c = contract();
    assert_eq!(placement_by_owner(&c, &placement()), Ok(()));
    let mut by_stranger = placement();
    by_stranger.owner = pk(66);
    assert!(matches!(
        placement_by_owner(&c, &by_stranger),
        Err(RuleError::NotTheOwner {
            what: "placement",
            ..
        })
    ));
    let mut other_contract = placement();
    other_contract.contract = ContractId(Digest::of(b"x"));
    assert!(matches!(
        placement_by_owner(&c, &other_contract),
        Err(RuleError::OtherContract { .. })
    ));
    let mut other_version = placement();
    other_version.version = 2;
    assert_eq!(
        placement_by_owner(&c, &other_version),
        Err(RuleError::OtherVersion {
            what: "placement",
            expected: 1,
            found: 2
        })
    );
    // A placement of version 2 is checked against version 2 (same id, same owner).
    let v2 = contract_v2();
    assert_eq!(placement_by_owner(&v2, &other_version), Ok(()));

    assert_eq!(cancellation_by_owner(&c, &cancellation()), Ok(()));
    assert_eq!(cancellation_by_owner(&v2, &cancellation()), Ok(()));
    let mut stranger = cancellation();
    stranger.owner = pk(66);
    assert!(cancellation_by_owner(&c, &stranger).is_err());
}

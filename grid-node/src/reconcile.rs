//! Desired against actual: one pure function from the verdicts of the contracts the node heard
//! about and the contracts it runs to the actions that make the second the first.

use std::collections::BTreeMap;

use trust::grid::ContractId;

/// What the node wants for one contract, from its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Run this version.
    Run(u64),
    /// Keep what runs, whatever it is (refused newer version, or same version).
    Keep,
    /// Not here any more (cancelled, or placed elsewhere).
    Gone,
}

/// One step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a version that does not run.
    Start {
        /// The contract.
        contract: ContractId,
        /// The version.
        version: u64,
    },
    /// Stop the running version (volumes kept) and start a newer one.
    Replace {
        /// The contract.
        contract: ContractId,
        /// What runs.
        from: u64,
        /// What replaces it.
        to: u64,
    },
    /// Stop it for good and remove its volumes.
    Remove {
        /// The contract.
        contract: ContractId,
        /// What ran.
        version: u64,
    },
}

/// The actions for `wanted` (contracts the node has a verdict on) against `running` (contract →
/// version). A running contract without a verdict is left alone: the node heard nothing new.
pub fn reconcile(
    wanted: &BTreeMap<ContractId, Want>,
    running: &BTreeMap<ContractId, u64>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (&contract, want) in wanted {
        let now = running.get(&contract).copied();
        match (*want, now) {
            (Want::Run(version), None) => actions.push(Action::Start { contract, version }),
            (Want::Run(to), Some(from)) if to > from => {
                actions.push(Action::Replace { contract, from, to })
            }
            (Want::Gone, Some(version)) => actions.push(Action::Remove { contract, version }),
            _ => {}
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use trust::Digest;

    fn id(n: u8) -> ContractId {
        ContractId(Digest([n; 32]))
    }

    #[test]
    fn the_table_of_cases() {
        let running: BTreeMap<ContractId, u64> = [(id(1), 1), (id(2), 2), (id(3), 1), (id(4), 3)]
            .into_iter()
            .collect();
        let wanted: BTreeMap<ContractId, Want> = [
            (id(1), Want::Run(2)), // a new version: replace
            (id(2), Want::Run(2)), // the same: nothing
            (id(3), Want::Gone),   // cancelled or moved: remove
            (id(4), Want::Keep),   // a refused newer version: keep the old one
            (id(5), Want::Run(1)), // new here: start
            (id(6), Want::Gone),   // gone and never ran: nothing
            (id(7), Want::Keep),   // refused and never ran: nothing
        ]
        .into_iter()
        .collect();
        assert_eq!(
            reconcile(&wanted, &running),
            [
                Action::Replace {
                    contract: id(1),
                    from: 1,
                    to: 2
                },
                Action::Remove {
                    contract: id(3),
                    version: 1
                },
                Action::Start {
                    contract: id(5),
                    version: 1
                },
            ]
        );
        assert!(reconcile(&BTreeMap::new(), &running).is_empty());
    }
}

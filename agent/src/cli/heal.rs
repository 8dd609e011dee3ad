//! `nullos agent`: the self-healing loop. It follows the owner's feed (`owner/<key>`), folds
//! each contract's entries, and asks [`heal`] what to do; a `Place` becomes the next placement
//! of the contract's one placement stream (so the old one is superseded: never two live
//! placements), with the reason recorded in the placement document. It keeps nothing of its
//! own: after a restart it reads the same log and decides the same.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agent::keys;
use agent::ledger::{contract_of, ContractLog};
use agent::placement::{choose_node, heal, next_placement, Action, HealPolicy, Observed};
use anyhow::Result;
use trust::grid::ContractId;

use super::online::{now, owner_key, Online};
use super::sign;

/// How the loop runs.
pub struct AgentArgs<'a> {
    pub key: &'a Path,
    pub grace_secs: u64,
    pub restart_limit: u32,
    pub poll_secs: u64,
}

/// Runs until killed (or a witness refusal: a notary whose log changed is not followed).
pub fn run(online: &mut Online, args: &AgentArgs<'_>) -> Result<()> {
    let key = keys::load_secret(args.key)?;
    let owner = key.public();
    let feed = owner_key(&owner);
    let policy = HealPolicy {
        grace_secs: args.grace_secs,
        restart_limit: args.restart_limit,
    };
    println!(
        "nullos agent: watching the contracts of {} (grace {} s, restart limit {})",
        owner.short(),
        args.grace_secs,
        args.restart_limit
    );
    let mut contracts: BTreeMap<ContractId, ContractLog> = BTreeMap::new();
    let mut after: Option<u64> = None;
    // The last line said about each contract, so a standing refusal is not repeated.
    let mut said: BTreeMap<ContractId, String> = BTreeMap::new();
    let mut new_entries = online.entries(&feed, None)?;
    loop {
        for (index, data) in &new_entries {
            after = Some(after.map_or(*index, |a| a.max(*index)));
            if let Some(id) = contract_of(data) {
                contracts.entry(id).or_default();
            }
        }
        // Every contract is read again (from its last entry on): a node's reports are the
        // contract's entries whichever key they are filed under.
        for (id, log) in &mut contracts {
            online.refresh(id, log)?;
        }
        let nodes = online.nodes()?;
        let t = now();
        for (id, log) in &mut contracts {
            let Some(contract) = log.latest().cloned() else {
                continue;
            };
            if contract.owner != owner {
                continue;
            }
            let lease = log
                .placement
                .as_ref()
                .and_then(|p| nodes.iter().find(|n| n.key == p.node))
                .and_then(|n| n.lease_expires);
            let seen = Observed {
                cancelled: log.cancellation.is_some(),
                placement: log.placement.as_ref(),
                lease_expires: lease,
                status: log.placed_report(),
            };
            let Action::Place { avoid, reason } = heal(&contract, &seen, t, policy) else {
                continue;
            };
            if log.policy().is_none_or(|p| p.is_err()) {
                // Not approved yet: `deploy` says whose signatures are missing.
                continue;
            }
            let own = contract.resources();
            let candidates: Vec<_> = nodes
                .iter()
                .filter_map(|n| {
                    let here = log.placement.as_ref().is_some_and(|p| p.node == n.key);
                    n.candidate(here.then_some(own))
                })
                .collect();
            let line = match choose_node(&contract, &candidates, t, avoid.as_ref()) {
                Err(e) => format!("contract {id}: {reason}; cannot place it: {e}"),
                Ok(chosen) => {
                    let node = chosen.registration.node;
                    let p = next_placement(&contract, log.placement.as_ref(), node, &reason);
                    match online.submit(&sign(&p, &key)?, "placement") {
                        Ok(r) => {
                            let line = format!(
                                "contract {id}: placed on node {} (placement {}, log index {}): {reason}",
                                node.short(),
                                p.sequence,
                                r.index
                            );
                            online.refresh(id, log)?;
                            println!("{line}");
                            said.remove(id);
                            continue;
                        }
                        Err(e) => format!(
                            "contract {id}: {reason}; placement on node {} refused: {}",
                            node.short(),
                            super::chain(&e)
                        ),
                    }
                }
            };
            if said.get(id) != Some(&line) {
                println!("{line}");
                said.insert(*id, line);
            }
        }
        // Lease lapses write nothing to the log, so the feed is polled with a short timeout.
        new_entries = online.wait(&feed, after, Duration::from_secs(args.poll_secs.max(1)))?;
    }
}

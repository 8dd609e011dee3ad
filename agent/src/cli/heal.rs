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
use agent::witness::WitnessError;
use anyhow::Result;
use trust::grid::ContractId;
use trust::{PublicKey, SecretKey};

use super::online::{candidates, now, owner_key, DirectoryNode, Online};
use super::sign;

/// How the loop runs.
pub struct AgentArgs<'a> {
    pub key: &'a Path,
    pub grace_secs: u64,
    pub restart_limit: u32,
    pub poll_secs: u64,
}

/// The loop's memory between rounds; all of it can be rebuilt from the log.
struct Healer<'a> {
    online: &'a mut Online,
    key: SecretKey,
    owner: PublicKey,
    feed: String,
    policy: HealPolicy,
    contracts: BTreeMap<ContractId, ContractLog>,
    /// The last feed entry seen.
    after: Option<u64>,
    /// What was last said about each contract's standing problem, so it is not repeated.
    said: BTreeMap<ContractId, String>,
}

/// Runs until killed, or until the witness refuses the notary (a notary whose log was rewritten
/// is not followed). A notary that cannot be reached or refuses is retried every poll.
pub fn run(online: &mut Online, args: &AgentArgs<'_>) -> Result<()> {
    let key = keys::load_secret(args.key)?;
    let owner = key.public();
    println!(
        "nullos agent: watching the contracts of {} (grace {} s, restart limit {})",
        owner.short(),
        args.grace_secs,
        args.restart_limit
    );
    let poll = Duration::from_secs(args.poll_secs.max(1));
    let mut healer = Healer {
        online,
        key,
        owner,
        feed: owner_key(&owner),
        policy: HealPolicy {
            grace_secs: args.grace_secs,
            restart_limit: args.restart_limit,
        },
        contracts: BTreeMap::new(),
        after: None,
        said: BTreeMap::new(),
    };
    let mut trouble = String::new();
    loop {
        match healer.round(poll) {
            Ok(()) => trouble.clear(),
            Err(e) if caught_rewriting(&e) => return Err(e),
            Err(e) => {
                let line = super::chain(&e);
                if line != trouble {
                    eprintln!("nullos agent: {line} (retrying every {} s)", poll.as_secs());
                    trouble = line;
                }
                std::thread::sleep(poll);
            }
        }
    }
}

impl Healer<'_> {
    /// Reads what is new, heals what needs it, then waits on the feed for up to `poll` (lease
    /// lapses write nothing to the log, so the wait is short).
    fn round(&mut self, poll: Duration) -> Result<()> {
        if self.after.is_none() {
            // The whole feed (at the start, or while it is empty).
            let all = self.online.entries(&self.feed, None)?;
            self.take(&all);
        }
        // Every contract is read again from its last entry on: a node's reports are the
        // contract's entries whichever key they are filed under.
        for (id, log) in &mut self.contracts {
            self.online.refresh(id, log)?;
        }
        let nodes = self.online.nodes()?;
        let ids: Vec<ContractId> = self.contracts.keys().copied().collect();
        for id in ids {
            self.heal_one(&id, &nodes)?;
        }
        let waited = self.online.wait(&self.feed, self.after, poll)?;
        self.take(&waited);
        Ok(())
    }

    fn take(&mut self, entries: &[(u64, Vec<u8>)]) {
        for (index, data) in entries {
            self.after = Some(self.after.map_or(*index, |a| a.max(*index)));
            if let Some(id) = contract_of(data) {
                self.contracts.entry(id).or_default();
            }
        }
    }

    fn heal_one(&mut self, id: &ContractId, nodes: &[DirectoryNode]) -> Result<()> {
        let Some(log) = self.contracts.get_mut(id) else {
            return Ok(());
        };
        let Some(contract) = log.latest().cloned() else {
            return Ok(());
        };
        if contract.owner != self.owner {
            return Ok(());
        }
        let t = now();
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
        let Action::Place { avoid, reason } = heal(&contract, &seen, t, self.policy) else {
            self.said.remove(id);
            return Ok(());
        };
        if log.policy().is_none_or(|p| p.is_err()) {
            // Not approved yet: `deploy` says whose signatures are missing.
            return Ok(());
        }
        let candidates = candidates(nodes, &contract, log);
        // (what is said, what makes it the same problem as before: not the seconds counting)
        let (line, problem) = match choose_node(&contract, &candidates, t, avoid.as_ref()) {
            Err(e) => (
                format!("contract {id}: {reason}; cannot place it: {e}"),
                e.to_string(),
            ),
            Ok(chosen) => {
                let node = chosen.registration.node;
                let p = next_placement(&contract, log.placement.as_ref(), node, &reason);
                match self.online.submit(&sign(&p, &self.key)?, "placement") {
                    Ok(r) => {
                        println!(
                            "contract {id}: placed on node {} (placement {}, log index {}): {reason}",
                            node.short(),
                            p.sequence,
                            r.index
                        );
                        self.online.refresh(id, log)?;
                        self.said.remove(id);
                        return Ok(());
                    }
                    Err(e) if caught_rewriting(&e) => return Err(e),
                    Err(e) => {
                        let why = super::chain(&e);
                        (
                            format!(
                                "contract {id}: {reason}; placement on node {} refused: {why}",
                                node.short()
                            ),
                            why,
                        )
                    }
                }
            }
        };
        if self.said.get(id) != Some(&problem) {
            println!("{line}");
            self.said.insert(*id, problem);
        }
        Ok(())
    }
}

/// Whether `e` is the witness catching the notary rewriting its log.
fn caught_rewriting(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<WitnessError>()
            .is_some_and(WitnessError::is_rewrite)
    })
}

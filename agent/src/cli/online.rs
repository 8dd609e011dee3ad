//! The connection every online command uses: the notary's client pinned to its key, the
//! witness that accepts only checkpoints extending the kept one, and reads of the log whose
//! every entry is proven into a verified checkpoint.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::ledger::ContractLog;
use agent::placement::Candidate;
use agent::witness::{state_dir, Witness};
use anyhow::{anyhow, Context, Result};
use notary_client::{Client, Receipt};
use serde_json::Value as Json;
use tlog::{leaf_hash, verify_inclusion, Checkpoint};
use trust::grid::rules::Resources;
use trust::grid::{Capacity, Contract, ContractId, Disk, NodeRegistration};
use trust::{Digest, PublicKey, SignedDocument};

/// A session with the notary.
pub struct Online {
    pub client: Client,
    pub witness: Witness,
    pub checkpoint: Checkpoint,
    /// The size of the checkpoint kept before this session, if there was one.
    pub kept_before: Option<u64>,
}

impl Online {
    /// Opens the witness state, pins or checks the key, and verifies the notary's checkpoint
    /// against the kept one.
    pub fn open(url: &str, key: Option<PublicKey>, state: Option<&Path>) -> Result<Online> {
        let dir = state_dir(state)?;
        let mut witness = Witness::open(&dir, url, key)?;
        let client = witness.client()?;
        let seen = witness.observe(&client)?;
        Ok(Online {
            client,
            witness,
            checkpoint: seen.checkpoint,
            kept_before: seen.previous_size,
        })
    }

    /// Fetches the latest checkpoint and checks it extends the kept one.
    pub fn observe(&mut self) -> Result<&Checkpoint> {
        self.checkpoint = self.witness.observe(&self.client)?.checkpoint;
        Ok(&self.checkpoint)
    }

    /// Every entry filed under `key` after `after`, each proven into a verified checkpoint.
    pub fn entries(&mut self, key: &str, after: Option<u64>) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut cursor = after;
        loop {
            let page = self
                .client
                .wait(key, cursor, Duration::ZERO)
                .with_context(|| format!("cannot read the log's entries under {key}"))?;
            let Some(&(last, _)) = page.last() else { break };
            if cursor.is_some_and(|c| last <= c) {
                break;
            }
            cursor = Some(last);
            out.extend(page);
        }
        self.prove(&out)?;
        Ok(out)
    }

    /// Long-polls `key` after `after` for up to `timeout`; the entries returned are proven.
    pub fn wait(
        &mut self,
        key: &str,
        after: Option<u64>,
        timeout: Duration,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let page = self
            .client
            .wait(key, after, timeout)
            .with_context(|| format!("cannot wait on the log's entries under {key}"))?;
        self.prove(&page)?;
        let mut out = page;
        if let Some(&(last, _)) = out.last() {
            // Whatever else is there beyond one page (proven by `entries`).
            out.extend(self.entries(key, Some(last))?);
        }
        Ok(out)
    }

    /// Checks each entry's inclusion in the kept checkpoint (observing a newer one first if an
    /// entry lies beyond it).
    fn prove(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<()> {
        if entries
            .iter()
            .any(|(index, _)| *index >= self.checkpoint.size)
        {
            self.observe()?;
        }
        let size = self.checkpoint.size;
        for (index, data) in entries {
            if *index >= size {
                return Err(anyhow!(
                    "the notary served entry {index} beyond its checkpoint of size {size}"
                ));
            }
            let proof = self.client.inclusion_proof(*index, size)?;
            verify_inclusion(
                *index,
                size,
                &leaf_hash(data),
                &proof,
                &self.checkpoint.root,
            )
            .with_context(|| format!("entry {index} is not in the notary's checkpoint"))?;
        }
        Ok(())
    }

    /// The log index of `document` if it is already logged (same kind and body).
    pub fn logged(&mut self, document: &[u8]) -> Result<Option<u64>> {
        let d = SignedDocument::decode(document).context("a document to send does not decode")?;
        let key = format!("body/{}/{}", d.kind().code(), d.body_digest().to_hex());
        Ok(self.entries(&key, None)?.first().map(|(i, _)| *i))
    }

    /// Sends `document` and returns its receipt (checked by the client: the checkpoint
    /// verifies and the proof places the bytes in it); the witness then checks that
    /// checkpoint extends the kept one.
    pub fn submit(&mut self, document: &[u8], what: &str) -> Result<Receipt> {
        let receipt = self
            .client
            .submit(document)
            .with_context(|| format!("the notary did not take the {what}"))?;
        self.observe()?;
        Ok(receipt)
    }

    /// The contract as its log entries describe it.
    pub fn contract_log(&mut self, id: &ContractId) -> Result<ContractLog> {
        let mut log = ContractLog::default();
        self.refresh(id, &mut log)?;
        Ok(log)
    }

    /// Applies the contract's entries after `log.last_index`.
    pub fn refresh(&mut self, id: &ContractId, log: &mut ContractLog) -> Result<()> {
        for (index, data) in self.entries(&contract_key(id), log.last_index)? {
            log.apply(id, index, &data);
        }
        Ok(())
    }

    /// The directory of nodes (the notary's summary of its log and leases).
    pub fn nodes(&mut self) -> Result<Vec<DirectoryNode>> {
        let v = self.client.nodes().context("cannot read the nodes")?;
        v["nodes"]
            .as_array()
            .ok_or_else(|| anyhow!("the notary's node directory has no 'nodes'"))?
            .iter()
            .map(DirectoryNode::from_json)
            .collect()
    }
}

/// One node of the directory.
#[derive(Debug, Clone)]
pub struct DirectoryNode {
    pub key: PublicKey,
    pub farm: PublicKey,
    pub approved: bool,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub used: Resources,
    pub lease_expires: Option<u64>,
    pub live: bool,
}

impl DirectoryNode {
    fn from_json(v: &Json) -> Result<DirectoryNode> {
        let key = |field: &str| -> Result<PublicKey> {
            let hex = v[field]
                .as_str()
                .ok_or_else(|| anyhow!("a directory node has no '{field}'"))?;
            let bytes: [u8; 32] = hex::decode(hex)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow!("a directory node's '{field}' is not a key"))?;
            PublicKey::from_bytes(&bytes)
                .map_err(|_| anyhow!("a directory node's '{field}' is not a key"))
        };
        let num = |a: &str, b: &str| v[a][b].as_u64().unwrap_or(0);
        Ok(DirectoryNode {
            key: key("key")?,
            farm: key("farm")?,
            approved: v["approved"].as_bool().unwrap_or(false),
            cpus: u32::try_from(num("capacity", "cpus")).unwrap_or(u32::MAX),
            memory_mib: num("capacity", "memory_mib"),
            disk_mib: num("capacity", "disk_mib"),
            used: Resources {
                vcpus: num("used", "cpus"),
                memory_mib: num("used", "memory_mib"),
                disk_mib: num("used", "disk_mib"),
            },
            lease_expires: v["last_lease"]["expires"].as_u64(),
            live: v["live"].as_bool().unwrap_or(false),
        })
    }

    /// A placement candidate: what `choose_node` needs of a registration (the farm and the
    /// capacity; the disks summed into one), unless the farm has not enrolled it.
    pub fn candidate(&self, placed_here: Option<Resources>) -> Option<Candidate> {
        if !self.approved || self.cpus == 0 {
            return None;
        }
        let used = match placed_here {
            // The contract already placed here counts against the node in the directory, but
            // not against its own re-placement.
            Some(own) => Resources {
                vcpus: self.used.vcpus.saturating_sub(own.vcpus),
                memory_mib: self.used.memory_mib.saturating_sub(own.memory_mib),
                disk_mib: self.used.disk_mib.saturating_sub(own.disk_mib),
            },
            None => self.used,
        };
        Some(Candidate {
            registration: NodeRegistration {
                sequence: 1,
                node: self.key,
                farm: self.farm,
                capacity: Capacity {
                    cpus: self.cpus,
                    memory_mib: self.memory_mib,
                    disks: if self.disk_mib > 0 {
                        vec![Disk {
                            name: "disks".into(),
                            size_mib: self.disk_mib,
                        }]
                    } else {
                        Vec::new()
                    },
                    nics: Vec::new(),
                },
                release_version: 0,
                release_manifest: Digest([0; 32]),
            },
            lease_expires: self.lease_expires,
            placed: used,
        })
    }
}

/// The directory's nodes as placement candidates for `contract`: enrolled nodes, with what is
/// placed there, except the contract itself on the node it is placed on (a re-placement does
/// not compete with its own old placement).
pub fn candidates(
    nodes: &[DirectoryNode],
    contract: &Contract,
    log: &ContractLog,
) -> Vec<Candidate> {
    let own = contract.resources();
    nodes
        .iter()
        .filter_map(|n| {
            let here = log.placement.as_ref().is_some_and(|p| p.node == n.key);
            n.candidate(here.then_some(own))
        })
        .collect()
}

/// The index key of everything about a contract.
pub fn contract_key(id: &ContractId) -> String {
    format!("contract/{}", id.0.to_hex())
}

/// The index key of an owner's feed.
pub fn owner_key(owner: &PublicKey) -> String {
    format!("owner/{}", hex::encode(owner.as_bytes()))
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a contract id (64 hex) or the id of a contract file.
pub fn parse_contract_id(text: &str) -> Option<ContractId> {
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    Some(ContractId(Digest(bytes)))
}

#[cfg(test)]
mod tests {
    use trust::SecretKey;

    use super::*;

    fn key_hex(seed: u8) -> String {
        hex::encode(SecretKey::from_seed([seed; 32]).public().as_bytes())
    }

    fn directory_node(approved: bool) -> Json {
        serde_json::json!({
            "key": key_hex(1), "farm": key_hex(2), "approved": approved,
            "capacity": {"cpus": 4, "memory_mib": 4096, "disk_mib": 1000},
            "used": {"cpus": 2, "memory_mib": 1024, "disk_mib": 100},
            "release_version": 1,
            "last_lease": {"sequence": 9, "expires": 1234},
            "live": true,
        })
    }

    #[test]
    fn a_directory_node_becomes_a_candidate_without_its_own_contract() {
        let n = DirectoryNode::from_json(&directory_node(true)).unwrap();
        assert_eq!(n.lease_expires, Some(1234));
        let c = n.candidate(None).unwrap();
        assert_eq!(c.placed.memory_mib, 1024);
        assert_eq!(c.registration.capacity.disk_mib(), 1000);
        let own = Resources {
            vcpus: 1,
            memory_mib: 256,
            disk_mib: 100,
        };
        let c = n.candidate(Some(own)).unwrap();
        assert_eq!(
            (c.placed.vcpus, c.placed.memory_mib, c.placed.disk_mib),
            (1, 768, 0)
        );
        // A node its farm has not enrolled is no candidate.
        let stray = DirectoryNode::from_json(&directory_node(false)).unwrap();
        assert!(stray.candidate(None).is_none());
    }

    #[test]
    fn a_directory_node_without_a_usable_key_is_refused() {
        let mut v = directory_node(true);
        v["key"] = Json::from("00");
        assert!(DirectoryNode::from_json(&v).is_err());
        let mut v = directory_node(true);
        v["farm"] = Json::Null;
        assert!(DirectoryNode::from_json(&v).is_err());
    }

    #[test]
    fn contract_ids_are_64_hex() {
        assert!(parse_contract_id(&"ab".repeat(32)).is_some());
        assert!(parse_contract_id("ab").is_none());
        assert!(parse_contract_id(&"zz".repeat(32)).is_none());
    }
}

//! A blocking client of the notary's HTTP API, for the node's PID 1, the agent and simulated
//! nodes: no async runtime, and it never links the server.
//!
//! Nothing the notary says is taken on trust. Checkpoints must verify against the pinned
//! notary key ([`Client::checkpoint`]); a new checkpoint must extend the one a caller kept
//! ([`Client::checkpoint_extending`], which makes every client a witness: a notary that
//! rewrote anything it already showed is caught); a write's receipt must prove the written
//! bytes into a signed checkpoint ([`Client::submit`]); a blob must hash to its name
//! ([`Client::get_blob`]).

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::io::{Read, Write};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use thiserror::Error;
use tlog::{
    leaf_hash, verify_inclusion, Checkpoint, CheckpointError, Hash, NoteVerifier, ProofError,
};
use trust::{Digest, Hasher, PublicKey};

/// The largest JSON answer read.
const MAX_JSON_BYTES: u64 = 64 << 20;
/// The largest entry read.
const MAX_ENTRY_BYTES: u64 = 256 * 1024;
/// The largest checkpoint note read.
const MAX_NOTE_BYTES: u64 = tlog::note::MAX_NOTE_BYTES as u64;

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The notary could not be reached, or the connection broke.
    #[error("cannot reach the notary at {url}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<ureq::Transport>,
    },
    /// The notary answered with an error status and its one-line reason.
    #[error("the notary answered {status}: {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The notary's reason.
        reason: String,
    },
    /// The answer does not have the expected shape.
    #[error("the notary's answer to {what} is malformed: {reason}")]
    BadAnswer {
        /// The call.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint did not verify, or does not extend the kept one.
    #[error("checkpoint refused")]
    Checkpoint(#[from] CheckpointError),
    /// A proof did not verify.
    #[error("proof refused")]
    Proof(#[from] ProofError),
    /// A blob's bytes do not hash to its name.
    #[error("blob {expected} arrived with digest {found}")]
    BlobMismatch {
        /// The name asked for.
        expected: Digest,
        /// The digest of what arrived.
        found: Digest,
    },
    /// Reading or writing local data failed.
    #[error("local I/O failed")]
    Io(#[source] std::io::Error),
}

fn bad(what: &'static str, reason: impl Into<String>) -> ClientError {
    ClientError::BadAnswer {
        what,
        reason: reason.into(),
    }
}

/// A write the notary acknowledged, checked: the checkpoint verifies, and the proof places
/// the written bytes at `index` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof.
    pub proof: Vec<Hash>,
    /// The verified checkpoint it proves into.
    pub checkpoint: Checkpoint,
    /// The checkpoint's signed note, as received.
    pub note: String,
}

/// A client of one notary, pinned to its key.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    verifier: NoteVerifier,
}

impl Client {
    /// A client of the notary at `base` (e.g. `http://127.0.0.1:7878`) whose checkpoint key is
    /// `notary_key`.
    pub fn new(base: &str, notary_key: &PublicKey) -> Result<Client, ClientError> {
        let verifier = tlog::notary_verifier(notary_key.as_bytes())
            .map_err(|e| ClientError::Checkpoint(CheckpointError::Note(e)))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            // Long-polls last up to 30 s on the server.
            .timeout_read(Duration::from_secs(60))
            .build();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            verifier,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn call(&self, request: ureq::Request, send: Send<'_>) -> Result<ureq::Response, ClientError> {
        let url = request.url().to_string();
        let result = match send {
            Send::Nothing => request.call(),
            Send::Bytes(b) => request.send_bytes(b),
            Send::Reader(r) => request.send(r),
        };
        match result {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, response)) => {
                let mut reason = String::new();
                let _ = response
                    .into_reader()
                    .take(4096)
                    .read_to_string(&mut reason);
                Err(ClientError::Refused {
                    status,
                    reason: reason.trim().to_string(),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(ClientError::Transport {
                url,
                source: Box::new(t),
            }),
        }
    }

    fn get(&self, path: &str) -> Result<ureq::Response, ClientError> {
        self.call(self.agent.get(&self.url(path)), Send::Nothing)
    }

    fn json(&self, what: &'static str, response: ureq::Response) -> Result<Value, ClientError> {
        let mut text = String::new();
        response
            .into_reader()
            .take(MAX_JSON_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| bad(what, e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| bad(what, e.to_string()))
    }

    /// Renews a node's liveness with a signed lease (kept beside the log; nothing is appended).
    /// Returns the sequence and expiry the notary now holds.
    pub fn renew_lease(&self, lease: &[u8]) -> Result<(u64, u64), ClientError> {
        let response = self.call(
            self.agent
                .post(&self.url("/v1/documents"))
                .set("Content-Type", "application/octet-stream"),
            Send::Bytes(lease),
        )?;
        let v = self.json("lease", response)?;
        let sequence = v["lease"]["sequence"]
            .as_u64()
            .ok_or_else(|| bad("lease", "no lease sequence"))?;
        let expires = v["lease"]["expires"]
            .as_u64()
            .ok_or_else(|| bad("lease", "no lease expiry"))?;
        Ok((sequence, expires))
    }

    fn get_json(&self, what: &'static str, path: &str) -> Result<Value, ClientError> {
        let response = self.call(self.agent.get(&self.url(path)), Send::Nothing)?;
        self.json(what, response)
    }

    /// `GET /v1/nodes`: every registered node (key, farm, approved, capacity, used, last
    /// lease, live). Directory reads are the notary's word, not proven against the log.
    pub fn nodes(&self) -> Result<Value, ClientError> {
        self.get_json("nodes", "/v1/nodes")
    }

    /// `GET /v1/farms`: every registered farm with its approved nodes' capacity.
    pub fn farms(&self) -> Result<Value, ClientError> {
        self.get_json("farms", "/v1/farms")
    }

    /// `GET /v1/contracts/{id}`: a contract's versions, approvals, placement and reports.
    pub fn contract(&self, id: &trust::grid::ContractId) -> Result<Value, ClientError> {
        self.get_json("contract", &format!("/v1/contracts/{}", id.0.to_hex()))
    }

    /// `GET /v1/contracts[?owner=]`: every contract, or the owner's.
    pub fn contracts(&self, owner: Option<&PublicKey>) -> Result<Value, ClientError> {
        match owner {
            Some(o) => self.get_json(
                "contracts",
                &format!("/v1/contracts?owner={}", hex::encode(o.as_bytes())),
            ),
            None => self.get_json("contracts", "/v1/contracts"),
        }
    }

    /// The notary's latest checkpoint, verified against the pinned key.
    pub fn checkpoint(&self) -> Result<(Checkpoint, String), ClientError> {
        let mut note = String::new();
        self.get("/v1/checkpoint")?
            .into_reader()
            .take(MAX_NOTE_BYTES + 1)
            .read_to_string(&mut note)
            .map_err(|e| bad("checkpoint", e.to_string()))?;
        let checkpoint = Checkpoint::open(note.as_bytes(), &self.verifier)?;
        Ok((checkpoint, note))
    }

    /// The latest checkpoint, verified and checked to extend `kept` (a consistency proof is
    /// fetched and verified). Keep the answer for the next call.
    pub fn checkpoint_extending(
        &self,
        kept: &Checkpoint,
    ) -> Result<(Checkpoint, String), ClientError> {
        let (latest, note) = self.checkpoint()?;
        let proof = if latest.size > kept.size && kept.size > 0 {
            self.consistency_proof(kept.size, latest.size)?
        } else {
            Vec::new()
        };
        latest.check_extends(kept, &proof)?;
        Ok((latest, note))
    }

    /// The consistency proof between two sizes (unverified; see
    /// [`checkpoint_extending`](Self::checkpoint_extending)).
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ClientError> {
        let v = self.json(
            "consistency proof",
            self.get(&format!("/v1/proof/consistency?from={from}&to={to}"))?,
        )?;
        proof_of(&v, "consistency proof")
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries (unverified).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ClientError> {
        let v = self.json(
            "inclusion proof",
            self.get(&format!("/v1/proof/inclusion?index={index}&size={size}"))?,
        )?;
        proof_of(&v, "inclusion proof")
    }

    /// Entry `index`, checked to be in `checkpoint` (an inclusion proof is fetched and
    /// verified).
    pub fn entry(&self, index: u64, checkpoint: &Checkpoint) -> Result<Vec<u8>, ClientError> {
        let mut data = Vec::new();
        self.get(&format!("/v1/entries/{index}"))?
            .into_reader()
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut data)
            .map_err(|e| bad("entry", e.to_string()))?;
        let proof = self.inclusion_proof(index, checkpoint.size)?;
        verify_inclusion(
            index,
            checkpoint.size,
            &leaf_hash(&data),
            &proof,
            &checkpoint.root,
        )?;
        Ok(data)
    }

    /// Submits a signed document (its canonical bytes) and checks the receipt.
    pub fn submit(&self, document: &[u8]) -> Result<Receipt, ClientError> {
        let response = self.call(
            self.agent
                .post(&self.url("/v1/documents"))
                .set("Content-Type", "application/octet-stream"),
            Send::Bytes(document),
        )?;
        let v = self.json("submit", response)?;
        let index = v["index"]
            .as_u64()
            .ok_or_else(|| bad("submit", "no index"))?;
        let note = v["checkpoint"]
            .as_str()
            .ok_or_else(|| bad("submit", "no checkpoint"))?
            .to_string();
        let proof = proof_of(&v, "submit")?;
        let checkpoint = Checkpoint::open(note.as_bytes(), &self.verifier)?;
        verify_inclusion(
            index,
            checkpoint.size,
            &leaf_hash(document),
            &proof,
            &checkpoint.root,
        )?;
        Ok(Receipt {
            index,
            proof,
            checkpoint,
            note,
        })
    }

    /// Streams `reader` (`len` bytes) to the blob store under `digest`; the notary refuses
    /// bytes that do not hash to it. Returns the stored length.
    pub fn put_blob(
        &self,
        digest: &Digest,
        len: u64,
        reader: &mut dyn Read,
    ) -> Result<u64, ClientError> {
        let response = self.call(
            self.agent
                .put(&self.url(&format!("/v1/blobs/{digest}")))
                .set("Content-Type", "application/octet-stream")
                .set("Content-Length", &len.to_string()),
            Send::Reader(reader),
        )?;
        let v = self.json("blob upload", response)?;
        v["len"]
            .as_u64()
            .ok_or_else(|| bad("blob upload", "no len"))
    }

    /// Whether the blob store holds `digest` (`HEAD /v1/blobs/{digest}`: 200 or 404). The
    /// notary's word only: a reader still re-hashes what it downloads.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool, ClientError> {
        match self.call(
            self.agent.head(&self.url(&format!("/v1/blobs/{digest}"))),
            Send::Nothing,
        ) {
            Ok(_) => Ok(true),
            Err(ClientError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams blob `digest` into `out`, hashing as it goes, at most `max` bytes. On
    /// [`ClientError::BlobMismatch`] (or any error) what was written to `out` must be
    /// discarded: write to a temporary file and keep it only on `Ok`.
    pub fn get_blob(
        &self,
        digest: &Digest,
        max: u64,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let mut reader = self
            .get(&format!("/v1/blobs/{digest}"))?
            .into_reader()
            .take(max.saturating_add(1));
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut len: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad("blob download", e.to_string())),
            };
            len += n as u64;
            if len > max {
                return Err(bad("blob download", format!("blob is over {max} bytes")));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(ClientError::Io)?;
        }
        let found = hasher.finalize();
        if found != *digest {
            return Err(ClientError::BlobMismatch {
                expected: *digest,
                found,
            });
        }
        Ok(len)
    }

    /// Long-polls for entries filed under `key` after index `after`, waiting up to `timeout`
    /// (the notary caps it at 30 s). Returns `(index, bytes)` pairs, unverified: check them
    /// with [`entry`](Self::entry)'s proof or an inclusion proof before acting on them.
    pub fn wait(
        &self,
        key: &str,
        after: Option<u64>,
        timeout: Duration,
    ) -> Result<Vec<(u64, Vec<u8>)>, ClientError> {
        let mut request = self
            .agent
            .get(&self.url("/v1/wait"))
            .query("key", key)
            .query("timeout", &timeout.as_secs().to_string());
        if let Some(after) = after {
            request = request.query("after", &after.to_string());
        }
        let v = self.json("wait", self.call(request, Send::Nothing)?)?;
        let entries = v["entries"]
            .as_array()
            .ok_or_else(|| bad("wait", "no entries"))?;
        entries
            .iter()
            .map(|e| {
                let index = e["index"]
                    .as_u64()
                    .ok_or_else(|| bad("wait", "entry without index"))?;
                let data = e["data"]
                    .as_str()
                    .and_then(|d| STANDARD.decode(d).ok())
                    .ok_or_else(|| bad("wait", "entry data is not base64"))?;
                Ok((index, data))
            })
            .collect()
    }
}

enum Send<'a> {
    Nothing,
    Bytes(&'a [u8]),
    Reader(&'a mut dyn Read),
}

fn proof_of(v: &Value, what: &'static str) -> Result<Vec<Hash>, ClientError> {
    let list = v["proof"].as_array().ok_or_else(|| bad(what, "no proof"))?;
    if list.len() > tlog::proof::MAX_PROOF_HASHES {
        return Err(bad(what, "proof is too long"));
    }
    list.iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| Hash::from_base64(s).ok())
                .ok_or_else(|| bad(what, "proof hash is not base64 of 32 bytes"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_are_read_strictly() {
        let h = Hash([1; 32]).to_base64();
        let ok = serde_json::json!({ "proof": [h] });
        assert_eq!(proof_of(&ok, "t").unwrap(), vec![Hash([1; 32])]);
        for bad in [
            serde_json::json!({}),
            serde_json::json!({ "proof": ["AAAA"] }),
            serde_json::json!({ "proof": [1] }),
            serde_json::json!({ "proof": vec![Hash([0; 32]).to_base64(); 65] }),
        ] {
            assert!(proof_of(&bad, "t").is_err(), "{bad}");
        }
    }
}

//! A node's status report on the workloads of one contract it runs.
//!
//! Body: format (varint u32, = 1), sequence (varint u64, ≥ 1), node (32-byte key), contract
//! (32 bytes: the contract id), version (varint u64, ≥ 1: the contract version the node runs),
//! workloads (count ≤ 16, then per workload: name (as a workload name, unique), state (varint
//! u32, see [`WorkloadState::code`]), exit_code (option: 0, or 1 then a zigzag varint i32),
//! restarts (varint u32), reason (string ≤ 256 bytes, one line)), then, only when at least one
//! workload has a console tail: per workload, in the same order, its sealed tail (option: 0, or 1
//! then bytes of 48 to 2,096 bytes, see [`super::sealed`]). A report without tails is encoded as
//! before tails existed, so reports written then still decode; a tails section with no tail is
//! refused (it would give one report two encodings). At most [`MAX_STATUS_REPORT_BYTES`].

use alloc::string::String;
use alloc::vec::Vec;

use super::limits::{MAX_CONTRACT_WORKLOADS, MAX_REASON_BYTES, MAX_STATUS_REPORT_BYTES};
use super::sealed::{TailContext, MAX_SEALED_TAIL_BYTES, SEAL_OVERHEAD};
use super::supersession::{Stream, Supersedes, Supersession};
use super::{
    check_line, checked_text, invalid, put_key, read, read_counter, read_digest, read_key, writer,
    ContractId,
};
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::{DecodeError, Reader, MAX_WORKLOAD_NAME_BYTES};
use crate::signed::{NamedSigner, SignedBody};
use crate::workload::check_name;

/// Where a workload is in its life on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadState {
    /// The node accepted the placement.
    Accepted,
    /// Fetching and checking the manifest and root image.
    Fetching,
    /// The VM runs.
    Running,
    /// The VM ended and will not be restarted.
    Exited,
    /// The VM ended and waits for its restart (backoff).
    Restarting,
    /// The node refused it (a digest, signature or resource check failed); `reason` says which.
    Refused,
    /// Stopped by the node (cancelled or placed elsewhere).
    Stopped,
}

impl WorkloadState {
    /// Every state, in code order.
    pub const ALL: [WorkloadState; 7] = [
        WorkloadState::Accepted,
        WorkloadState::Fetching,
        WorkloadState::Running,
        WorkloadState::Exited,
        WorkloadState::Restarting,
        WorkloadState::Refused,
        WorkloadState::Stopped,
    ];

    /// The code in the body: 0 accepted, 1 fetching, 2 running, 3 exited, 4 restarting,
    /// 5 refused, 6 stopped.
    pub fn code(self) -> u32 {
        match self {
            WorkloadState::Accepted => 0,
            WorkloadState::Fetching => 1,
            WorkloadState::Running => 2,
            WorkloadState::Exited => 3,
            WorkloadState::Restarting => 4,
            WorkloadState::Refused => 5,
            WorkloadState::Stopped => 6,
        }
    }

    /// The state with `code`, if any.
    pub fn from_code(code: u32) -> Option<WorkloadState> {
        WorkloadState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The name in messages, e.g. "running".
    pub fn name(self) -> &'static str {
        match self {
            WorkloadState::Accepted => "accepted",
            WorkloadState::Fetching => "fetching",
            WorkloadState::Running => "running",
            WorkloadState::Exited => "exited",
            WorkloadState::Restarting => "restarting",
            WorkloadState::Refused => "refused",
            WorkloadState::Stopped => "stopped",
        }
    }
}

/// The state of one workload of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadStatus {
    /// The workload's name in the contract.
    pub name: String,
    /// Its state.
    pub state: WorkloadState,
    /// The last exit code, if the VM ever ended.
    pub exit_code: Option<i32>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// One line for people (why refused, what exited), possibly empty.
    pub reason: String,
    /// The last lines of its console, sealed to the contract's owner ([`super::sealed`]), if
    /// the node attached them. Everyone sees that it is there and its size; only the owner's
    /// key opens it.
    pub tail: Option<Vec<u8>>,
}

/// A node's report on one contract, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// Grows with every report of this node on this contract.
    pub sequence: u64,
    /// The node.
    pub node: PublicKey,
    /// The contract.
    pub contract: ContractId,
    /// The contract version the node runs.
    pub version: u64,
    /// One entry per workload.
    pub workloads: Vec<WorkloadStatus>,
}

impl SignedBody for StatusReport {
    const KIND: DocumentKind = DocumentKind::StatusReport;
    const MAX_BYTES: usize = MAX_STATUS_REPORT_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.sequence);
        put_key(&mut w, &self.node);
        w.array(self.contract.0.as_bytes());
        w.put(&self.version);
        w.count(self.workloads.len());
        for s in &self.workloads {
            w.text(&s.name);
            w.put(&s.state.code());
            w.put(&s.exit_code.is_some());
            if let Some(code) = s.exit_code {
                w.put(&code);
            }
            w.put(&s.restarts);
            w.text(&s.reason);
        }
        if self.workloads.iter().any(|s| s.tail.is_some()) {
            for s in &self.workloads {
                w.put(&s.tail.is_some());
                if let Some(tail) = &s.tail {
                    w.bytes(tail);
                }
            }
        }
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            let sequence = read_counter(r, "sequence")?;
            let node = read_key(r, "node")?;
            let contract = ContractId(read_digest(r, "contract")?);
            let version = read_counter(r, "version")?;
            let count = r.count("workload count", MAX_CONTRACT_WORKLOADS)?;
            let mut workloads: Vec<WorkloadStatus> = Vec::with_capacity(count);
            for _ in 0..count {
                let at = r.position();
                let status = read_status(r)?;
                if workloads.iter().any(|s| s.name == status.name) {
                    return Err(invalid(
                        "workload name",
                        at,
                        "two entries name one workload",
                    ));
                }
                workloads.push(status);
            }
            if !r.is_at_end() {
                let at = r.position();
                for status in &mut workloads {
                    if r.take::<bool>("console tail")? {
                        let at = r.position();
                        let tail = r.bytes("console tail", MAX_SEALED_TAIL_BYTES)?;
                        if tail.len() < SEAL_OVERHEAD {
                            return Err(invalid(
                                "console tail",
                                at,
                                "shorter than a sealed tail's overhead",
                            ));
                        }
                        status.tail = Some(tail.to_vec());
                    }
                }
                if workloads.iter().all(|s| s.tail.is_none()) {
                    return Err(invalid(
                        "console tails",
                        at,
                        "present with no tail (a report without tails omits them)",
                    ));
                }
            }
            Ok(StatusReport {
                sequence,
                node,
                contract,
                version,
                workloads,
            })
        })
    }
}

fn read_status(r: &mut Reader<'_>) -> Result<WorkloadStatus, DecodeError> {
    let name = checked_text(r, "workload name", MAX_WORKLOAD_NAME_BYTES, check_name)?;
    let at = r.position();
    let state = WorkloadState::from_code(r.take("state")?)
        .ok_or_else(|| invalid("state", at, "must be 0 to 6"))?;
    let exit_code = if r.take::<bool>("exit code")? {
        Some(r.take::<i32>("exit code")?)
    } else {
        None
    };
    Ok(WorkloadStatus {
        name,
        state,
        exit_code,
        restarts: r.take("restarts")?,
        reason: checked_text(r, "reason", MAX_REASON_BYTES, check_line)?,
        tail: None,
    })
}

impl StatusReport {
    /// What the console tail of `workload` in this report is sealed for.
    pub fn tail_context<'a>(&self, workload: &'a str) -> TailContext<'a> {
        TailContext {
            node: self.node,
            contract: self.contract,
            version: self.version,
            sequence: self.sequence,
            workload,
        }
    }
}

impl NamedSigner for StatusReport {
    const SIGNER_ROLE: &'static str = "node";

    fn signer(&self) -> PublicKey {
        self.node
    }
}

impl Supersedes for StatusReport {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Status {
                node: self.node,
                contract: self.contract,
            },
            version: self.sequence,
        }
    }
}

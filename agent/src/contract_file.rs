//! The contract file: a signed contract and the stakeholder approvals gathered so far, in one
//! text file that can be mailed around and signed by each stakeholder in turn (offline).
//!
//! # Format
//!
//! ```text
//! nullos-contract v1
//! contract <lowercase hex of the signed contract document>
//! approval <lowercase hex of a signed approval document>
//! approval <...>
//! ```
//!
//! - line 1 is exactly `nullos-contract v1`; line 2 is the contract, a `trust` signed document
//!   of kind contract (`trust::grid::Contract`) signed by the owner it names; then zero to 32
//!   approval lines, each a signed document of kind approval (`trust::grid::Approval`) signed
//!   by the stakeholder it names;
//! - every line ends in `\n` (no `\r`, no blank lines, no comments, no other spaces) and the hex
//!   is lowercase, so the file has one spelling: any byte changed either breaks the layout or
//!   changes a signed byte, and is refused;
//! - each approval must name this contract's id, version and body digest and a member of its
//!   stakeholder policy, at most once per stakeholder;
//! - the file is at most 512 KiB (a contract document is at most 128 KiB, 256 KiB as hex).
//!
//! Reading checks every signature; a file that reads is exactly what the owner and the
//! stakeholders signed. Whether the approvals satisfy the policy is a separate question
//! ([`ContractFile::policy`]): a file is valid long before everyone has signed.

use trust::grid::rules::{approvals_satisfy, ApprovalTally, RuleError};
use trust::grid::{Approval, Contract};
use trust::{verify_named, DocumentError, PublicKey, SecretKey, SignError, SignedBody};

/// The first line of a contract file.
pub const HEADER: &str = "nullos-contract v1";
/// Largest contract file read, in bytes.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// Most approvals a file carries (a policy has at most this many members).
pub const MAX_APPROVALS: usize = trust::limits::MAX_POLICY_MEMBERS;

/// Why a contract file was refused or could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum ContractFileError {
    /// Larger than any contract file.
    #[error("is {len} bytes, over the {MAX_FILE_BYTES}-byte limit of a contract file")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The layout is broken (the file is damaged, altered, or not a contract file).
    #[error("line {line}: {reason}")]
    Layout {
        /// One-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The contract document does not verify.
    #[error("line 2: the contract does not verify")]
    Contract(#[source] DocumentError),
    /// An approval document does not verify.
    #[error("line {line}: the approval does not verify")]
    Approval {
        /// One-based line number.
        line: usize,
        /// Why.
        #[source]
        source: DocumentError,
    },
    /// An approval is of another contract, version or body.
    #[error("line {line}: the approval is of another contract or version")]
    OtherContract {
        /// One-based line number.
        line: usize,
    },
    /// An approval, or a key that would approve, is not a stakeholder's.
    #[error("{key} is not a stakeholder of this contract (stakeholders: {members})")]
    NotAStakeholder {
        /// The key, shortened.
        key: String,
        /// The stakeholders' names.
        members: String,
    },
    /// A stakeholder's approval is already in the file.
    #[error("stakeholder '{name}' has already approved this contract")]
    AlreadyApproved {
        /// The stakeholder's name.
        name: String,
    },
    /// The owner's key does not match, or signing failed.
    #[error("cannot sign")]
    Sign(#[source] SignError),
}

/// A contract file, read and verified (or just made).
#[derive(Debug, Clone)]
pub struct ContractFile {
    contract: Contract,
    contract_document: Vec<u8>,
    approvals: Vec<(Approval, Vec<u8>)>,
}

impl ContractFile {
    /// A new file holding `contract` signed by `owner` (which must be the contract's owner),
    /// with no approvals.
    pub fn new(contract: Contract, owner: &SecretKey) -> Result<ContractFile, ContractFileError> {
        let mut document = contract.to_document();
        document.sign(owner).map_err(ContractFileError::Sign)?;
        let contract_document = document.encode();
        // Reading it back checks the owner and the body the way every reader will.
        let opened =
            verify_named::<Contract>(&contract_document).map_err(ContractFileError::Contract)?;
        Ok(ContractFile {
            contract: opened.body,
            contract_document,
            approvals: Vec::new(),
        })
    }

    /// The contract.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// The signed contract document's file bytes (what the notary is sent).
    pub fn contract_document(&self) -> &[u8] {
        &self.contract_document
    }

    /// The approvals gathered, in the order they were added.
    pub fn approvals(&self) -> impl Iterator<Item = &Approval> {
        self.approvals.iter().map(|(a, _)| a)
    }

    /// The signed approval documents' file bytes.
    pub fn approval_documents(&self) -> impl Iterator<Item = &[u8]> {
        self.approvals.iter().map(|(_, d)| d.as_slice())
    }

    /// Whether the approvals satisfy the contract's stakeholder policy (the notary's and the
    /// node's rule, [`approvals_satisfy`]).
    pub fn policy(&self) -> Result<ApprovalTally, RuleError> {
        let approvals: Vec<Approval> = self.approvals().cloned().collect();
        approvals_satisfy(&self.contract, &approvals)
    }

    /// The stakeholder name of `key`, or why it is none.
    fn stakeholder_name(&self, key: &PublicKey) -> Result<String, ContractFileError> {
        let members = &self.contract.stakeholders.members;
        members
            .iter()
            .find(|m| m.key == *key)
            .map(|m| m.name.clone())
            .ok_or_else(|| ContractFileError::NotAStakeholder {
                key: key.short(),
                members: members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Adds `key`'s approval of this contract version. Refuses a key that is not a
    /// stakeholder's and a stakeholder who already approved. Returns the stakeholder's name.
    pub fn approve(&mut self, key: &SecretKey) -> Result<String, ContractFileError> {
        let public = key.public();
        let name = self.stakeholder_name(&public)?;
        if self.approvals().any(|a| a.stakeholder == public) {
            return Err(ContractFileError::AlreadyApproved { name });
        }
        let approval = Approval {
            version: self.contract.version,
            contract: self.contract.id(),
            body: self.contract.body_digest(),
            stakeholder: public,
        };
        let mut document = approval.to_document();
        document.sign(key).map_err(ContractFileError::Sign)?;
        self.approvals.push((approval, document.encode()));
        Ok(name)
    }

    /// The file text (see the module docs).
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{HEADER}\ncontract {}\n",
            hex::encode(&self.contract_document)
        );
        for (_, document) in &self.approvals {
            out.push_str(&format!("approval {}\n", hex::encode(document)));
        }
        out
    }

    /// Reads and verifies a contract file (see the module docs for every check).
    pub fn decode(bytes: &[u8]) -> Result<ContractFile, ContractFileError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(ContractFileError::TooLarge { len: bytes.len() });
        }
        let layout = |line: usize, reason: &'static str| ContractFileError::Layout { line, reason };
        let text =
            std::str::from_utf8(bytes).map_err(|_| layout(1, "not a contract file (not text)"))?;
        let Some(body) = text.strip_suffix('\n') else {
            return Err(layout(
                text.lines().count().max(1),
                "the file does not end with a newline",
            ));
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.first() != Some(&HEADER) {
            return Err(layout(
                1,
                "not a contract file (the first line is not 'nullos-contract v1')",
            ));
        }
        if lines.len() > 2 + MAX_APPROVALS {
            return Err(layout(
                2 + MAX_APPROVALS + 1,
                "more approvals than a contract has stakeholders",
            ));
        }
        let contract_hex = lines
            .get(1)
            .and_then(|l| l.strip_prefix("contract "))
            .ok_or_else(|| layout(2, "expected 'contract <hex>'"))?;
        let contract_document =
            unhex(contract_hex).ok_or_else(|| layout(2, "the contract is not lowercase hex"))?;
        let contract = verify_named::<Contract>(&contract_document)
            .map_err(ContractFileError::Contract)?
            .body;
        let mut file = ContractFile {
            contract,
            contract_document,
            approvals: Vec::new(),
        };
        let (id, body) = (file.contract.id(), file.contract.body_digest());
        for (i, l) in lines.iter().enumerate().skip(2) {
            let line = i + 1;
            let hex = l
                .strip_prefix("approval ")
                .ok_or_else(|| layout(line, "expected 'approval <hex>'"))?;
            let document =
                unhex(hex).ok_or_else(|| layout(line, "the approval is not lowercase hex"))?;
            let approval = verify_named::<Approval>(&document)
                .map_err(|source| ContractFileError::Approval { line, source })?
                .body;
            if approval.contract != id
                || approval.version != file.contract.version
                || approval.body != body
            {
                return Err(ContractFileError::OtherContract { line });
            }
            let name = file.stakeholder_name(&approval.stakeholder)?;
            if file
                .approvals()
                .any(|a| a.stakeholder == approval.stakeholder)
            {
                return Err(ContractFileError::AlreadyApproved { name });
            }
            file.approvals.push((approval, document));
        }
        Ok(file)
    }
}

/// Lowercase hex only, so every byte of the file has one spelling.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests;

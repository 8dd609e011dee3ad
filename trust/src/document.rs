//! Signed documents: a body of canonical bytes, its kind, and the signatures over it.
//!
//! # What is signed
//!
//! Each signer signs (ed25519, RFC 8032) the message `domain tag ‖ BLAKE3-256(body)`, where the
//! domain tag depends on the [`DocumentKind`]. A signature made for one kind of document therefore
//! never verifies as another kind, even over identical body bytes. Verification uses
//! `verify_strict` (no malleable signatures, no small-order keys).
//!
//! # File layout
//!
//! ```text
//! offset  size      field
//! 0       8         magic "NULLOSD\x01" (NullOS document, envelope version 1)
//! 8       1         kind code: 1 = release manifest, 2 = workload manifest, 3..=10 the control
//!                   plane's kinds (crate::grid): farm, node registration, contract, approval,
//!                   placement, cancellation, status report, lease
//! 9       varint    body length n (at most 64 KiB)
//! ..      n         body: the canonical (postcard) bytes of the document
//! ..      varint    signature count m (at most 32)
//! ..      m × 96    per signature: signer public key (32 bytes), ed25519 signature (64 bytes)
//! ```
//!
//! Varints are postcard's (LEB128, at most 10 bytes for 64 bits); the part after the magic is the
//! postcard encoding of `(u8, &[u8], &[([u8; 32], [u8; 64])])`. Nothing may follow the last
//! signature, and the whole file is at most 128 KiB. Signatures are kept in the order they were
//! added; the order carries no meaning.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use thiserror::Error;

use crate::digest::Digest;
use crate::keys::{PublicKey, SecretKey};
use crate::limits::{
    check_size, DecodeError, Reader, Writer, MAX_BODY_BYTES, MAX_DOCUMENT_BYTES, MAX_SIGNATURES,
};
use crate::policy::{Counted, PolicyError, SignerPolicy};

/// The first 8 bytes of every signed document file.
pub const DOCUMENT_MAGIC: [u8; 8] = *b"NULLOSD\x01";

/// The kinds of signed documents. Each has its own signature domain tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocumentKind {
    /// A release manifest: kernel, initrd and command line digests, version, target.
    ReleaseManifest,
    /// A workload manifest: root filesystem and optional kernel digests, entrypoint, resources.
    WorkloadManifest,
    /// A farm: a farmer's key and name ([`crate::grid::Farm`]).
    Farm,
    /// A node's registration: its key, farm, capacity, release ([`crate::grid::NodeRegistration`]).
    NodeRegistration,
    /// A smart contract for IT: owner, stakeholders, workloads, constraints ([`crate::grid::Contract`]).
    Contract,
    /// A stakeholder's approval of one contract version ([`crate::grid::Approval`]).
    Approval,
    /// The owner's choice of node for a contract version ([`crate::grid::Placement`]).
    Placement,
    /// The owner's cancellation of a contract ([`crate::grid::Cancellation`]).
    Cancellation,
    /// A node's report on the workloads of a contract ([`crate::grid::StatusReport`]).
    StatusReport,
    /// A node's heartbeat ([`crate::grid::Lease`]).
    Lease,
    /// A farmer vouching for (or withdrawing) a node of the farm ([`crate::grid::Enrollment`]).
    Enrollment,
}

impl DocumentKind {
    /// Every kind, in code order.
    pub const ALL: [DocumentKind; 11] = [
        DocumentKind::ReleaseManifest,
        DocumentKind::WorkloadManifest,
        DocumentKind::Farm,
        DocumentKind::NodeRegistration,
        DocumentKind::Contract,
        DocumentKind::Approval,
        DocumentKind::Placement,
        DocumentKind::Cancellation,
        DocumentKind::StatusReport,
        DocumentKind::Lease,
        DocumentKind::Enrollment,
    ];

    /// The bytes signed in front of the body digest. Distinct per kind (and the digest after it
    /// has a fixed length, so no tag-plus-digest message can be read as another kind's).
    pub fn domain_tag(self) -> &'static [u8] {
        match self {
            DocumentKind::ReleaseManifest => b"nullos/v1/release-manifest",
            DocumentKind::WorkloadManifest => b"nullos/v1/workload-manifest",
            DocumentKind::Farm => b"nullos/v1/farm",
            DocumentKind::NodeRegistration => b"nullos/v1/node-registration",
            DocumentKind::Contract => b"nullos/v1/contract",
            DocumentKind::Approval => b"nullos/v1/approval",
            DocumentKind::Placement => b"nullos/v1/placement",
            DocumentKind::Cancellation => b"nullos/v1/cancellation",
            DocumentKind::StatusReport => b"nullos/v1/status-report",
            DocumentKind::Lease => b"nullos/v1/lease",
            DocumentKind::Enrollment => b"nullos/v1/enrollment",
        }
    }

    /// The one-byte code stored in the file.
    pub fn code(self) -> u8 {
        match self {
            DocumentKind::ReleaseManifest => 1,
            DocumentKind::WorkloadManifest => 2,
            DocumentKind::Farm => 3,
            DocumentKind::NodeRegistration => 4,
            DocumentKind::Contract => 5,
            DocumentKind::Approval => 6,
            DocumentKind::Placement => 7,
            DocumentKind::Cancellation => 8,
            DocumentKind::StatusReport => 9,
            DocumentKind::Lease => 10,
            DocumentKind::Enrollment => 11,
        }
    }

    /// The kind stored as `code`, if any.
    pub fn from_code(code: u8) -> Option<DocumentKind> {
        DocumentKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Human name, e.g. "release manifest".
    pub fn name(self) -> &'static str {
        match self {
            DocumentKind::ReleaseManifest => "release manifest",
            DocumentKind::WorkloadManifest => "workload manifest",
            DocumentKind::Farm => "farm",
            DocumentKind::NodeRegistration => "node registration",
            DocumentKind::Contract => "contract",
            DocumentKind::Approval => "approval",
            DocumentKind::Placement => "placement",
            DocumentKind::Cancellation => "cancellation",
            DocumentKind::StatusReport => "status report",
            DocumentKind::Lease => "lease",
            DocumentKind::Enrollment => "enrollment",
        }
    }

    /// The exact message a signer signs for `body`: `domain_tag ‖ BLAKE3(body)`.
    pub fn signing_message(self, body: &[u8]) -> Vec<u8> {
        let mut message = self.domain_tag().to_vec();
        message.extend_from_slice(Digest::of(body).as_bytes());
        message
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a signature could not be added.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// The key already signed this document. Signing is deterministic, so a second signature
    /// would be identical; refusing it tells the caller the co-signature they meant is missing.
    #[error("document is already signed by {signer}")]
    AlreadySigned {
        /// The key.
        signer: PublicKey,
    },
    /// The document holds as many signatures as a file may carry.
    #[error("document already has {max} signatures, the most a document may carry")]
    TooManySignatures {
        /// The cap.
        max: usize,
    },
    /// The body is larger than a decoder would accept.
    #[error("document body is {len} bytes, over the {max}-byte limit")]
    BodyTooLarge {
        /// Body length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

/// A policy member named in a verification result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerRef {
    /// Member name from the policy.
    pub name: String,
    /// Member key.
    pub key: PublicKey,
}

impl fmt::Display for SignerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' ({})", self.name, self.key.short())
    }
}

/// Why a document did not verify. Each variant reports everything that went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The document is of another kind than the caller expects.
    #[error("document is a {found}, expected a {expected}")]
    WrongKind {
        /// Kind in the file.
        found: DocumentKind,
        /// Kind the caller asked for.
        expected: DocumentKind,
    },
    /// The policy itself is unusable (checked on every verification, so it fails closed).
    #[error("signer policy is invalid")]
    InvalidPolicy(#[source] PolicyError),
    /// Signatures by policy members do not verify, and the policy is not met without them.
    #[error("{}", bad_signatures(failed, *weight, *threshold, missing_required))]
    BadSignatures {
        /// Every member with a signature that does not verify.
        failed: Vec<SignerRef>,
        /// Summed weight of the distinct members whose signatures do verify.
        weight: u64,
        /// The policy threshold.
        threshold: u32,
        /// Required members with no signature entry at all.
        missing_required: Vec<String>,
    },
    /// Required members did not sign (all signatures present verify).
    #[error("{} did not sign", members("required member", missing))]
    MissingRequired {
        /// Names of the required members without a valid signature.
        missing: Vec<String>,
    },
    /// The valid signatures do not add up to the threshold.
    #[error(
        "signed weight {weight} is below threshold {threshold} (valid signers: {})",
        names_or_none(valid_signers)
    )]
    BelowThreshold {
        /// Summed weight of distinct valid member signatures.
        weight: u64,
        /// The policy threshold.
        threshold: u32,
        /// Names of the members whose signatures verify.
        valid_signers: Vec<String>,
    },
}

/// A document that met its policy, with what the verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The document kind.
    pub kind: DocumentKind,
    /// BLAKE3 of the body.
    pub body_digest: Digest,
    /// Summed weight of distinct valid member signatures (at least the threshold).
    pub weight: u64,
    /// Names of members whose signatures verify, in policy order.
    pub signers: Vec<String>,
    /// Members who also have a signature entry that does not verify (harmless here, since the
    /// policy is met without it, but worth a warning: the file was altered or mis-built).
    pub failed: Vec<SignerRef>,
    /// Signature entries by keys not in the policy (they count for nothing).
    pub unknown_signers: usize,
    /// Extra valid signature entries by members already counted (they count for nothing).
    pub duplicate_signatures: usize,
}

/// One signature entry in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    signer: PublicKey,
    signature: [u8; 64],
}

/// A document body with its kind and signatures. See the module docs for the file layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDocument {
    kind: DocumentKind,
    body: Vec<u8>,
    signatures: heapless::Vec<Entry, MAX_SIGNATURES>,
}

impl SignedDocument {
    /// An unsigned document holding `body` (canonical bytes of a document of `kind`).
    pub fn new(kind: DocumentKind, body: Vec<u8>) -> SignedDocument {
        SignedDocument {
            kind,
            body,
            signatures: heapless::Vec::new(),
        }
    }

    /// Adds a signature by `key`; co-signing an already signed document works the same way.
    /// Signing twice with the same key is an error ([`SignError::AlreadySigned`]).
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), SignError> {
        if self.body.len() > MAX_BODY_BYTES {
            return Err(SignError::BodyTooLarge {
                len: self.body.len(),
                max: MAX_BODY_BYTES,
            });
        }
        let signer = key.public();
        if self.signatures.iter().any(|e| e.signer == signer) {
            return Err(SignError::AlreadySigned { signer });
        }
        let signature = key.sign_bytes(&self.kind.signing_message(&self.body));
        self.signatures
            .push(Entry { signer, signature })
            .map_err(|_| SignError::TooManySignatures {
                max: MAX_SIGNATURES,
            })
    }

    /// The document kind written in the file (not yet checked against anything).
    pub fn kind(&self) -> DocumentKind {
        self.kind
    }

    /// The body bytes. Before [`verify`](Self::verify) succeeds they are untrusted.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// BLAKE3 of the body.
    pub fn body_digest(&self) -> Digest {
        Digest::of(&self.body)
    }

    /// The keys of every signature entry, in file order (unverified).
    pub fn signers(&self) -> impl Iterator<Item = PublicKey> + '_ {
        self.signatures.iter().map(|e| e.signer)
    }

    /// The file bytes (magic, then postcard; see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_prefix(&DOCUMENT_MAGIC);
        w.put(&self.kind.code());
        w.bytes(&self.body);
        w.count(self.signatures.len());
        for entry in &self.signatures {
            w.array(entry.signer.as_bytes());
            w.array(&entry.signature);
        }
        w.finish()
    }

    /// Reads file bytes, refusing anything over the limits, malformed, or followed by extra bytes.
    /// Signatures are not checked here; call [`verify`](Self::verify).
    pub fn decode(bytes: &[u8]) -> Result<SignedDocument, DecodeError> {
        const WHAT: &str = "signed document";
        check_size(WHAT, bytes.len(), MAX_DOCUMENT_BYTES)?;
        let Some(rest) = bytes.strip_prefix(&DOCUMENT_MAGIC) else {
            return Err(if DOCUMENT_MAGIC.starts_with(bytes) {
                DecodeError::Truncated {
                    at: bytes.len(),
                    field: "magic",
                }
            } else {
                DecodeError::BadMagic { what: WHAT }
            });
        };
        let mut r = Reader::new(WHAT, rest, MAX_DOCUMENT_BYTES, DOCUMENT_MAGIC.len())?;
        let at = r.position();
        let code: u8 = r.take("kind")?;
        let kind = DocumentKind::from_code(code).ok_or(DecodeError::InvalidValue {
            field: "kind",
            at,
            reason: "unknown document kind",
        })?;
        let body = r.bytes("body", MAX_BODY_BYTES)?.to_vec();
        let count = r.count("signature count", MAX_SIGNATURES)?;
        let mut signatures = heapless::Vec::new();
        for _ in 0..count {
            let at = r.position();
            let key = r.array::<32>("signer key")?;
            let signer = PublicKey::from_bytes(&key).map_err(|_| DecodeError::InvalidValue {
                field: "signer key",
                at,
                reason: "not a usable ed25519 public key",
            })?;
            let signature = r.array::<64>("signature")?;
            // Cannot overflow: count <= MAX_SIGNATURES, the capacity.
            signatures
                .push(Entry { signer, signature })
                .map_err(|_| DecodeError::OverLimit {
                    field: "signature count",
                    at,
                    len: count as u64,
                    max: MAX_SIGNATURES,
                })?;
        }
        r.finish(WHAT)?;
        Ok(SignedDocument {
            kind,
            body,
            signatures,
        })
    }

    /// Checks that the document is of kind `expected` and that its signatures satisfy `policy`:
    /// every required member has a valid signature, and the weights of the distinct members with
    /// valid signatures add up to at least the threshold. Signatures by keys outside the policy
    /// and repeated signatures by one member add nothing. A member's bad signature does not by
    /// itself fail a document that meets the policy without it (it is listed in
    /// [`Verified::failed`]); when the policy is not met, the error names every such member.
    pub fn verify(
        &self,
        expected: DocumentKind,
        policy: &SignerPolicy,
    ) -> Result<Verified, VerifyError> {
        if self.kind != expected {
            return Err(VerifyError::WrongKind {
                found: self.kind,
                expected,
            });
        }
        policy.validate().map_err(VerifyError::InvalidPolicy)?;
        let message = self.kind.signing_message(&self.body);
        let mut tally = policy.tally();
        let mut has_entry = alloc::vec![false; policy.members.len()];
        let mut failed_idx: Vec<usize> = Vec::new();
        let mut unknown_signers = 0;
        let mut duplicate_signatures = 0;
        for entry in &self.signatures {
            // Only members' signatures are checked: an unknown key adds nothing either way.
            let Some(i) = policy.members.iter().position(|m| m.key == entry.signer) else {
                unknown_signers += 1;
                continue;
            };
            has_entry[i] = true;
            if !entry.signer.verify_strict(&message, &entry.signature) {
                if !failed_idx.contains(&i) {
                    failed_idx.push(i);
                }
            } else if tally.add(&entry.signer) == Counted::Duplicate {
                duplicate_signatures += 1;
            }
        }
        let failed: Vec<SignerRef> = failed_idx
            .iter()
            .map(|&i| SignerRef {
                name: policy.members[i].name.clone(),
                key: policy.members[i].key,
            })
            .collect();
        let weight = tally.weight();
        let threshold = policy.threshold;
        if tally.is_met() {
            return Ok(Verified {
                kind: self.kind,
                body_digest: self.body_digest(),
                weight,
                signers: tally.counted_names(),
                failed,
                unknown_signers,
                duplicate_signatures,
            });
        }
        let missing = tally.missing_required();
        if !failed.is_empty() {
            let missing_required = (0..policy.members.len())
                .filter(|&i| policy.members[i].required && !tally.is_counted(i) && !has_entry[i])
                .map(|i| policy.members[i].name.clone())
                .collect();
            return Err(VerifyError::BadSignatures {
                failed,
                weight,
                threshold,
                missing_required,
            });
        }
        if !missing.is_empty() {
            return Err(VerifyError::MissingRequired { missing });
        }
        Err(VerifyError::BelowThreshold {
            weight,
            threshold,
            valid_signers: tally.counted_names(),
        })
    }

    /// Appends a raw signature entry without any check, to build hostile documents in tests.
    #[cfg(test)]
    pub(crate) fn push_raw(&mut self, signer: PublicKey, signature: [u8; 64]) {
        let pushed = self.signatures.push(Entry { signer, signature });
        assert!(pushed.is_ok(), "test pushed too many signatures");
    }

    /// The raw signature bytes of entry `index`, for tests.
    #[cfg(test)]
    pub(crate) fn raw_signature(&self, index: usize) -> [u8; 64] {
        self.signatures[index].signature
    }
}

/// "member 'a'" or "members 'a', 'b'".
fn members(label: &str, names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| alloc::format!("'{n}'")).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    alloc::format!("{label}{plural} {}", quoted.join(", "))
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        String::from("none")
    } else {
        names.join(", ")
    }
}

fn bad_signatures(failed: &[SignerRef], weight: u64, threshold: u32, missing: &[String]) -> String {
    let list: Vec<String> = failed.iter().map(|s| alloc::format!("{s}")).collect();
    let mut out = if failed.len() == 1 {
        alloc::format!("signature by member {} does not verify", list.join(", "))
    } else {
        alloc::format!("signatures by members {} do not verify", list.join(", "))
    };
    out.push_str(&alloc::format!(
        "; signed weight {weight}, threshold {threshold}"
    ));
    if !missing.is_empty() {
        out.push_str(&alloc::format!(
            "; {} did not sign",
            members("required member", missing)
        ));
    }
    out
}

#[cfg(test)]
mod tests;

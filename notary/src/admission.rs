//! What may enter the log: the envelope checks every write passes, and the seam where the
//! rules of each document kind plug in.
//!
//! The core calls, for every write, in this order:
//! 1. [`check_envelope`] — size, bounded decode of the `trust` signed-document envelope, at
//!    least one signature, no signer twice, and every signature verifying (strictly) against
//!    the key it names. Done on the submitting thread, in parallel with other writes.
//! 2. The replay check — a document whose kind and body are already in the log (or earlier in
//!    the same batch) is refused. Done by the core, which files every document under
//!    [`body_key`].
//! 3. [`DocumentRules::admit`] — the kind's own rules (supersession, who may sign what, what a
//!    placement needs), given a [`LogView`] of the log as it will be just before this entry:
//!    committed entries plus the ones admitted earlier in the same batch. It answers with the
//!    index keys to file the document under, or a one-line refusal.
//!
//! Until the notary's document kinds exist in `trust`, the binary runs [`OpenRules`]: any
//! verified document, filed under its kind and its signers.

use std::collections::HashSet;
use std::fmt;

use thiserror::Error;
use trust::limits::MAX_DOCUMENT_BYTES;
use trust::{PolicyMember, PublicKey, SignedDocument, SignerPolicy};

use crate::store::{StoreError, StoredLease};

/// Why a write was refused, or could not be judged.
#[derive(Debug, Error)]
pub enum Refusal {
    /// The write is bad: the caller gets a 4xx and this one-line reason.
    #[error("{0}")]
    Refused(String),
    /// The store failed while the rules read it (a 5xx; nothing is stored).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    /// A refusal with a one-line reason (line breaks become spaces).
    pub fn refused(reason: impl fmt::Display) -> Refusal {
        Refusal::Refused(reason.to_string().replace(['\n', '\r'], " "))
    }
}

/// The log as a rule sees it: committed entries, then the ones admitted before this one in
/// the same batch.
pub trait LogView {
    /// Entries so far (the index the document under judgement would get).
    fn size(&self) -> u64;
    /// Indexes filed under `key` above `after`, ascending, at most `limit`.
    fn lookup(&self, key: &str, after: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError>;
    /// The entry bytes at `index`.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// The node's latest lease (kept beside the log).
    fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, StoreError>;
}

/// A lease a rule admitted: the core keeps it beside the log (it renews liveness without
/// growing the log) if it is still newer than the held one when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseUpdate {
    /// The node's key.
    pub node: [u8; 32],
    /// The lease's sequence.
    pub sequence: u64,
    /// When it runs out (seconds since the Unix epoch).
    pub expires: u64,
}

/// The rules of the document kinds. See the module docs.
pub trait DocumentRules: Send + Sync {
    /// Admits `document` (its envelope already checked) with the index keys to file it under,
    /// or refuses it.
    fn admit(&self, document: &Checked, log: &dyn LogView) -> Result<Vec<String>, Refusal>;

    /// Whether `document` is a lease, which is kept beside the log instead of appended to it:
    /// `Ok(None)` to log it as usual, `Ok(Some(update))` to keep it as the node's lease, or a
    /// refusal. `held` is the sequence of the lease held for the node the document names, when
    /// the rules can tell which node that is (the core asks again with it). Called on the
    /// submitting thread.
    fn lease(
        &self,
        _document: &Checked,
        _held: Option<u64>,
    ) -> Result<Option<LeaseUpdate>, Refusal> {
        Ok(None)
    }
}

/// A document whose envelope passed [`check_envelope`].
#[derive(Debug, Clone)]
pub struct Checked {
    /// The decoded envelope.
    pub document: SignedDocument,
    /// The distinct signers, all of whose signatures verify, in file order.
    pub signers: Vec<PublicKey>,
    /// The canonical bytes as received (what the log stores and hashes).
    pub bytes: Vec<u8>,
}

/// The index key every document is filed under, by which replays are found.
pub fn body_key(document: &SignedDocument) -> String {
    format!(
        "body/{}/{}",
        document.kind().code(),
        document.body_digest().to_hex()
    )
}

/// Step 1 of the module docs.
pub fn check_envelope(bytes: Vec<u8>) -> Result<Checked, Refusal> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(Refusal::refused(format!(
            "document is {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let document = SignedDocument::decode(&bytes)
        .map_err(|e| Refusal::refused(format!("document does not decode: {e}")))?;
    let mut signers: Vec<PublicKey> = Vec::new();
    for signer in document.signers() {
        if signers.contains(&signer) {
            return Err(Refusal::refused(format!(
                "document is signed twice by {}",
                signer.short()
            )));
        }
        signers.push(signer);
    }
    if signers.is_empty() {
        return Err(Refusal::refused("document is not signed"));
    }
    // Every named signer required, each weighing 1: the policy is met only when every
    // signature verifies against the key it names.
    let policy = SignerPolicy {
        threshold: u32::try_from(signers.len()).unwrap_or(u32::MAX),
        members: signers
            .iter()
            .enumerate()
            .map(|(i, key)| PolicyMember {
                name: format!("signer-{i}"),
                key: *key,
                weight: 1,
                required: true,
            })
            .collect(),
    };
    document
        .verify(document.kind(), &policy)
        .map_err(|e| Refusal::refused(format!("signature check failed: {e}")))?;
    Ok(Checked {
        document,
        signers,
        bytes,
    })
}

/// The interim rules of the binary: any document whose envelope verifies, filed under
/// `kind/<code>` and `signer/<key hex>` for each signer. No kind-specific checks.
#[derive(Debug, Default)]
pub struct OpenRules;

impl DocumentRules for OpenRules {
    fn admit(&self, document: &Checked, _log: &dyn LogView) -> Result<Vec<String>, Refusal> {
        let mut keys = vec![format!("kind/{}", document.document.kind().code())];
        let mut seen = HashSet::new();
        for signer in &document.signers {
            if seen.insert(*signer) {
                keys.push(signer_key(signer));
            }
        }
        Ok(keys)
    }
}

/// The index key of the documents `signer` signed, under [`OpenRules`].
pub fn signer_key(signer: &PublicKey) -> String {
    format!("signer/{}", hex::encode(signer.as_bytes()))
}

#[cfg(test)]
mod tests {
    use trust::{DocumentKind, SecretKey};

    use super::*;

    fn signed(body: &[u8], keys: &[u8]) -> SignedDocument {
        let mut d = SignedDocument::new(DocumentKind::WorkloadManifest, body.to_vec());
        for k in keys {
            d.sign(&SecretKey::from_seed([*k; 32])).unwrap();
        }
        d
    }

    fn reason(r: Result<Checked, Refusal>) -> String {
        match r {
            Err(Refusal::Refused(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_document_signed_by_everyone_it_names_passes() {
        let c = check_envelope(signed(b"body", &[1, 2]).encode()).unwrap();
        assert_eq!(c.signers.len(), 2);
        assert_eq!(c.document.body(), b"body");
    }

    #[test]
    fn garbage_unsigned_oversize_and_forged_documents_are_refused() {
        assert!(reason(check_envelope(b"garbage".to_vec())).starts_with("document does not decode"));
        assert_eq!(
            reason(check_envelope(signed(b"body", &[]).encode())),
            "document is not signed"
        );
        assert!(reason(check_envelope(vec![0; MAX_DOCUMENT_BYTES + 1])).contains("over the"));
        // Change one body byte after signing: the signature no longer verifies.
        let good = signed(b"body", &[1, 2]).encode();
        let at = good.windows(4).position(|w| w == b"body").unwrap();
        let mut forged = good.clone();
        forged[at] ^= 1;
        let r = reason(check_envelope(forged));
        assert!(r.starts_with("signature check failed"), "{r}");
        assert!(!r.contains('\n'));
        // A signer listed twice is refused (the decoder allows it; the log wants one form).
        let mut twice = good.clone();
        let sigs_at = good.len() - 2 * 96;
        let count_at = sigs_at - 1;
        assert_eq!(twice[count_at], 2);
        let first: Vec<u8> = good[sigs_at..sigs_at + 96].to_vec();
        twice[sigs_at + 96..].copy_from_slice(&first);
        assert!(reason(check_envelope(twice)).contains("signed twice"));
    }

    #[test]
    fn open_rules_file_by_kind_and_signer() {
        struct Empty;
        impl LogView for Empty {
            fn size(&self) -> u64 {
                0
            }
            fn lookup(&self, _: &str, _: Option<u64>, _: usize) -> Result<Vec<u64>, StoreError> {
                Ok(vec![])
            }
            fn entry(&self, _: u64) -> Result<Option<Vec<u8>>, StoreError> {
                Ok(None)
            }
            fn lease(&self, _: &[u8; 32]) -> Result<Option<StoredLease>, StoreError> {
                Ok(None)
            }
        }
        let c = check_envelope(signed(b"b", &[1]).encode()).unwrap();
        let keys = OpenRules.admit(&c, &Empty).unwrap();
        assert_eq!(keys[0], "kind/2");
        assert_eq!(keys[1], signer_key(&SecretKey::from_seed([1; 32]).public()));
    }
}

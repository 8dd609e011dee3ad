//! Signed-document envelope: decoding must never panic, accept only canonical bytes, and
//! verification of whatever decodes must never panic either.

use trust::{DocumentKind, SecretKey, SignedDocument, SignerPolicy};

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(doc) = SignedDocument::decode(data) else {
        return;
    };
    assert_eq!(
        doc.encode(),
        data,
        "decode accepted a non-canonical encoding"
    );
    // The seeds are signed with seed [1; 32], so mutations reach real signature checks.
    let policy = SignerPolicy::single(SecretKey::from_seed([1; 32]).public());
    for kind in DocumentKind::ALL {
        let _ = doc.verify(kind, &policy);
    }
}

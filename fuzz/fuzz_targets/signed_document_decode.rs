//! Signed-document envelope: decoding must never panic, accept only canonical bytes, and
//! verification of whatever decodes must never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trust::{DocumentKind, SecretKey, SignedDocument, SignerPolicy};

fuzz_target!(|data: &[u8]| {
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
});

//! Release manifest body and the whole release check: never panic, accept only canonical bytes.

use trust::{verify_release, ReleaseManifest, SecretKey, SignerPolicy};

/// One input.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(manifest) = ReleaseManifest::decode(data) {
        assert_eq!(
            manifest.encode(),
            data,
            "decode accepted a non-canonical encoding"
        );
    }
    // The same bytes as a whole release file (the seeds include one signed with seed [1; 32]).
    let policy = SignerPolicy::single(SecretKey::from_seed([1; 32]).public());
    if let Ok((doc, manifest)) = verify_release(data, &policy) {
        assert_eq!(doc.body(), manifest.encode().as_slice());
    }
}

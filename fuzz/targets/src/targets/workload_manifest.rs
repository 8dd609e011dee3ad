//! Workload manifest body and the whole workload check: never panic, accept only canonical,
//! valid manifests.

use trust::{verify_workload, SecretKey, SignerPolicy, WorkloadManifest};

/// One input.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(manifest) = WorkloadManifest::decode(data) {
        assert_eq!(
            manifest.encode(),
            data,
            "decode accepted a non-canonical encoding"
        );
    }
    // The same bytes as a whole workload.manifest file (seed-1 is signed with seed [1; 32]).
    let policy = SignerPolicy::single(SecretKey::from_seed([1; 32]).public());
    if let Ok(manifest) = verify_workload(data, &policy) {
        assert_eq!(manifest.validate(), Ok(()));
    }
}

//! Signer policy binary form: never panic, accept only valid policies in canonical bytes.

use trust::SignerPolicy;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(policy) = SignerPolicy::decode(data) else {
        return;
    };
    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(
        policy.encode(),
        data,
        "decode accepted a non-canonical encoding"
    );
}

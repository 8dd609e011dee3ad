//! Signer policy text: never panic; whatever parses is valid and survives a text round trip.

use trust::SignerPolicy;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = SignerPolicy::from_text(text) else {
        return;
    };
    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(
        SignerPolicy::from_text(&policy.to_text()),
        Ok(policy.clone())
    );
    assert_eq!(SignerPolicy::decode(&policy.encode()), Ok(policy));
}

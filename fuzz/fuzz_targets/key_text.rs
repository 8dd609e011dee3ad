//! Public and secret key text: never panic; whatever parses survives a text round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trust::{PublicKey, SecretKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(public) = PublicKey::from_text(text) {
        assert_eq!(PublicKey::from_text(&public.to_text()), Ok(public));
    }
    if let Ok((secret, comment)) = SecretKey::from_text_with_comment(text) {
        let again = SecretKey::from_text_with_comment(&secret.to_text(&comment));
        assert_eq!(
            again.map(|(k, c)| (k.public(), c)),
            Ok((secret.public(), comment))
        );
    }
});

//! Public and secret key text: never panic; whatever parses survives a text round trip.

use trust::{PublicKey, SecretKey};

/// One input.
pub fn fuzz_one(data: &[u8]) {
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
}

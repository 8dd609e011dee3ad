//! `guest.toml` (`interfaces::guest::GuestConfig`), written by the node and read by the guest's
//! init from a disk the guest controls: any text never panics; whatever parses is valid, is
//! written back by `to_toml` and reads back equal, and its environment can be computed.

use interfaces::guest::GuestConfig;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = GuestConfig::parse(text) else {
        return;
    };
    assert!(config.validate().is_ok());
    let _ = config.environment();
    if let Ok(written) = config.to_toml() {
        assert_eq!(
            GuestConfig::parse(&written).ok().as_ref(),
            Some(&config),
            "guest.toml did not survive a round trip"
        );
    }
}

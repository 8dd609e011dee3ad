//! The farmer's file on the stick, `nullos-node` (`interfaces::farmer`, read by stage 0): any
//! bytes never panic; whatever parses is written back by `to_text` as a text that parses to
//! the same settings, and every command-line word it yields is one stage 0's allow-list passes
//! whole (its name allowed, its value of allowed bytes), so the file can add nothing else to
//! the node's command line.

use boot::node_params::node_cmdline;
use interfaces::farmer::FarmerSettings;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(settings) = FarmerSettings::parse(data) else {
        return;
    };
    assert_eq!(
        FarmerSettings::parse(settings.to_text().as_bytes()),
        Ok(settings.clone())
    );
    let words = settings.cmdline_words().join(" ");
    let node = node_cmdline(b"console=ttyS0", words.as_bytes()).expect("a valid release line");
    assert!(node.dropped.is_empty(), "{:?}", node.dropped);
    let expected = if words.is_empty() {
        "console=ttyS0".to_owned()
    } else {
        format!("console=ttyS0 {words}")
    };
    assert_eq!(node.line, expected);
}

//! `/etc/nullos/node.toml`, written by the image builder, and which control endpoint to check.
//!
//! The parser is pure (text in, values out); [`NodeConfig::load`] reads the file.

use pid1::cmdline::Cmdline;
// `node.toml`: written by the image builder, one type for both sides (`interfaces::node`).
pub use interfaces::node::{NodeConfig, NodeConfigError as ConfigError};
pub use interfaces::paths::NODE_CONFIG as NODE_CONFIG_PATH;

/// The control endpoint to check: the command line wins over node.toml.
pub fn control_endpoint<'a>(cmdline: &'a Cmdline, node: Option<&'a NodeConfig>) -> Option<&'a str> {
    cmdline
        .control
        .as_deref()
        .or_else(|| node.and_then(|n| n.control.as_deref()))
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_toml_parses_with_and_without_control() {
        let n = NodeConfig::parse("version = 7\nprofile = \"dev\"\ncontrol = \"10.0.2.2:7878\"\n")
            .unwrap();
        assert_eq!(n.version, 7);
        assert_eq!(n.profile, "dev");
        assert_eq!(n.control.as_deref(), Some("10.0.2.2:7878"));
        let n = NodeConfig::parse("version = 1\nprofile = \"prod\"\nextra = true\n").unwrap();
        assert_eq!(n.control, None);
    }

    #[test]
    fn node_toml_garbled_is_an_error() {
        assert!(NodeConfig::parse("version = \"seven\"\nprofile = \"dev\"").is_err());
        assert!(NodeConfig::parse("profile = \"dev\"").is_err());
        assert!(NodeConfig::parse("\u{0}\u{1}not toml [[[").is_err());
    }

    #[test]
    fn cmdline_control_overrides_node_toml() {
        let node = NodeConfig::parse("version = 1\nprofile = \"p\"\ncontrol = \"a:1\"").unwrap();
        let none = Cmdline::parse("quiet");
        assert_eq!(control_endpoint(&none, Some(&node)), Some("a:1"));
        let cmd = Cmdline::parse("nullos.control=b:2");
        assert_eq!(control_endpoint(&cmd, Some(&node)), Some("b:2"));
        assert_eq!(control_endpoint(&none, None), None);
    }
}

//! `/etc/nullos/node.toml`, written by the image builder, and which control endpoint to check.
//!
//! The parser is pure (text in, values out); [`NodeConfig::load`] reads the file.

use interfaces::farmer;
use pid1::cmdline::Cmdline;
// `node.toml`: written by the image builder, one type for both sides (`interfaces::node`).
pub use interfaces::node::{NodeConfig, NodeConfigError as ConfigError};
pub use interfaces::paths::NODE_CONFIG as NODE_CONFIG_PATH;

/// node.toml with the farmer's grid settings from the command line, in an image that pins a
/// notary key: `nullos.farm=<64 hex>` (the farm, the farmer's public key) and
/// `nullos.notary=<url>` (their notary) override node.toml's (the farmer's `boot.ipxe` sets
/// them over PXE; stage 0 passes them from the stick's farmer file). The notary's key is never
/// taken from the command line: an image without one ignores both. The values are checked
/// where node.toml's are ([`NodeConfig::grid`]).
///
/// `nullos.channel=<url>` (the release channel to watch for self-updates) overrides node.toml's
/// `release_channel` in an image with an `[update]` section, whatever the grid: the release
/// policy is the image's, so the URL only says where signed releases are fetched from. It is
/// taken only when it is an `http://host[:port]/path` URL ([`farmer::is_channel_url`]).
pub fn with_farmer_settings(mut node: NodeConfig, cmdline: &Cmdline) -> NodeConfig {
    if let Some(channel) = cmdline
        .channel
        .as_ref()
        .filter(|c| farmer::is_channel_url(c))
    {
        if node.release_channel.is_some() {
            node.release_channel = Some(channel.clone());
        }
    }
    if node.notary_key.is_none() {
        return node;
    }
    if let Some(farm) = &cmdline.farm {
        node.farm = Some(format!("nullos-ed25519 {farm}"));
    }
    if let Some(notary) = &cmdline.notary {
        node.notary = Some(notary.clone());
    }
    node
}

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
    fn the_farmers_settings_come_from_the_command_line_but_never_the_notary_key() {
        let key = trust::SecretKey::from_seed([1; 32]).public();
        let farm = trust::SecretKey::from_seed([2; 32]).public();
        let farm_hex = farm.to_text().split_once(' ').unwrap().1.to_owned();
        let metal = NodeConfig::parse(&format!(
            "version = 1\nprofile = \"metal\"\nnotary = \"http://n.example:7878\"\nnotary_key = \"{}\"\n",
            key.to_text()
        ))
        .unwrap();
        // Without the farmer's settings: the grid has no farm.
        let alone = with_farmer_settings(metal.clone(), &Cmdline::parse("quiet"));
        assert_eq!(alone.grid().unwrap().unwrap().farm, None);
        let cmdline = Cmdline::parse(format!(
            "quiet nullos.farm={farm_hex} nullos.notary=http://10.0.2.2:7878"
        ));
        let grid = with_farmer_settings(metal.clone(), &cmdline)
            .grid()
            .unwrap()
            .unwrap();
        assert_eq!(grid.farm, Some(farm));
        assert_eq!(grid.notary, "http://10.0.2.2:7878");
        assert_eq!(grid.notary_key, key, "the pinned key is the image's");
        // A bad farm is an error of the grid settings, not a silent default.
        let bad = with_farmer_settings(metal, &Cmdline::parse("nullos.farm=abc"));
        assert!(bad.grid().is_err());
        // An image without a notary key takes no grid from the command line.
        let dev = NodeConfig::parse("version = 1\nprofile = \"dev\"\n").unwrap();
        assert_eq!(with_farmer_settings(dev, &cmdline).grid().unwrap(), None);
    }

    #[test]
    fn the_farmers_release_channel_replaces_the_images_only_in_an_image_that_updates() {
        let updating = NodeConfig::parse(
            "version = 1\nprofile = \"metal\"\nrelease_channel = \"http://r.example/metal/release\"\n",
        )
        .unwrap();
        let theirs = Cmdline::parse("nullos.channel=http://10.0.2.2:8091/release");
        assert_eq!(
            with_farmer_settings(updating.clone(), &theirs)
                .release_channel
                .as_deref(),
            Some("http://10.0.2.2:8091/release")
        );
        // Not a channel URL: the image's stays.
        let bad = Cmdline::parse("nullos.channel=http://10.0.2.2/a?b");
        assert_eq!(
            with_farmer_settings(updating.clone(), &bad)
                .release_channel
                .as_deref(),
            Some("http://r.example/metal/release")
        );
        // An image without [update] (no release policy to verify with) does not start updating.
        let fixed = NodeConfig::parse("version = 1\nprofile = \"dev\"\n").unwrap();
        assert_eq!(with_farmer_settings(fixed, &theirs).release_channel, None);
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

//! `/etc/nullos/node.toml`: what the node's `init` knows about the release it belongs to.
//! image-builder writes it into the node image ([`NodeConfig::to_toml`]); `init` reads it
//! ([`NodeConfig::load`]). Unknown keys are accepted on reading, so an image from a newer
//! builder still boots.

use serde::{Deserialize, Serialize};
use trust::limits::MAX_LABEL_BYTES;

use crate::paths::NODE_CONFIG;

/// The first line of the file.
#[cfg(feature = "toml")]
const HEADER: &str = "# Written by image-builder; read by init.\n";

/// Why `node.toml` could not be written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The file could not be read.
    #[error("read {NODE_CONFIG}")]
    Read(#[source] std::io::Error),
    /// The file is not the expected TOML.
    #[cfg(feature = "toml")]
    #[error("parse {NODE_CONFIG}")]
    Parse(#[source] toml::de::Error),
    /// The configuration could not be written as TOML.
    #[cfg(feature = "toml")]
    #[error("write {NODE_CONFIG}")]
    Write(#[source] toml::ser::Error),
    /// A value is out of bounds.
    #[error("{NODE_CONFIG}: {0}")]
    Invalid(String),
}

/// The contents of `/etc/nullos/node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Release version (monotonic).
    pub version: u64,
    /// Build profile name (the release manifest's, at most `trust`'s label length).
    pub profile: String,
    /// Control endpoint `host:port`, if the image has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Non-public destinations (`A.B.C.D[/N][:PORT]`, [`crate::egress::Rule`]) this node's
    /// workloads may reach through their user-mode network; by default they reach the public
    /// internet only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_allow: Vec<String>,
    /// The grid's notary the node registers with and pulls contracts from, `http://host:port`
    /// (the node's build speaks plain HTTP; everything it is handed is verified anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notary: Option<String>,
    /// The notary's checkpoint key, pinned: `nullos-ed25519 <64 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notary_key: Option<String>,
    /// The farm the node belongs to: its farmer's key, `nullos-ed25519 <64 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm: Option<String>,
    /// The release channel the node watches for a newer signed release (self-update): a release
    /// folder URL, `http://host[:port]/path` (verified against the node image's release policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_channel: Option<String>,
    /// How often the channel is asked, in seconds (default [`DEFAULT_RELEASE_POLL_SECONDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_poll_seconds: Option<u64>,
}

/// How often the node asks its release channel when node.toml does not say.
pub const DEFAULT_RELEASE_POLL_SECONDS: u64 = 300;

/// The grid settings of a node, checked: where the notary is, its pinned key, the farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridSettings {
    /// `http://host:port`, without a trailing slash.
    pub notary: String,
    /// The notary's checkpoint key.
    pub notary_key: trust::PublicKey,
    /// The farmer's key: `None` in an image every farmer gets (the metal profile), where it
    /// comes from the farmer at boot (`nullos.farm=`).
    pub farm: Option<trust::PublicKey>,
}

impl NodeConfig {
    /// Checks the values against the release manifest's limits: the profile is a label of the
    /// signed release, and no value may hold a NUL (they end up in C strings).
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        let invalid = |why: String| Err(NodeConfigError::Invalid(why));
        if self.profile.len() > MAX_LABEL_BYTES {
            return invalid(format!("profile is longer than {MAX_LABEL_BYTES} bytes"));
        }
        for (what, value) in [
            ("profile", Some(&self.profile)),
            ("control", self.control.as_ref()),
            ("notary", self.notary.as_ref()),
            ("notary_key", self.notary_key.as_ref()),
            ("farm", self.farm.as_ref()),
            ("release_channel", self.release_channel.as_ref()),
        ] {
            if value.is_some_and(|v| v.contains('\0')) {
                return invalid(format!("{what} contains a NUL byte"));
            }
        }
        self.grid()?;
        if let Some(channel) = &self.release_channel {
            let fine = channel.starts_with("http://")
                && !channel.chars().any(|c| c.is_whitespace() || c.is_control());
            if !fine {
                return invalid(format!("release_channel '{channel}' is not an http:// URL"));
            }
        }
        if self.release_poll_seconds == Some(0) {
            return invalid("release_poll_seconds is 0".into());
        }
        self.egress_allow_rules().map(|_| ())
    }

    /// The grid settings: `None` when the node is not configured for a grid (no `notary`);
    /// an error when they are incomplete or malformed.
    pub fn grid(&self) -> Result<Option<GridSettings>, NodeConfigError> {
        let invalid = |why: String| NodeConfigError::Invalid(why);
        let Some(notary) = &self.notary else {
            if self.notary_key.is_some() || self.farm.is_some() {
                return Err(invalid("notary_key and farm need notary".into()));
            }
            return Ok(None);
        };
        let authority = notary
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|rest| {
                !rest.is_empty()
                    && !rest.contains('/')
                    && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
            })
            .ok_or_else(|| invalid(format!("notary '{notary}' is not http://host[:port]")))?;
        let key = |what: &str, value: &Option<String>| {
            let text = value
                .as_deref()
                .ok_or_else(|| invalid(format!("notary needs {what}")))?;
            trust::PublicKey::from_text(text)
                .map_err(|e| invalid(format!("{what} is not a public key line: {e}")))
        };
        Ok(Some(GridSettings {
            notary: format!("http://{authority}"),
            notary_key: key("notary_key", &self.notary_key)?,
            farm: match &self.farm {
                Some(_) => Some(key("farm", &self.farm)?),
                None => None,
            },
        }))
    }

    /// The notary's endpoint as a rule for `--net-deny` (workloads never reach the notary),
    /// when it is an IPv4 `address:port` (port 80 when none is given).
    pub fn notary_rule(&self) -> Option<crate::egress::Rule> {
        let authority = self.notary.as_deref()?.strip_prefix("http://")?;
        let authority = authority.trim_end_matches('/');
        let addr: std::net::SocketAddrV4 = authority
            .parse()
            .or_else(|_| format!("{authority}:80").parse())
            .ok()?;
        Some(crate::egress::Rule {
            addr: *addr.ip(),
            prefix_len: 32,
            port: Some(addr.port()),
        })
    }

    /// [`NodeConfig::egress_allow`], parsed.
    pub fn egress_allow_rules(&self) -> Result<Vec<crate::egress::Rule>, NodeConfigError> {
        self.egress_allow
            .iter()
            .map(|r| {
                r.parse()
                    .map_err(|e| NodeConfigError::Invalid(format!("egress_allow: {e}")))
            })
            .collect()
    }

    /// The control endpoint as a rule for `--net-deny`, when it is an IPv4 `address:port` (a
    /// host name would need a lookup; such an endpoint is not covered).
    pub fn control_rule(&self) -> Option<crate::egress::Rule> {
        let addr: std::net::SocketAddrV4 = self.control.as_deref()?.parse().ok()?;
        Some(crate::egress::Rule {
            addr: *addr.ip(),
            prefix_len: 32,
            port: Some(addr.port()),
        })
    }

    /// The file's text: a comment naming the writer, then the keys.
    #[cfg(feature = "toml")]
    pub fn to_toml(&self) -> Result<String, NodeConfigError> {
        self.validate()?;
        let body = toml::to_string(self).map_err(NodeConfigError::Write)?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Parses (and checks) the file's text.
    #[cfg(feature = "toml")]
    pub fn parse(text: &str) -> Result<NodeConfig, NodeConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(NodeConfigError::Parse)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses [`NODE_CONFIG`].
    #[cfg(feature = "toml")]
    pub fn load() -> Result<NodeConfig, NodeConfigError> {
        let text = std::fs::read_to_string(NODE_CONFIG).map_err(NodeConfigError::Read)?;
        NodeConfig::parse(&text)
    }
}

#[cfg(all(test, feature = "toml"))]
mod tests {
    use super::*;

    fn config(control: Option<&str>) -> NodeConfig {
        NodeConfig {
            version: 7,
            profile: "dev".into(),
            control: control.map(str::to_owned),
            egress_allow: Vec::new(),
            notary: None,
            notary_key: None,
            farm: None,
            release_channel: None,
            release_poll_seconds: None,
        }
    }

    #[test]
    fn the_text_is_what_the_builder_always_wrote() {
        // The bytes of the node image depend on it (reproducible builds).
        assert_eq!(
            config(Some("10.0.2.2:7878")).to_toml().unwrap(),
            "# Written by image-builder; read by init.\nversion = 7\nprofile = \"dev\"\ncontrol = \"10.0.2.2:7878\"\n"
        );
        assert_eq!(
            config(None).to_toml().unwrap(),
            "# Written by image-builder; read by init.\nversion = 7\nprofile = \"dev\"\n"
        );
    }

    #[test]
    fn round_trips_including_odd_values() {
        let odd = [
            config(None),
            config(Some("")),
            config(Some("[::1]:80")),
            NodeConfig {
                version: u64::MAX >> 1,
                profile: "a \"quoted\" \\ 'profile' é\n".into(),
                control: Some("host\twith = signs # and hash".into()),
                egress_allow: vec!["10.0.2.2:4000".into()],
                notary: None,
                notary_key: None,
                farm: None,
                release_channel: None,
                release_poll_seconds: None,
            },
        ];
        for c in odd {
            let text = c.to_toml().unwrap();
            assert_eq!(NodeConfig::parse(&text).unwrap(), c, "{text}");
        }
    }

    #[test]
    fn parses_with_and_without_control_and_ignores_unknown_keys() {
        let n = NodeConfig::parse("version = 7\nprofile = \"dev\"\ncontrol = \"10.0.2.2:7878\"\n")
            .unwrap();
        assert_eq!(n, config(Some("10.0.2.2:7878")));
        let n = NodeConfig::parse("version = 1\nprofile = \"prod\"\nextra = true\n").unwrap();
        assert_eq!(n.control, None);
    }

    #[test]
    fn egress_rules_are_checked_and_the_control_endpoint_becomes_a_deny_rule() {
        let n = NodeConfig::parse(
            "version = 1\nprofile = \"dev\"\ncontrol = \"10.0.2.2:7878\"\negress_allow = [\"10.0.2.2:4000\", \"192.168.0.0/16\"]\n",
        )
        .unwrap();
        let rules = n.egress_allow_rules().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].to_string(), "10.0.2.2/32:4000");
        assert_eq!(n.control_rule().unwrap().to_string(), "10.0.2.2/32:7878");
        assert_eq!(config(Some("control.example:443")).control_rule(), None);
        assert_eq!(
            NodeConfig::parse("version = 1\nprofile = \"dev\"\negress_allow = [\"10.0.0.0/99\"]\n")
                .unwrap_err()
                .to_string(),
            "/etc/nullos/node.toml: egress_allow: \"10.0.0.0/99\" is not A.B.C.D[/N][:PORT]"
        );
    }

    #[test]
    fn grid_settings_are_all_or_nothing_and_checked() {
        let key = trust::SecretKey::from_seed([1; 32]).public().to_text();
        let farm = trust::SecretKey::from_seed([2; 32]).public().to_text();
        let text = format!(
            "version = 1\nprofile = \"dev\"\nnotary = \"http://10.0.2.2:7878/\"\nnotary_key = \"{key}\"\nfarm = \"{farm}\"\n"
        );
        let n = NodeConfig::parse(&text).unwrap();
        let grid = n.grid().unwrap().unwrap();
        assert_eq!(grid.notary, "http://10.0.2.2:7878");
        assert_eq!(grid.notary_key.to_text(), key);
        assert_eq!(grid.farm.map(|f| f.to_text()), Some(farm.clone()));
        // Without a farm (an image every farmer gets): the farmer gives it at boot.
        let without = NodeConfig {
            farm: None,
            ..n.clone()
        };
        assert_eq!(without.grid().unwrap().unwrap().farm, None);
        assert_eq!(n.notary_rule().unwrap().to_string(), "10.0.2.2/32:7878");
        assert_eq!(NodeConfig::parse(&n.to_toml().unwrap()).unwrap(), n);
        assert_eq!(config(None).grid().unwrap(), None);
        for (bad, why) in [
            (
                "notary = \"https://a:1\"".to_owned(),
                "notary 'https://a:1' is not http://host[:port]",
            ),
            (
                "notary = \"http://a:1\"".to_owned(),
                "notary needs notary_key",
            ),
            (
                format!("farm = \"{farm}\""),
                "notary_key and farm need notary",
            ),
            (
                format!("notary = \"http://a\"\nnotary_key = \"{key}\"\nfarm = \"x\""),
                "farm is not a public key line",
            ),
        ] {
            let err = NodeConfig::parse(&format!("version = 1\nprofile = \"p\"\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn garbled_or_out_of_bounds_is_an_error() {
        assert!(NodeConfig::parse("version = \"seven\"\nprofile = \"dev\"").is_err());
        assert!(NodeConfig::parse("profile = \"dev\"").is_err());
        assert!(NodeConfig::parse("\u{0}\u{1}not toml [[[").is_err());
        let long = format!(
            "version = 1\nprofile = \"{}\"\n",
            "p".repeat(MAX_LABEL_BYTES + 1)
        );
        assert!(matches!(
            NodeConfig::parse(&long),
            Err(NodeConfigError::Invalid(_))
        ));
        let nul = NodeConfig {
            control: Some("a\0b".into()),
            ..config(None)
        };
        assert!(matches!(nul.to_toml(), Err(NodeConfigError::Invalid(_))));
        assert_eq!(
            NodeConfig::parse("version = 1\nprofile = \"a\\u0000\"\n")
                .unwrap_err()
                .to_string(),
            "/etc/nullos/node.toml: profile contains a NUL byte"
        );
    }
}

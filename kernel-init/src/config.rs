//! What `init` is told: the kernel command line and `/etc/nullos/node.toml`.
//!
//! Both parsers are pure (text in, values out); the callers read the files.

use std::fmt;

// `node.toml`: written by the image builder, one type for both sides (`interfaces::node`).
pub use interfaces::node::{NodeConfig, NodeConfigError as ConfigError};
pub use interfaces::paths::NODE_CONFIG as NODE_CONFIG_PATH;

/// Which system this `init` is PID 1 of, chosen by `nullos.role=` on the kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The node OS itself (the default).
    #[default]
    Node,
    /// A micro-VM guest started by the node's VMM (`guest` module).
    Guest,
}

impl Role {
    /// The command-line spelling of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Guest => "guest",
        }
    }
}

/// Log verbosity, from `nullos.loglevel=`; ordered from most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is off but boot goes on.
    Warn,
    /// Normal progress (the default).
    #[default]
    Info,
    /// Details for debugging.
    Debug,
}

impl LogLevel {
    /// The word used in log lines and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }

    /// The syslog priority written as `<N>` to `/dev/kmsg`.
    pub fn syslog_priority(self) -> u8 {
        match self {
            LogLevel::Error => 3,
            LogLevel::Warn => 4,
            LogLevel::Info => 6,
            LogLevel::Debug => 7,
        }
    }

    /// Parses the command-line word (`debug|info|warn|error`).
    pub fn parse(word: &str) -> Option<LogLevel> {
        match word {
            "error" => Some(LogLevel::Error),
            "warn" | "warning" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            _ => None,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `nullos.*` parameters of the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline {
    /// `nullos.role=`.
    pub role: Role,
    /// `nullos.loglevel=`.
    pub loglevel: LogLevel,
    /// `nullos.control=host:port`, overriding node.toml.
    pub control: Option<String>,
    /// Problems found while parsing, to be logged once logging is up.
    pub warnings: Vec<String>,
}

impl Cmdline {
    /// Parses `/proc/cmdline` text. Unknown parameters are ignored (they belong to the kernel);
    /// bad values of ours are reported in [`Cmdline::warnings`] and the default is kept.
    pub fn parse(text: &str) -> Cmdline {
        let mut out = Cmdline::default();
        for word in split_cmdline(text) {
            // Everything after a bare `--` is for init's argv, not parameters.
            if word == "--" {
                break;
            }
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word.as_str(), None),
            };
            match (key, value) {
                ("nullos.loglevel", Some(v)) => match LogLevel::parse(v) {
                    Some(level) => out.loglevel = level,
                    None => out
                        .warnings
                        .push(format!("nullos.loglevel={v} is not debug|info|warn|error")),
                },
                ("nullos.role", Some(v)) => match v {
                    "node" => out.role = Role::Node,
                    "guest" => out.role = Role::Guest,
                    _ => out
                        .warnings
                        .push(format!("nullos.role={v} is not node|guest; using node")),
                },
                ("nullos.control", Some(v)) if !v.is_empty() => out.control = Some(v.to_owned()),
                (k, _) if k.starts_with("nullos.") => {
                    out.warnings
                        .push(format!("unknown or empty parameter {word}"));
                }
                _ => {}
            }
        }
        out
    }
}

/// Splits a kernel command line into words the way the kernel does: whitespace separates,
/// double quotes group (and are removed).
fn split_cmdline(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut current));
                    has_word = false;
                }
            }
            c => {
                current.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        words.push(current);
    }
    words
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
    fn cmdline_defaults_without_our_parameters() {
        let c = Cmdline::parse("console=ttyS0 quiet panic=-1\n");
        assert_eq!(c, Cmdline::default());
        assert_eq!(c.loglevel, LogLevel::Info);
        assert_eq!(c.role, Role::Node);
    }

    #[test]
    fn cmdline_reads_our_parameters() {
        let c = Cmdline::parse(
            "console=ttyS0 nullos.loglevel=debug nullos.control=10.0.2.2:7878 nullos.role=guest",
        );
        assert_eq!(c.loglevel, LogLevel::Debug);
        assert_eq!(c.control.as_deref(), Some("10.0.2.2:7878"));
        assert_eq!(c.role, Role::Guest);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn cmdline_bad_values_warn_and_keep_defaults() {
        let c = Cmdline::parse("nullos.loglevel=loud nullos.role=king nullos.control= nullos.x=1");
        assert_eq!(c.loglevel, LogLevel::Info);
        assert_eq!(c.role, Role::Node);
        assert_eq!(c.control, None);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
    }

    #[test]
    fn cmdline_quotes_and_double_dash() {
        let c =
            Cmdline::parse(r#"foo="a b" nullos.control="ctl.example:80" -- nullos.loglevel=debug"#);
        assert_eq!(c.control.as_deref(), Some("ctl.example:80"));
        assert_eq!(
            c.loglevel,
            LogLevel::Info,
            "parameters after -- belong to init's argv"
        );
        assert_eq!(split_cmdline(r#"a="x y"  b"#), vec!["a=x y", "b"]);
    }

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

    #[test]
    fn loglevel_order_and_priorities() {
        assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Info < LogLevel::Debug);
        assert_eq!(LogLevel::Error.syslog_priority(), 3);
        assert_eq!(LogLevel::Debug.syslog_priority(), 7);
    }
}

//! What a PID 1 of ours is told on the kernel command line: the `nullos.*` words (stage 0
//! passes its own on to the node, so every PID 1 reads the same vocabulary).
//!
//! The parser is pure (bytes in, values out) and splits the line exactly as the kernel does
//! ([`split`]); [`read`] reads `/proc/cmdline`.

use std::fmt;

#[cfg(any(test, feature = "cmdline-reference"))]
pub mod reference;
pub mod split;

pub use split::{is_kernel_space, KernelArgs, Param};

/// Where the kernel shows its command line (once `/proc` is mounted).
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// The kernel command line as the kernel holds it: the bytes of `/proc/cmdline` without the
/// newline the kernel adds when showing it; empty if it cannot be read (then every parameter
/// keeps its default, and logging is still set up). Bytes, not text: the line may hold any
/// byte, and the kernel splits on some (0xa0) that are not UTF-8 on their own.
pub fn read() -> Vec<u8> {
    let mut line = std::fs::read(PROC_CMDLINE).unwrap_or_default();
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    line
}

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
    /// `nullos.data=<ext4 UUID>`: the pinned data disk (stage 0 passes the one its stick
    /// records); no other disk is taken as the data disk.
    pub data: Option<String>,
    /// `nullos.farm=<64 hex>`: the farm the node joins (the farmer's public key), from the
    /// farmer's `boot.ipxe` or the stick's farmer file.
    pub farm: Option<String>,
    /// `nullos.notary=http://host[:port]`: the farmer's notary, overriding node.toml's.
    pub notary: Option<String>,
    /// `nullos.channel=http://host[:port]/path`: the release channel the node watches for
    /// self-updates, overriding node.toml's (the farmer's, from `boot.ipxe` or the stick).
    pub channel: Option<String>,
    /// Problems found while parsing, to be logged once logging is up.
    pub warnings: Vec<String>,
}

impl Cmdline {
    /// Parses the kernel command line, split as the kernel splits it (everything after a
    /// bare `--` is init's argv, not parameters). Unknown parameters are ignored (they belong
    /// to the kernel); bad values of ours are reported in [`Cmdline::warnings`] and the
    /// default is kept.
    pub fn parse(line: impl AsRef<[u8]>) -> Cmdline {
        let mut out = Cmdline::default();
        for param in split::split(line.as_ref()).params {
            if !param.name.starts_with(b"nullos.") {
                continue;
            }
            // The parameter as a log line may show it.
            let word = match param.value {
                Some(v) => format!("{}={}", escape(param.name), escape(v)),
                None => escape(param.name),
            };
            let (Ok(key), Ok(value)) = (
                std::str::from_utf8(param.name),
                param.value.map(std::str::from_utf8).transpose(),
            ) else {
                out.warnings
                    .push(format!("parameter {word} is not UTF-8 text; ignored"));
                continue;
            };
            match (key, value) {
                ("nullos.loglevel", Some(v)) => match LogLevel::parse(v) {
                    Some(level) => out.loglevel = level,
                    None => out
                        .warnings
                        .push(format!("{word} is not debug|info|warn|error")),
                },
                ("nullos.role", Some(v)) => match v {
                    "node" => out.role = Role::Node,
                    "guest" => out.role = Role::Guest,
                    _ => out
                        .warnings
                        .push(format!("{word} is not node|guest; using node")),
                },
                ("nullos.control", Some(v)) if !v.is_empty() => out.control = Some(v.to_owned()),
                ("nullos.data", Some(v)) if !v.is_empty() => out.data = Some(v.to_owned()),
                ("nullos.farm", Some(v)) if !v.is_empty() => out.farm = Some(v.to_owned()),
                ("nullos.notary", Some(v)) if !v.is_empty() => out.notary = Some(v.to_owned()),
                ("nullos.channel", Some(v)) if !v.is_empty() => out.channel = Some(v.to_owned()),
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

/// `bytes` with everything outside printable ASCII (and the backslash) as `\xNN`, for a
/// log line that cannot be forged or garbled by what the command line held.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for byte in bytes {
        match byte {
            b' '..=b'~' if *byte != b'\\' => out.push(char::from(*byte)),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out
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
    fn cmdline_reads_the_farmers_settings_and_the_pinned_data_disk() {
        let farm = "ab".repeat(32);
        let c = Cmdline::parse(format!(
            "quiet nullos.farm={farm} nullos.notary=http://10.0.2.2:7878 \
             nullos.data=0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9 \
             nullos.channel=http://10.0.2.2:8080/release"
        ));
        assert_eq!(c.farm.as_deref(), Some(farm.as_str()));
        assert_eq!(c.notary.as_deref(), Some("http://10.0.2.2:7878"));
        assert_eq!(c.channel.as_deref(), Some("http://10.0.2.2:8080/release"));
        assert_eq!(
            c.data.as_deref(),
            Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = Cmdline::parse("nullos.data= nullos.farm");
        assert_eq!((c.data, c.farm), (None, None));
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
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
        let split = split::split(br#"a="x y"  b"#);
        assert_eq!(
            split.params,
            [
                Param {
                    name: b"a",
                    value: Some(b"x y")
                },
                Param {
                    name: b"b",
                    value: None
                }
            ]
        );
    }

    #[test]
    fn cmdline_splits_on_the_kernels_spaces_not_rusts() {
        // `à` in UTF-8 is c3 a0: the kernel ends the word at a0, so `nullos.loglevel=debug`
        // is a parameter of its own, as the kernel sees it.
        let c = Cmdline::parse(b"nullos.role=\xc3\xa0nullos.loglevel=debug");
        assert_eq!(c.loglevel, LogLevel::Debug);
        assert_eq!(
            c.warnings,
            ["parameter nullos.role=\\xc3 is not UTF-8 text; ignored"]
        );
        // U+2003 (em space) is whitespace to Rust, not to the kernel: one word.
        let c = Cmdline::parse("nullos.control=a:1\u{2003}nullos.loglevel=debug");
        assert_eq!(c.loglevel, LogLevel::Info);
        assert_eq!(
            c.control.as_deref(),
            Some("a:1\u{2003}nullos.loglevel=debug")
        );
    }

    #[test]
    fn escape_keeps_printable_ascii_only() {
        assert_eq!(escape(b"a=b \"c\""), "a=b \"c\"");
        assert_eq!(escape(b"x\xa0\n\\"), "x\\xa0\\x0a\\x5c");
    }

    #[test]
    fn loglevel_order_and_priorities() {
        assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Info < LogLevel::Debug);
        assert_eq!(LogLevel::Error.syslog_priority(), 3);
        assert_eq!(LogLevel::Debug.syslog_priority(), 7);
    }
}

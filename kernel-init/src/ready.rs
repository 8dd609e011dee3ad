//! The `nullos: ready ...` line, the node's one-line boot summary that tests and operators grep.

use std::fmt;
use std::net::Ipv4Addr;

use nix::time::{clock_gettime, ClockId};

/// Outcome of the control endpoint check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlStatus {
    /// A TCP connection succeeded.
    Reachable,
    /// Every attempt failed.
    Unreachable,
    /// No endpoint is configured.
    None,
}

impl ControlStatus {
    fn as_str(self) -> &'static str {
        match self {
            ControlStatus::Reachable => "reachable",
            ControlStatus::Unreachable => "unreachable",
            ControlStatus::None => "none",
        }
    }
}

/// Everything the ready line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Release version, `None` if node.toml was unusable.
    pub version: Option<u64>,
    /// Profile, `None` if node.toml was unusable.
    pub profile: Option<String>,
    /// Leased address, prefix length and interface.
    pub address: Option<(Ipv4Addr, u8, String)>,
    /// Milliseconds since the kernel started.
    pub uptime_ms: u64,
    /// Control check outcome.
    pub control: ControlStatus,
    /// Sockets open to inbound traffic.
    pub listening: usize,
    /// The node's grid id (its public key, hex), when it is configured for a grid.
    pub node: Option<String>,
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nullos: ready version=")?;
        match self.version {
            Some(v) => write!(f, "{v}")?,
            None => f.write_str("unknown")?,
        }
        // A profile is a single word in the line; anything else would break parsing.
        let profile = self
            .profile
            .as_deref()
            .filter(|p| !p.is_empty() && !p.contains(char::is_whitespace))
            .unwrap_or("unknown");
        write!(f, " profile={profile}")?;
        match &self.address {
            Some((ip, prefix, iface)) => write!(f, " address={ip}/{prefix} iface={iface}")?,
            None => f.write_str(" address=none iface=none")?,
        }
        write!(
            f,
            " uptime_ms={} control={} listening={}",
            self.uptime_ms,
            self.control.as_str(),
            self.listening
        )?;
        // The id is hex; anything else would break the line's parsing.
        match self.node.as_deref() {
            Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                write!(f, " node={id}")
            }
            _ => f.write_str(" node=none"),
        }
    }
}

/// Milliseconds since the kernel started (CLOCK_BOOTTIME, which counts suspend too).
pub fn uptime_ms() -> u64 {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => {
            let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
            secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_line() {
        let r = Ready {
            version: Some(3),
            profile: Some("dev".into()),
            address: Some((Ipv4Addr::new(10, 0, 2, 15), 24, "eth0".into())),
            uptime_ms: 4321,
            control: ControlStatus::Reachable,
            listening: 0,
            node: Some("ab12".into()),
        };
        assert_eq!(
            r.to_string(),
            "nullos: ready version=3 profile=dev address=10.0.2.15/24 iface=eth0 uptime_ms=4321 control=reachable listening=0 node=ab12"
        );
    }

    #[test]
    fn unknowns_and_none() {
        let r = Ready {
            version: None,
            profile: Some("two words".into()),
            address: None,
            uptime_ms: 0,
            control: ControlStatus::None,
            listening: 2,
            node: Some("not hex".into()),
        };
        assert_eq!(
            r.to_string(),
            "nullos: ready version=unknown profile=unknown address=none iface=none uptime_ms=0 control=none listening=2 node=none"
        );
        let r = Ready {
            control: ControlStatus::Unreachable,
            ..r
        };
        assert!(r.to_string().contains(" control=unreachable "));
    }

    #[test]
    fn uptime_is_monotonic_and_nonzero() {
        let a = uptime_ms();
        let b = uptime_ms();
        assert!(a > 0 && b >= a);
    }
}

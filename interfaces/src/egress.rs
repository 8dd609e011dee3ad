//! Egress rules of the node's policy for its micro-VMs' user-mode network: the node (from
//! `node.toml`) passes them to `vmm` as `--net-allow`/`--net-deny`, and `usernet` applies them
//! (its `policy` module says in what order).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

/// A destination rule: `A.B.C.D[/N][:PORT]` (no port: every port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The network (host bits are ignored).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
    /// The one port it covers, or every port.
    pub port: Option<u16>,
}

/// A rule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not `A.B.C.D[/N][:PORT]` with N ≤ 32 and 0 < PORT.
    #[error("{0:?} is not A.B.C.D[/N][:PORT]")]
    Parse(String),
}

impl Rule {
    /// Whether `dst` is covered.
    pub fn matches(&self, dst: SocketAddrV4) -> bool {
        in_prefix(*dst.ip(), self.addr, self.prefix_len)
            && self.port.is_none_or(|p| p == dst.port())
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Rule, RuleError> {
        let bad = || RuleError::Parse(s.to_owned());
        let (net, port) = match s.split_once(':') {
            Some((net, port)) => {
                let port: u16 = port.parse().map_err(|_| bad())?;
                if port == 0 {
                    return Err(bad());
                }
                (net, Some(port))
            }
            None => (s, None),
        };
        let (addr, prefix_len) = match net.split_once('/') {
            Some((addr, len)) => (addr, len.parse::<u8>().map_err(|_| bad())?),
            None => (net, 32),
        };
        if prefix_len > 32 {
            return Err(bad());
        }
        let addr = addr.parse().map_err(|_| bad())?;
        Ok(Rule {
            addr,
            prefix_len,
            port,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Whether `ip` is inside `net/prefix_len`.
pub fn in_prefix(ip: Ipv4Addr, net: Ipv4Addr, prefix_len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_print() {
        let r: Rule = "10.0.2.2:7878".parse().unwrap();
        assert_eq!(
            r,
            Rule {
                addr: Ipv4Addr::new(10, 0, 2, 2),
                prefix_len: 32,
                port: Some(7878)
            }
        );
        assert_eq!(r.to_string(), "10.0.2.2/32:7878");
        assert_eq!(r.to_string().parse::<Rule>().unwrap(), r);
        let n: Rule = "192.168.0.0/16".parse().unwrap();
        assert_eq!((n.prefix_len, n.port), (16, None));
        for bad in [
            "",
            "10.0.0.1:0",
            "10.0.0.1:x",
            "10.0.0.0/33",
            "10.0.0/8",
            "host:80",
            "10.0.0.1:65536",
            "::1",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
        }
    }
}

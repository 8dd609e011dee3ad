//! The guest's static network configuration from the kernel's `ip=` parameter.
//!
//! The syntax is the kernel's own (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`.
//! The Debian kernel is built without `CONFIG_IP_PNP`, so the kernel ignores it and the guest
//! init applies it. Only static configuration is supported (`autoconf` empty, `off`, `none` or
//! `static`): the VMM's network has fixed addresses and no DHCP server.

use std::net::Ipv4Addr;

/// The interface used when `ip=` names none.
pub const DEFAULT_DEVICE: &str = "eth0";

/// Why `ip=` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpParamError {
    /// The kernel command line has no `ip=`.
    #[error("no ip= parameter on the kernel command line")]
    Missing,
    /// A field that must be an IPv4 address is not one.
    #[error("ip=: {field} {value:?} is not an IPv4 address")]
    Address {
        /// Which field.
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// The client address or netmask is missing.
    #[error("ip=: the {0} is required")]
    Required(&'static str),
    /// The netmask's one bits are not contiguous.
    #[error("ip=: netmask {0} is not contiguous")]
    Netmask(Ipv4Addr),
    /// Dynamic configuration was asked for.
    #[error("ip=: autoconf {0:?} is not supported (only static: off, none)")]
    Autoconf(String),
    /// The device name is not a valid interface name.
    #[error("ip=: device {0:?} is not an interface name")]
    Device(String),
}

/// A parsed `ip=` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The guest's address.
    pub address: Ipv4Addr,
    /// Prefix length from the netmask.
    pub prefix_len: u8,
    /// The default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The host name field, if given.
    pub hostname: Option<String>,
    /// The interface to configure.
    pub device: String,
    /// DNS servers (up to two).
    pub dns: Vec<Ipv4Addr>,
}

impl IpConfig {
    /// Finds the last `ip=` word of a kernel command line (before a bare `--`) and parses it.
    pub fn from_cmdline(cmdline: &str) -> Result<IpConfig, IpParamError> {
        let value = cmdline
            .split_whitespace()
            .take_while(|w| *w != "--")
            .filter_map(|w| w.strip_prefix("ip="))
            .last()
            .ok_or(IpParamError::Missing)?;
        IpConfig::parse(value)
    }

    /// Parses the value of `ip=` (without the `ip=`).
    pub fn parse(value: &str) -> Result<IpConfig, IpParamError> {
        let fields: Vec<&str> = value.split(':').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let address = optional_address("client address", field(0))?
            .ok_or(IpParamError::Required("client address"))?;
        let gateway = optional_address("gateway", field(2))?;
        let netmask =
            optional_address("netmask", field(3))?.ok_or(IpParamError::Required("netmask"))?;
        let prefix_len = prefix_len(netmask).ok_or(IpParamError::Netmask(netmask))?;
        let hostname = Some(field(4)).filter(|h| !h.is_empty()).map(str::to_owned);
        let device = match field(5) {
            "" => DEFAULT_DEVICE.to_owned(),
            d if d.len() < 16 && !d.contains(['/', '\0']) => d.to_owned(),
            d => return Err(IpParamError::Device(d.to_owned())),
        };
        match field(6) {
            "" | "off" | "none" | "static" => {}
            other => return Err(IpParamError::Autoconf(other.to_owned())),
        }
        let mut dns = Vec::new();
        for (name, i) in [("dns0", 7), ("dns1", 8)] {
            if let Some(server) = optional_address(name, field(i))? {
                dns.push(server);
            }
        }
        Ok(IpConfig {
            address,
            prefix_len,
            gateway,
            hostname,
            device,
            dns,
        })
    }

    /// The directed broadcast address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self.address) | !mask)
    }

    /// `/etc/resolv.conf` naming the DNS servers; `None` without any.
    pub fn resolv_conf(&self) -> Option<String> {
        if self.dns.is_empty() {
            return None;
        }
        let mut out = String::from("# written by nullos init from ip=\n");
        for server in &self.dns {
            out.push_str(&format!("nameserver {server}\n"));
        }
        out.push_str("options timeout:2 attempts:2\n");
        Some(out)
    }

    /// `network: eth0 10.200.0.2/24 via 10.200.0.1 dns 10.200.0.1` (for the log).
    pub fn summary(&self) -> String {
        let via = self
            .gateway
            .map_or_else(|| "none".to_owned(), |g| g.to_string());
        let dns: Vec<String> = self.dns.iter().map(ToString::to_string).collect();
        let dns = if dns.is_empty() {
            "none".to_owned()
        } else {
            dns.join(",")
        };
        format!(
            "network: {} {}/{} via {via} dns {dns}",
            self.device, self.address, self.prefix_len
        )
    }
}

fn optional_address(field: &'static str, value: &str) -> Result<Option<Ipv4Addr>, IpParamError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| IpParamError::Address {
        field,
        value: value.to_owned(),
    })
}

/// The prefix length of a contiguous netmask.
fn prefix_len(netmask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(netmask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then(|| u8::try_from(ones).unwrap_or(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = "10.200.0.2::10.200.0.1:255.255.255.0::eth0:off:10.200.0.1";

    #[test]
    fn parses_the_contract_parameter() {
        let ip = IpConfig::parse(CONTRACT).unwrap();
        assert_eq!(
            ip,
            IpConfig {
                address: Ipv4Addr::new(10, 200, 0, 2),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(10, 200, 0, 1)),
                hostname: None,
                device: "eth0".into(),
                dns: vec![Ipv4Addr::new(10, 200, 0, 1)],
            }
        );
        assert_eq!(ip.broadcast(), Ipv4Addr::new(10, 200, 0, 255));
        assert_eq!(
            ip.summary(),
            "network: eth0 10.200.0.2/24 via 10.200.0.1 dns 10.200.0.1"
        );
        assert_eq!(
            ip.resolv_conf().unwrap(),
            "# written by nullos init from ip=\nnameserver 10.200.0.1\noptions timeout:2 attempts:2\n"
        );
    }

    #[test]
    fn finds_the_last_ip_word_before_double_dash() {
        let line = format!("console=ttyS0 ip=1.2.3.4::::: nullos.role=guest ip={CONTRACT} -- ip=x");
        assert_eq!(
            IpConfig::from_cmdline(&line).unwrap().address,
            Ipv4Addr::new(10, 200, 0, 2)
        );
        assert_eq!(
            IpConfig::from_cmdline("console=ttyS0 -- ip=1.2.3.4"),
            Err(IpParamError::Missing)
        );
    }

    #[test]
    fn optional_fields_and_defaults() {
        let ip = IpConfig::parse("192.168.1.9:::255.255.0.0:box").unwrap();
        assert_eq!(ip.prefix_len, 16);
        assert_eq!(ip.gateway, None);
        assert_eq!(ip.hostname.as_deref(), Some("box"));
        assert_eq!(ip.device, DEFAULT_DEVICE);
        assert!(ip.dns.is_empty() && ip.resolv_conf().is_none());
        assert_eq!(
            ip.summary(),
            "network: eth0 192.168.1.9/16 via none dns none"
        );
        let ip = IpConfig::parse("10.0.0.1::10.0.0.254:255.255.255.255::e1:none:1.1.1.1:8.8.8.8")
            .unwrap();
        assert_eq!(ip.prefix_len, 32);
        assert_eq!(ip.broadcast(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.dns.len(), 2);
        assert_eq!(IpConfig::parse("10.0.0.1:::0.0.0.0").unwrap().prefix_len, 0);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert_eq!(
            IpConfig::parse("dhcp"),
            Err(IpParamError::Address {
                field: "client address",
                value: "dhcp".into()
            })
        );
        assert_eq!(
            IpConfig::parse(""),
            Err(IpParamError::Required("client address"))
        );
        assert_eq!(
            IpConfig::parse("10.0.0.2"),
            Err(IpParamError::Required("netmask"))
        );
        assert_eq!(
            IpConfig::parse("10.0.0.2:::255.0.255.0"),
            Err(IpParamError::Netmask(Ipv4Addr::new(255, 0, 255, 0)))
        );
        assert_eq!(
            IpConfig::parse("10.0.0.2:::255.0.0.0::eth0:dhcp"),
            Err(IpParamError::Autoconf("dhcp".into()))
        );
        assert!(matches!(
            IpConfig::parse("10.0.0.2::gw:255.0.0.0"),
            Err(IpParamError::Address {
                field: "gateway",
                ..
            })
        ));
        assert!(matches!(
            IpConfig::parse("10.0.0.2:::255.0.0.0::a/b"),
            Err(IpParamError::Device(_))
        ));
    }
}

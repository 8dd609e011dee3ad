//! The fixed guest network plan, the tunables, and the node resolver lookup.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

// The gateway's address (the VMM's smoltcp stack, also the guest's DNS server), the guest's
// fixed address (configured by the guest itself from `ip=`) and the prefix length of the guest
// network (10.200.0.0/24): the node and the guest use the same (`interfaces::net`).
pub use interfaces::net::{GATEWAY_IP, GUEST_IP, PREFIX_LEN};
/// The gateway's MAC address.
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x01];
/// The guest's MAC address (the VMM puts it in the virtio-net config space; usernet learns it
/// from the guest's ARP and does not need it).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Where the node's resolver is read from.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Errors of the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `/etc/resolv.conf` exists but could not be read.
    #[error("read {path}")]
    ReadResolvConf {
        /// The file.
        path: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The guest address is not inside the gateway's network, or equals the gateway.
    #[error("guest {guest} is not a host of the gateway network {gateway}/{prefix_len}")]
    GuestOutsideNetwork {
        /// Configured guest address.
        guest: Ipv4Addr,
        /// Configured gateway address.
        gateway: Ipv4Addr,
        /// Configured prefix length.
        prefix_len: u8,
    },
    /// A limit or size that must be positive is zero.
    #[error("{0} must not be zero")]
    Zero(&'static str),
}

/// Everything [`UserNet`](crate::UserNet) needs. `Default` is the fixed micro-VM network with no
/// DNS forwarding; [`UserNetConfig::system`] adds the node's resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNetConfig {
    /// Gateway address (ours).
    pub gateway_ip: Ipv4Addr,
    /// Prefix length of the guest network.
    pub prefix_len: u8,
    /// Gateway MAC address (ours).
    pub gateway_mac: [u8; 6],
    /// The only source address accepted from the guest.
    pub guest_ip: Ipv4Addr,
    /// Where DNS queries to `gateway_ip:53` are forwarded; `None` drops them.
    pub dns_server: Option<SocketAddr>,
    /// Concurrent TCP flows (connecting or open); SYNs beyond get an RST.
    pub max_flows: usize,
    /// DNS queries waiting for the resolver; queries beyond are dropped.
    pub max_dns_queries: usize,
    /// Size of each of a flow's two smoltcp buffers (receive window and send buffer), bytes.
    pub tcp_buffer_size: usize,
    /// Frames waiting for the guest; when full, smoltcp holds back (TCP backpressure).
    pub guest_queue_frames: usize,
    /// How long a host connect may take before the guest gets an RST.
    pub connect_timeout: Duration,
    /// How long a forwarded DNS query waits for its reply.
    pub dns_timeout: Duration,
    /// Let the guest reach 127.0.0.0/8 on the node. Only for tests: in production nothing on
    /// the node is reachable from a workload.
    pub allow_loopback: bool,
}

impl Default for UserNetConfig {
    fn default() -> Self {
        UserNetConfig {
            gateway_ip: GATEWAY_IP,
            prefix_len: PREFIX_LEN,
            gateway_mac: GATEWAY_MAC,
            guest_ip: GUEST_IP,
            dns_server: None,
            max_flows: 256,
            max_dns_queries: 64,
            tcp_buffer_size: 256 * 1024,
            guest_queue_frames: 512,
            connect_timeout: Duration::from_secs(60),
            dns_timeout: Duration::from_secs(5),
            allow_loopback: false,
        }
    }
}

impl UserNetConfig {
    /// The default network with DNS forwarded to the first `nameserver` of `/etc/resolv.conf`
    /// (none when the file is missing or names none).
    pub fn system() -> Result<Self, ConfigError> {
        Ok(UserNetConfig {
            dns_server: system_resolver()?,
            ..UserNetConfig::default()
        })
    }

    /// Checks the invariants `UserNet::new` relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let outside = ConfigError::GuestOutsideNetwork {
            guest: self.guest_ip,
            gateway: self.gateway_ip,
            prefix_len: self.prefix_len,
        };
        if self.prefix_len == 0 || self.prefix_len > 30 {
            return Err(outside);
        }
        if !self.in_network(self.guest_ip) || self.guest_ip == self.gateway_ip {
            return Err(outside);
        }
        for (value, name) in [
            (self.max_flows, "max_flows"),
            (self.max_dns_queries, "max_dns_queries"),
            (self.tcp_buffer_size, "tcp_buffer_size"),
            (self.guest_queue_frames, "guest_queue_frames"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// Whether `ip` is inside the gateway's network.
    pub fn in_network(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.gateway_ip) & mask
    }
}

/// The node's resolver: the first `nameserver` of `/etc/resolv.conf`, port 53.
pub fn system_resolver() -> Result<Option<SocketAddr>, ConfigError> {
    match std::fs::read_to_string(RESOLV_CONF) {
        Ok(text) => Ok(parse_resolv_conf(&text).map(|ip| SocketAddr::new(ip, 53))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::ReadResolvConf {
            path: RESOLV_CONF,
            source,
        }),
    }
}

/// The first `nameserver` line of a resolv.conf text that holds a plain IP address (a scoped
/// IPv6 address such as `fe80::1%eth0` cannot be used from a plain socket and is skipped).
pub fn parse_resolv_conf(text: &str) -> Option<IpAddr> {
    text.lines()
        .map(|line| line.split(['#', ';']).next().unwrap_or(""))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse().ok(),
                _ => None,
            }
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_first_usable_nameserver() {
        let text = "# generated\nsearch lan\nnameserver fe80::1%eth0\nnameserver 192.168.1.1 # home\nnameserver 8.8.8.8\n";
        assert_eq!(
            parse_resolv_conf(text),
            Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)))
        );
        assert_eq!(
            parse_resolv_conf("nameserver 2001:db8::1\n"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_resolv_conf("; nameserver 1.1.1.1\nsearch x\n"), None);
        assert_eq!(parse_resolv_conf("nameservers 1.1.1.1\n"), None);
    }

    #[test]
    fn default_is_valid_and_guest_must_be_inside() {
        UserNetConfig::default().validate().unwrap();
        let bad = UserNetConfig {
            guest_ip: Ipv4Addr::new(10, 201, 0, 2),
            ..UserNetConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::GuestOutsideNetwork { .. })
        ));
        let same = UserNetConfig {
            guest_ip: GATEWAY_IP,
            ..UserNetConfig::default()
        };
        assert!(same.validate().is_err());
        let zero = UserNetConfig {
            max_flows: 0,
            ..UserNetConfig::default()
        };
        assert!(matches!(
            zero.validate(),
            Err(ConfigError::Zero("max_flows"))
        ));
    }

    #[test]
    fn network_membership() {
        let c = UserNetConfig::default();
        assert!(c.in_network(Ipv4Addr::new(10, 200, 0, 254)));
        assert!(!c.in_network(Ipv4Addr::new(10, 200, 1, 1)));
    }
}

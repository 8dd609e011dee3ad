//! The fixed guest network plan, the tunables, and the node resolver lookup.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::policy::Rule;

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
    /// The node's addresses could not be listed.
    #[error("list the node's addresses")]
    NodeAddresses(#[source] io::Error),
    /// The buffers could take more memory than the budget allows.
    #[error("buffers may take {bound} bytes, more than the budget of {budget}")]
    OverBudget {
        /// [`UserNetConfig::memory_bound`].
        bound: usize,
        /// [`UserNetConfig::memory_budget`].
        budget: usize,
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
    /// Non-public destinations the node's policy opens to its workloads (see [`crate::policy`]).
    pub allow: Vec<Rule>,
    /// Destinations always refused, even when public: the node's control and notary endpoints.
    pub deny: Vec<Rule>,
    /// The node's own addresses, always refused ([`UserNetConfig::system`] reads them).
    pub node_addrs: Vec<Ipv4Addr>,
    /// New host connects per second (token bucket rate); SYNs beyond get an RST.
    pub syn_rate: u32,
    /// New host connects that may come at once (token bucket size).
    pub syn_burst: u32,
    /// An open flow with no byte either way for this long is reset on both sides.
    pub idle_timeout: Duration,
    /// The most memory usernet's buffers may take: [`UserNetConfig::memory_bound`] must fit.
    pub memory_budget: usize,
}

/// Bytes of one frame in the queue for the guest, at most (MTU 1500 plus the Ethernet header).
const FRAME_BYTES: usize = 1514;
/// Bytes of the DNS forwarder's smoltcp buffers (32 queries of 512 and 32 answers of 1472).
const DNS_BYTES: usize = 32 * 512 + 32 * 1472;

impl Default for UserNetConfig {
    fn default() -> Self {
        UserNetConfig {
            gateway_ip: GATEWAY_IP,
            prefix_len: PREFIX_LEN,
            gateway_mac: GATEWAY_MAC,
            guest_ip: GUEST_IP,
            dns_server: None,
            max_flows: 64,
            max_dns_queries: 64,
            tcp_buffer_size: 64 * 1024,
            guest_queue_frames: 512,
            connect_timeout: Duration::from_secs(60),
            dns_timeout: Duration::from_secs(5),
            allow_loopback: false,
            allow: Vec::new(),
            deny: Vec::new(),
            node_addrs: Vec::new(),
            syn_rate: 20,
            syn_burst: 40,
            idle_timeout: Duration::from_secs(600),
            memory_budget: 12 << 20,
        }
    }
}

impl UserNetConfig {
    /// The default network with DNS forwarded to the first `nameserver` of `/etc/resolv.conf`
    /// (none when the file is missing or names none).
    pub fn system() -> Result<Self, ConfigError> {
        Ok(UserNetConfig {
            dns_server: system_resolver()?,
            node_addrs: node_addresses()?,
            ..UserNetConfig::default()
        })
    }

    /// The most memory usernet's buffers can take: two TCP buffers per flow at the flow limit,
    /// the queue of frames for the guest, and the DNS forwarder. The defaults give
    /// 64 × 2 × 64 KiB + 512 × 1514 + 62 KiB, about 8.8 MiB, inside the 12 MiB budget.
    pub fn memory_bound(&self) -> usize {
        self.max_flows
            .saturating_mul(self.tcp_buffer_size.saturating_mul(2))
            .saturating_add(self.guest_queue_frames.saturating_mul(FRAME_BYTES))
            .saturating_add(DNS_BYTES)
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
            (self.syn_rate as usize, "syn_rate"),
            (self.syn_burst as usize, "syn_burst"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::Zero("idle_timeout"));
        }
        if self.memory_bound() > self.memory_budget {
            return Err(ConfigError::OverBudget {
                bound: self.memory_bound(),
                budget: self.memory_budget,
            });
        }
        Ok(())
    }

    /// Whether `ip` is inside the gateway's network.
    pub fn in_network(&self, ip: Ipv4Addr) -> bool {
        crate::policy::in_prefix(ip, self.gateway_ip, self.prefix_len)
    }
}

/// The node's IPv4 addresses, on every interface, as of now (getifaddrs(3)). A workload may not
/// reach any of them; an address the node gets later (a new DHCP lease) is not covered until
/// the VM restarts, but a private one is refused by class anyway.
pub fn node_addresses() -> Result<Vec<Ipv4Addr>, ConfigError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a live out-pointer; on success the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(ConfigError::NodeAddresses(io::Error::last_os_error()));
    }
    let mut addrs = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null entry of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cur };
        if !entry.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` is non-null and points to a sockaddr of the list.
            let family = unsafe { (*entry.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
        }
        cur = entry.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(addrs)
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
    fn node_addresses_include_loopback() {
        assert!(node_addresses().unwrap().contains(&Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn default_buffers_fit_the_budget_and_more_do_not() {
        let c = UserNetConfig::default();
        assert!(c.memory_bound() <= c.memory_budget);
        let big = UserNetConfig {
            max_flows: 256,
            tcp_buffer_size: 256 * 1024,
            ..UserNetConfig::default()
        };
        assert!(matches!(
            big.validate(),
            Err(ConfigError::OverBudget { bound, .. }) if bound > 128 << 20
        ));
    }

    #[test]
    fn network_membership() {
        let c = UserNetConfig::default();
        assert!(c.in_network(Ipv4Addr::new(10, 200, 0, 254)));
        assert!(!c.in_network(Ipv4Addr::new(10, 200, 1, 1)));
    }
}

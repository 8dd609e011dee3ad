//! The egress policy: which TCP destinations a guest may reach. Pure functions over addresses,
//! table-tested; [`crate::tcp`] asks [`refused_destination`] before every host connect.
//!
//! A workload belongs to a stranger, so by default it reaches the public internet only. In
//! order, a destination is refused when it is:
//!
//! 1. port 0, or in the gateway's own network;
//! 2. on the node's deny list ([`UserNetConfig::deny`]: the control and notary endpoints),
//!    one of the node's own addresses ([`UserNetConfig::node_addrs`]), or a cloud metadata
//!    service (169.254.169.254, 100.100.100.200, 168.63.129.16): no allow rule opens these;
//! 3. otherwise allowed when an allow rule of the node's policy matches
//!    ([`UserNetConfig::allow`]: named private destinations, `CIDR[:PORT]`);
//! 4. otherwise refused when loopback (unless [`UserNetConfig::allow_loopback`], for tests),
//!    private (RFC 1918), shared address space (CGNAT, 100.64.0.0/10), link-local, multicast,
//!    broadcast, "this network" (0.0.0.0/8) or another special-purpose range (192.0.0.0/24,
//!    the documentation and benchmarking ranges, 6to4 relay, 240.0.0.0/4).
//!
//! Only TCP leaves the gateway (DNS goes to the node's resolver, nothing else is forwarded), so
//! this is the whole egress decision. A DNS answer that names a refused address does not help:
//! the connect to it is refused here like any other.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

pub use interfaces::egress::{in_prefix, Rule, RuleError};

use crate::config::UserNetConfig;

/// Cloud metadata services, which hand out instance credentials to whoever asks from inside
/// the VM: AWS/GCP/OpenStack, Alibaba, Azure's wire server.
pub const CLOUD_METADATA: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];

/// Special-purpose ranges that are never a public destination (besides loopback, private,
/// shared, link-local, multicast and broadcast, which have classes of their own).
const RESERVED: [(Ipv4Addr, u8); 7] = [
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Why a destination is refused (the guest gets an RST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Port 0.
    Port0,
    /// The gateway or its network.
    GatewayNetwork,
    /// A rule of [`UserNetConfig::deny`] (the control or notary endpoint).
    Denied,
    /// One of the node's own addresses.
    NodeAddress,
    /// A cloud metadata service.
    CloudMetadata,
    /// 127.0.0.0/8.
    Loopback,
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// RFC 6598 shared address space (carrier-grade NAT): 100.64.0.0/10.
    SharedAddressSpace,
    /// 169.254.0.0/16.
    LinkLocal,
    /// 224.0.0.0/4.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 0.0.0.0/8.
    ThisNetwork,
    /// Another special-purpose range.
    Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Port0 => "port 0",
            Refusal::GatewayNetwork => "the gateway network",
            Refusal::Denied => "denied by the node's policy",
            Refusal::NodeAddress => "an address of the node",
            Refusal::CloudMetadata => "a cloud metadata service",
            Refusal::Loopback => "loopback",
            Refusal::Private => "a private address",
            Refusal::SharedAddressSpace => "shared address space",
            Refusal::LinkLocal => "link-local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::ThisNetwork => "this network (0.0.0.0/8)",
            Refusal::Reserved => "a reserved range",
        })
    }
}

/// Why a TCP destination is refused, or `None` when it is proxied. See the module docs.
pub fn refused_destination(remote: SocketAddrV4, cfg: &UserNetConfig) -> Option<Refusal> {
    let ip = *remote.ip();
    if remote.port() == 0 {
        return Some(Refusal::Port0);
    }
    if cfg.in_network(ip) {
        return Some(Refusal::GatewayNetwork);
    }
    if cfg.deny.iter().any(|r| r.matches(remote)) {
        return Some(Refusal::Denied);
    }
    if cfg.node_addrs.contains(&ip) {
        return Some(Refusal::NodeAddress);
    }
    if CLOUD_METADATA.contains(&ip) {
        return Some(Refusal::CloudMetadata);
    }
    if cfg.allow.iter().any(|r| r.matches(remote)) {
        return None;
    }
    address_class(ip, cfg.allow_loopback)
}

/// The class that keeps `ip` from being a public destination, if any.
fn address_class(ip: Ipv4Addr, allow_loopback: bool) -> Option<Refusal> {
    let o = ip.octets();
    if ip.is_loopback() {
        (!allow_loopback).then_some(Refusal::Loopback)
    } else if ip.is_private() {
        Some(Refusal::Private)
    } else if in_prefix(ip, Ipv4Addr::new(100, 64, 0, 0), 10) {
        Some(Refusal::SharedAddressSpace)
    } else if ip.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else if ip.is_broadcast() {
        Some(Refusal::Broadcast)
    } else if o[0] == 0 {
        Some(Refusal::ThisNetwork)
    } else if RESERVED.iter().any(|&(net, len)| in_prefix(ip, net, len)) {
        Some(Refusal::Reserved)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> UserNetConfig {
        UserNetConfig::default()
    }

    fn check(cfg: &UserNetConfig, ip: [u8; 4], port: u16) -> Option<Refusal> {
        refused_destination(SocketAddrV4::new(ip.into(), port), cfg)
    }

    #[test]
    fn one_case_per_denied_class() {
        let c = UserNetConfig {
            node_addrs: vec![Ipv4Addr::new(185, 69, 166, 7)],
            deny: vec!["185.69.166.8:443".parse().unwrap()],
            ..cfg()
        };
        let table: [([u8; 4], u16, Refusal); 22] = [
            ([93, 184, 216, 34], 0, Refusal::Port0),
            ([10, 200, 0, 1], 53, Refusal::GatewayNetwork),
            ([10, 200, 0, 77], 80, Refusal::GatewayNetwork),
            ([185, 69, 166, 8], 443, Refusal::Denied),
            ([185, 69, 166, 7], 22, Refusal::NodeAddress),
            ([169, 254, 169, 254], 80, Refusal::CloudMetadata),
            ([100, 100, 100, 200], 80, Refusal::CloudMetadata),
            ([168, 63, 129, 16], 80, Refusal::CloudMetadata),
            ([127, 0, 0, 1], 80, Refusal::Loopback),
            ([10, 0, 2, 2], 80, Refusal::Private),
            ([172, 16, 0, 1], 80, Refusal::Private),
            ([172, 31, 255, 254], 80, Refusal::Private),
            ([192, 168, 1, 1], 80, Refusal::Private),
            ([100, 64, 0, 1], 80, Refusal::SharedAddressSpace),
            ([100, 127, 255, 254], 80, Refusal::SharedAddressSpace),
            ([169, 254, 1, 1], 80, Refusal::LinkLocal),
            ([224, 0, 0, 251], 80, Refusal::Multicast),
            ([255, 255, 255, 255], 80, Refusal::Broadcast),
            ([0, 1, 2, 3], 80, Refusal::ThisNetwork),
            ([192, 0, 2, 10], 80, Refusal::Reserved),
            ([198, 18, 0, 1], 80, Refusal::Reserved),
            ([240, 0, 0, 1], 80, Refusal::Reserved),
        ];
        for (ip, port, want) in table {
            assert_eq!(check(&c, ip, port), Some(want), "{ip:?}:{port}");
        }
    }

    #[test]
    fn public_addresses_pass_including_neighbours_of_ranges() {
        let c = cfg();
        for ip in [
            [93, 184, 216, 34],
            [1, 1, 1, 1],
            [8, 8, 8, 8],
            [172, 32, 0, 1],
            [100, 128, 0, 1],
            [100, 63, 255, 255],
            [192, 169, 0, 1],
            [198, 20, 0, 1],
            [223, 255, 255, 254],
            [185, 69, 166, 8],
        ] {
            assert_eq!(check(&c, ip, 443), None, "{ip:?}");
        }
    }

    #[test]
    fn allow_rules_open_named_private_destinations_only() {
        let c = UserNetConfig {
            allow: vec![
                "10.0.2.2:7000".parse().unwrap(),
                "192.168.5.0/24".parse().unwrap(),
            ],
            node_addrs: vec![Ipv4Addr::new(192, 168, 5, 9)],
            deny: vec!["192.168.5.10".parse().unwrap()],
            ..cfg()
        };
        assert_eq!(check(&c, [10, 0, 2, 2], 7000), None);
        assert_eq!(check(&c, [10, 0, 2, 2], 7001), Some(Refusal::Private));
        assert_eq!(check(&c, [10, 0, 2, 3], 7000), Some(Refusal::Private));
        assert_eq!(check(&c, [192, 168, 5, 200], 1), None);
        // Neither the node, nor a denied endpoint, nor metadata, nor the gateway can be allowed.
        assert_eq!(check(&c, [192, 168, 5, 9], 80), Some(Refusal::NodeAddress));
        assert_eq!(check(&c, [192, 168, 5, 10], 80), Some(Refusal::Denied));
        let all = UserNetConfig {
            allow: vec!["0.0.0.0/0".parse().unwrap()],
            ..cfg()
        };
        assert_eq!(check(&all, [10, 1, 1, 1], 80), None);
        assert_eq!(
            check(&all, [169, 254, 169, 254], 80),
            Some(Refusal::CloudMetadata)
        );
        assert_eq!(
            check(&all, [10, 200, 0, 1], 80),
            Some(Refusal::GatewayNetwork)
        );
    }

    #[test]
    fn loopback_only_when_a_test_allows_it() {
        let tests = UserNetConfig {
            allow_loopback: true,
            ..cfg()
        };
        assert_eq!(check(&tests, [127, 0, 0, 1], 80), None);
        assert_eq!(check(&tests, [10, 0, 0, 1], 80), Some(Refusal::Private));
    }
}

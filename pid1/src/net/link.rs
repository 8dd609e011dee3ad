//! Link, address and route operations over rtnetlink (what `ip link/addr/route` would do).

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::{Netlink, NetlinkError};

/// What init needs to know about one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Ethernet address, if it has one.
    pub mac: Option<[u8; 6]>,
    /// The loopback interface.
    pub loopback: bool,
    /// Administratively up.
    pub up: bool,
    /// Carrier detected (IFLA_CARRIER, or IFF_LOWER_UP when the attribute is missing).
    pub carrier: bool,
}

/// Extracts a [`Link`] from a link message; `None` without a name.
pub fn parse_link(message: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut mac = None;
    let mut carrier = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::Carrier(c) => carrier = Some(*c != 0),
            _ => {}
        }
    }
    let flags = message.header.flags;
    Some(Link {
        index: message.header.index,
        name: name?,
        mac,
        loopback: flags.contains(LinkFlags::Loopback),
        up: flags.contains(LinkFlags::Up),
        carrier: carrier.unwrap_or(flags.contains(LinkFlags::LowerUp)),
    })
}

/// Every interface, in kernel index order.
pub fn list_links(netlink: &mut Netlink) -> Result<Vec<Link>, NetlinkError> {
    let replies = netlink.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    let mut links: Vec<Link> = replies
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => parse_link(link),
            _ => None,
        })
        .collect();
    links.sort_by_key(|l| l.index);
    Ok(links)
}

/// Sets IFF_UP on an interface.
pub fn set_up(netlink: &mut Netlink, index: u32) -> Result<(), NetlinkError> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    netlink.execute(RouteNetlinkMessage::SetLink(message), 0)
}

/// Adds (or replaces) an IPv4 address with its prefix and broadcast address.
pub fn add_address(
    netlink: &mut Netlink,
    index: u32,
    address: Ipv4Addr,
    prefix_len: u8,
    broadcast: Ipv4Addr,
) -> Result<(), NetlinkError> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix_len;
    message.header.scope = AddressScope::Universe;
    message.header.index = index;
    message.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(address)),
        AddressAttribute::Address(IpAddr::V4(address)),
        AddressAttribute::Broadcast(broadcast),
    ];
    netlink.execute(
        RouteNetlinkMessage::NewAddress(message),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Removes an IPv4 address (the routes through it go with it).
pub fn remove_address(
    netlink: &mut Netlink,
    index: u32,
    address: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), NetlinkError> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix_len;
    message.header.index = index;
    message.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(address)),
        AddressAttribute::Address(IpAddr::V4(address)),
    ];
    netlink.execute(RouteNetlinkMessage::DelAddress(message), 0)
}

/// Adds (or replaces) the IPv4 default route via `gateway` on interface `index`.
pub fn add_default_route(
    netlink: &mut Netlink,
    index: u32,
    gateway: Ipv4Addr,
) -> Result<(), NetlinkError> {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = 0;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Dhcp;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
        RouteAttribute::Oif(index),
    ];
    netlink.execute(
        RouteNetlinkMessage::NewRoute(message),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: Option<&str>, flags: LinkFlags, carrier: Option<u8>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = 2;
        m.header.flags = flags;
        if let Some(name) = name {
            m.attributes.push(LinkAttribute::IfName(name.into()));
        }
        m.attributes.push(LinkAttribute::Address(vec![
            0x52, 0x54, 0, 0x12, 0x34, 0x56,
        ]));
        if let Some(c) = carrier {
            m.attributes.push(LinkAttribute::Carrier(c));
        }
        m
    }

    #[test]
    fn parses_name_mac_flags_and_carrier() {
        let link = parse_link(&message(Some("eth0"), LinkFlags::Up, Some(1))).unwrap();
        assert_eq!(link.name, "eth0");
        assert_eq!(link.index, 2);
        assert_eq!(link.mac, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(link.up && link.carrier && !link.loopback);
        let down = parse_link(&message(Some("eth0"), LinkFlags::empty(), Some(0))).unwrap();
        assert!(!down.up && !down.carrier);
    }

    #[test]
    fn carrier_falls_back_to_lower_up_and_names_are_required() {
        let l = parse_link(&message(
            Some("lo"),
            LinkFlags::Loopback | LinkFlags::LowerUp,
            None,
        ));
        let l = l.unwrap();
        assert!(l.loopback && l.carrier);
        assert_eq!(parse_link(&message(None, LinkFlags::Up, Some(1))), None);
    }
}

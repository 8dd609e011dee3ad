//! Frames a guest on a static link sends (Ethernet, ARP, a bare TCP segment through its
//! gateway) and parsers for what it receives, with smoltcp's wire types.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

/// The guest's side of a static link: its own addresses and its gateway's MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The guest's MAC.
    pub guest_mac: EthernetAddress,
    /// The guest's IPv4 address.
    pub guest_ip: Ipv4Addr,
    /// The gateway's MAC, where IP frames go.
    pub gateway_mac: EthernetAddress,
}

impl Link {
    /// An Ethernet frame from the guest to `dst` with a zeroed payload of `payload_len` bytes.
    pub fn ethernet(
        &self,
        dst: EthernetAddress,
        ethertype: EthernetProtocol,
        payload_len: usize,
    ) -> Vec<u8> {
        let eth = EthernetRepr {
            src_addr: self.guest_mac,
            dst_addr: dst,
            ethertype,
        };
        let mut buf = vec![0; eth.buffer_len() + payload_len];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        buf
    }

    /// An ARP request (broadcast) or reply (to `target_mac`) from the guest.
    pub fn arp(
        &self,
        operation: ArpOperation,
        target_mac: EthernetAddress,
        target: Ipv4Addr,
    ) -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: self.guest_mac,
            source_protocol_addr: self.guest_ip,
            target_hardware_addr: target_mac,
            target_protocol_addr: target,
        };
        let dst = match operation {
            ArpOperation::Request => EthernetAddress::BROADCAST,
            _ => target_mac,
        };
        let mut buf = self.ethernet(dst, EthernetProtocol::Arp, arp.buffer_len());
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        buf
    }

    /// The guest's reply to an ARP request for its address, if `frame` is one.
    pub fn answer_arp(&self, frame: &[u8]) -> Option<Vec<u8>> {
        match parse_arp(frame)?.2 {
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } if target_protocol_addr == self.guest_ip => Some(self.arp(
                ArpOperation::Reply,
                source_hardware_addr,
                source_protocol_addr,
            )),
            _ => None,
        }
    }

    /// One TCP segment without payload from the guest to `dst` through the gateway.
    pub fn tcp_segment(
        &self,
        src_port: u16,
        dst: SocketAddrV4,
        control: TcpControl,
        seq: i32,
    ) -> Vec<u8> {
        let caps = ChecksumCapabilities::default();
        let tcp = TcpRepr {
            src_port,
            dst_port: dst.port(),
            control,
            seq_number: TcpSeqNumber(seq),
            ack_number: None,
            window_len: 64240,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: self.guest_ip,
            dst_addr: *dst.ip(),
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = self.ethernet(
            self.gateway_mac,
            EthernetProtocol::Ipv4,
            ip.buffer_len() + tcp.buffer_len(),
        );
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(packet.payload_mut()),
            &IpAddress::Ipv4(self.guest_ip),
            &IpAddress::Ipv4(*dst.ip()),
            &caps,
        );
        buf
    }
}

/// An ARP frame's Ethernet source and destination and its body, if `frame` is ARP.
pub fn parse_arp(frame: &[u8]) -> Option<(EthernetAddress, EthernetAddress, ArpRepr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    Some((eth.src_addr(), eth.dst_addr(), arp))
}

/// A TCP segment over IPv4, with checksums verified.
#[derive(Debug, PartialEq, Eq)]
pub struct Segment {
    /// Ethernet source.
    pub eth_src: EthernetAddress,
    /// Ethernet destination.
    pub eth_dst: EthernetAddress,
    /// IP source and TCP source port.
    pub src: SocketAddrV4,
    /// IP destination and TCP destination port.
    pub dst: SocketAddrV4,
    /// SYN, FIN, RST, PSH or none.
    pub control: TcpControl,
    /// Sequence number.
    pub seq: TcpSeqNumber,
    /// Acknowledgement number, if ACK is set.
    pub ack: Option<TcpSeqNumber>,
}

/// The TCP segment in `frame`, if it is one with valid checksums.
pub fn parse_tcp(frame: &[u8]) -> Option<Segment> {
    let caps = ChecksumCapabilities::default();
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet, &caps).ok()?;
    if ip.next_header != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpRepr::parse(
        &TcpPacket::new_checked(packet.payload()).ok()?,
        &IpAddress::Ipv4(ip.src_addr),
        &IpAddress::Ipv4(ip.dst_addr),
        &caps,
    )
    .ok()?;
    Some(Segment {
        eth_src: eth.src_addr(),
        eth_dst: eth.dst_addr(),
        src: SocketAddrV4::new(ip.src_addr, tcp.src_port),
        dst: SocketAddrV4::new(ip.dst_addr, tcp.dst_port),
        control: tcp.control,
        seq: tcp.seq_number,
        ack: tcp.ack_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: Link = Link {
        guest_mac: EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        guest_ip: Ipv4Addr::new(10, 200, 0, 2),
        gateway_mac: EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x01]),
    };
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

    #[test]
    fn arp_requests_for_the_guest_are_answered_and_no_others() {
        let request = LINK.arp(ArpOperation::Request, EthernetAddress([0; 6]), GATEWAY);
        let (src, dst, body) = parse_arp(&request).expect("ARP");
        assert_eq!((src, dst), (LINK.guest_mac, EthernetAddress::BROADCAST));
        assert_eq!(LINK.answer_arp(&request), None, "a request for the gateway");
        // The same request seen from the gateway's side, asking for the guest.
        let gateway = Link {
            guest_mac: LINK.gateway_mac,
            guest_ip: GATEWAY,
            gateway_mac: LINK.guest_mac,
        };
        let asking = gateway.arp(
            ArpOperation::Request,
            EthernetAddress([0; 6]),
            LINK.guest_ip,
        );
        let reply = LINK.answer_arp(&asking).expect("a reply");
        assert_eq!(
            parse_arp(&reply),
            Some((
                LINK.guest_mac,
                LINK.gateway_mac,
                ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: LINK.guest_mac,
                    source_protocol_addr: LINK.guest_ip,
                    target_hardware_addr: LINK.gateway_mac,
                    target_protocol_addr: GATEWAY,
                }
            ))
        );
        assert!(matches!(body, ArpRepr::EthernetIpv4 { .. }));
        assert_eq!(parse_tcp(&request), None);
    }

    #[test]
    fn a_tcp_segment_parses_back_with_its_checksums() {
        let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080);
        let syn = LINK.tcp_segment(40000, server, TcpControl::Syn, 7);
        assert_eq!(
            parse_tcp(&syn),
            Some(Segment {
                eth_src: LINK.guest_mac,
                eth_dst: LINK.gateway_mac,
                src: SocketAddrV4::new(LINK.guest_ip, 40000),
                dst: server,
                control: TcpControl::Syn,
                seq: TcpSeqNumber(7),
                ack: None,
            })
        );
        let mut corrupt = syn.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert_eq!(parse_tcp(&corrupt), None, "a bad checksum");
        assert_eq!(parse_arp(&syn), None);
    }
}

//! What to do with a frame the guest sent, decided from its headers alone (no I/O).
//!
//! smoltcp with `any_ip` would accept anything addressed anywhere, answer ARP for every
//! address and echo pings to the whole internet. This filter narrows it to what the guest
//! network offers: ARP for the gateway, ICMP to the gateway, TCP anywhere (then refused or
//! proxied), UDP to the gateway's DNS port. Everything else is dropped here.

use std::net::SocketAddrV4;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol,
    Ipv4Packet, TcpPacket, UdpPacket,
};

use crate::config::UserNetConfig;

/// The DNS port on the gateway.
pub(crate) const DNS_PORT: u16 = 53;

/// A TCP connection as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    /// The guest's end.
    pub guest: SocketAddrV4,
    /// The address the guest connects to (and the host socket connects to).
    pub remote: SocketAddrV4,
}

/// The decision for one guest frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand the frame to smoltcp as it is.
    Ingest,
    /// A TCP segment; `syn` is a connection request (SYN without ACK), `rst` a reset.
    Tcp { key: FlowKey, syn: bool, rst: bool },
    /// Not part of the guest network; the reason is logged at debug level.
    Drop(&'static str),
}

/// Classifies one Ethernet frame from the guest. Never panics on any input.
pub(crate) fn classify(frame: &[u8], cfg: &UserNetConfig) -> Verdict {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Verdict::Drop("short ethernet frame");
    };
    let dst = eth.dst_addr();
    if dst != EthernetAddress(cfg.gateway_mac) && !dst.is_broadcast() {
        return Verdict::Drop("ethernet destination is not the gateway");
    }
    match eth.ethertype() {
        EthernetProtocol::Arp => classify_arp(eth.payload(), cfg),
        EthernetProtocol::Ipv4 => classify_ipv4(eth.payload(), cfg),
        _ => Verdict::Drop("neither ipv4 nor arp"),
    }
}

fn classify_arp(payload: &[u8], cfg: &UserNetConfig) -> Verdict {
    let Ok(packet) = ArpPacket::new_checked(payload) else {
        return Verdict::Drop("short arp packet");
    };
    match ArpRepr::parse(&packet) {
        Ok(ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request | ArpOperation::Reply,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) if target_protocol_addr == cfg.gateway_ip && source_protocol_addr == cfg.guest_ip => {
            Verdict::Ingest
        }
        _ => Verdict::Drop("arp not between the guest and the gateway"),
    }
}

fn classify_ipv4(payload: &[u8], cfg: &UserNetConfig) -> Verdict {
    let Ok(ip) = Ipv4Packet::new_checked(payload) else {
        return Verdict::Drop("malformed ipv4 header");
    };
    let src = ip.src_addr();
    let dst = ip.dst_addr();
    if src != cfg.guest_ip {
        return Verdict::Drop("ipv4 source is not the guest");
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Verdict::Drop("ipv4 fragment");
    }
    match ip.next_header() {
        IpProtocol::Tcp => {
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                return Verdict::Drop("malformed tcp header");
            };
            Verdict::Tcp {
                key: FlowKey {
                    guest: SocketAddrV4::new(src, tcp.src_port()),
                    remote: SocketAddrV4::new(dst, tcp.dst_port()),
                },
                syn: tcp.syn() && !tcp.ack() && !tcp.rst(),
                rst: tcp.rst(),
            }
        }
        IpProtocol::Udp => {
            let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
                return Verdict::Drop("malformed udp header");
            };
            if dst == cfg.gateway_ip && udp.dst_port() == DNS_PORT {
                Verdict::Ingest
            } else {
                Verdict::Drop("udp other than dns to the gateway")
            }
        }
        IpProtocol::Icmp if dst == cfg.gateway_ip => Verdict::Ingest,
        IpProtocol::Icmp => Verdict::Drop("icmp beyond the gateway"),
        _ => Verdict::Drop("ip protocol other than tcp, udp, icmp"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetRepr, IpAddress, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber, UdpRepr,
    };
    use std::net::Ipv4Addr;

    const GUEST_MAC: EthernetAddress = EthernetAddress(crate::config::GUEST_MAC);

    fn cfg() -> UserNetConfig {
        UserNetConfig::default()
    }

    fn eth(dst: [u8; 6], ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
        let repr = EthernetRepr {
            src_addr: GUEST_MAC,
            dst_addr: EthernetAddress(dst),
            ethertype,
        };
        let mut buf = vec![0; repr.buffer_len() + payload.len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        repr.emit(&mut frame);
        frame.payload_mut().copy_from_slice(payload);
        buf
    }

    fn arp(target: Ipv4Addr, source: Ipv4Addr) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: GUEST_MAC,
            source_protocol_addr: source,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf));
        eth([0xff; 6], EthernetProtocol::Arp, &buf)
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: protocol,
            payload_len: payload.len(),
            hop_limit: 64,
        };
        let mut buf = vec![0; repr.buffer_len() + payload.len()];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf);
        repr.emit(&mut packet, &ChecksumCapabilities::default());
        packet.payload_mut().copy_from_slice(payload);
        eth(crate::config::GATEWAY_MAC, EthernetProtocol::Ipv4, &buf)
    }

    fn tcp(dst: Ipv4Addr, port: u16, control: TcpControl, ack: bool) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: port,
            control,
            seq_number: TcpSeqNumber(1),
            ack_number: ack.then_some(TcpSeqNumber(7)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf),
            &IpAddress::Ipv4(GUEST_IP_),
            &IpAddress::Ipv4(dst),
            &ChecksumCapabilities::default(),
        );
        ipv4(GUEST_IP_, dst, IpProtocol::Tcp, &buf)
    }

    fn udp(dst: Ipv4Addr, port: u16) -> Vec<u8> {
        let repr = UdpRepr {
            src_port: 5000,
            dst_port: port,
        };
        let payload = b"q";
        let mut buf = vec![0; repr.header_len() + payload.len()];
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut buf),
            &IpAddress::Ipv4(GUEST_IP_),
            &IpAddress::Ipv4(dst),
            payload.len(),
            |p| p.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
        ipv4(GUEST_IP_, dst, IpProtocol::Udp, &buf)
    }

    const GUEST_IP_: Ipv4Addr = crate::config::GUEST_IP;
    const GW: Ipv4Addr = crate::config::GATEWAY_IP;
    const FAR: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    #[test]
    fn arp_only_for_the_gateway_from_the_guest() {
        assert_eq!(classify(&arp(GW, GUEST_IP_), &cfg()), Verdict::Ingest);
        assert!(matches!(
            classify(&arp(Ipv4Addr::new(10, 200, 0, 9), GUEST_IP_), &cfg()),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            classify(&arp(GW, Ipv4Addr::new(10, 200, 0, 3)), &cfg()),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn tcp_syn_is_recognised_with_its_flow() {
        let v = classify(&tcp(FAR, 443, TcpControl::Syn, false), &cfg());
        assert_eq!(
            v,
            Verdict::Tcp {
                key: FlowKey {
                    guest: SocketAddrV4::new(GUEST_IP_, 40000),
                    remote: SocketAddrV4::new(FAR, 443),
                },
                syn: true,
                rst: false,
            }
        );
        // A SYN-ACK is not a connection request.
        assert!(matches!(
            classify(&tcp(FAR, 443, TcpControl::Syn, true), &cfg()),
            Verdict::Tcp { syn: false, .. }
        ));
        assert!(matches!(
            classify(&tcp(FAR, 443, TcpControl::Rst, false), &cfg()),
            Verdict::Tcp {
                syn: false,
                rst: true,
                ..
            }
        ));
    }

    #[test]
    fn udp_only_dns_to_the_gateway() {
        assert_eq!(classify(&udp(GW, 53), &cfg()), Verdict::Ingest);
        assert!(matches!(classify(&udp(GW, 123), &cfg()), Verdict::Drop(_)));
        assert!(matches!(classify(&udp(FAR, 53), &cfg()), Verdict::Drop(_)));
    }

    #[test]
    fn spoofed_source_and_foreign_mac_and_garbage_are_dropped() {
        let mut frame = tcp(FAR, 80, TcpControl::Syn, false);
        // Rewrite the IPv4 source address (offset 14 + 12).
        frame[26..30].copy_from_slice(&[10, 200, 0, 3]);
        assert!(matches!(classify(&frame, &cfg()), Verdict::Drop(_)));
        let mut frame = tcp(FAR, 80, TcpControl::Syn, false);
        frame[0..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 9]);
        assert!(matches!(classify(&frame, &cfg()), Verdict::Drop(_)));
        for len in 0..frame.len() {
            let _ = classify(&frame[..len], &cfg());
        }
        assert!(matches!(classify(&[0u8; 3], &cfg()), Verdict::Drop(_)));
    }
}

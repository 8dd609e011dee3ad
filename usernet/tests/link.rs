//! ARP, DNS forwarding and the frame filter.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::thread;
use std::time::Duration;

use common::{test_config, Net};
use smoltcp::socket::udp;
use smoltcp::storage::PacketMetadata;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpEndpoint,
};
use usernet::{config, UserNet, UserNetConfig};

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(config::GUEST_MAC),
        source_protocol_addr: config::GUEST_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(config::GUEST_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

#[test]
fn arp_for_the_gateway_is_answered_and_only_that() {
    let mut net = UserNet::new(UserNetConfig::default()).unwrap();
    net.guest_frame(&arp_request(config::GATEWAY_IP));
    net.poll();
    let reply = net.take_guest_frame().expect("an ARP reply");
    assert!(!net.has_guest_frames());
    let frame = EthernetFrame::new_checked(&reply[..]).unwrap();
    assert_eq!(frame.dst_addr(), EthernetAddress(config::GUEST_MAC));
    assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
    let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(config::GATEWAY_MAC),
            source_protocol_addr: config::GATEWAY_IP,
            target_hardware_addr: EthernetAddress(config::GUEST_MAC),
            target_protocol_addr: config::GUEST_IP,
        }
    );

    // any_ip must not make the gateway claim every address.
    net.guest_frame(&arp_request(Ipv4Addr::new(10, 200, 0, 9)));
    net.guest_frame(&arp_request(Ipv4Addr::new(8, 8, 8, 8)));
    net.poll();
    assert!(net.take_guest_frame().is_none());
    assert_eq!(net.stats().dropped_from_guest, 2);
}

fn udp_socket(net: &mut Net, port: u16) -> smoltcp::iface::SocketHandle {
    let mut sock = udp::Socket::new(
        udp::PacketBuffer::new(vec![PacketMetadata::EMPTY; 8], vec![0; 8192]),
        udp::PacketBuffer::new(vec![PacketMetadata::EMPTY; 8], vec![0; 8192]),
    );
    sock.bind(port).unwrap();
    net.sockets.add(sock)
}

#[test]
fn dns_is_forwarded_to_the_resolver_and_answered() {
    let resolver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let resolver_addr = resolver.local_addr().unwrap();
    let fake = thread::spawn(move || {
        let mut buf = [0; 512];
        let (n, from) = resolver.recv_from(&mut buf).unwrap();
        let mut answer = b"answer:".to_vec();
        answer.extend_from_slice(&buf[..n]);
        resolver.send_to(&answer, from).unwrap();
        buf[..n].to_vec()
    });

    let mut net = Net::new(UserNetConfig {
        dns_server: Some(resolver_addr),
        ..test_config()
    });
    let h = udp_socket(&mut net, 5353);
    let gateway_dns = IpEndpoint::new(IpAddress::Ipv4(config::GATEWAY_IP), 53);
    net.udp(h)
        .send_slice(b"\x12\x34query", gateway_dns)
        .unwrap();
    let mut answer = None;
    net.run_until(10, "dns answer", |n| {
        if let Ok((data, meta)) = n.udp(h).recv() {
            answer = Some((data.to_vec(), meta.endpoint));
        }
        answer.is_some()
    });
    assert_eq!(fake.join().unwrap(), b"\x12\x34query");
    let (data, from) = answer.unwrap();
    assert_eq!(data, b"answer:\x12\x34query");
    assert_eq!(from, gateway_dns);
    net.run_until(5, "query done", |n| n.net.stats().dns_queries == 0);
}

#[test]
fn dns_queries_are_bounded_and_time_out() {
    // A resolver that never answers.
    let resolver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut net = Net::new(UserNetConfig {
        dns_server: Some(resolver.local_addr().unwrap()),
        max_dns_queries: 3,
        dns_timeout: Duration::from_millis(300),
        ..test_config()
    });
    let h = udp_socket(&mut net, 5353);
    let gateway_dns = IpEndpoint::new(IpAddress::Ipv4(config::GATEWAY_IP), 53);
    for i in 0..5u8 {
        net.udp(h).send_slice(&[i; 20], gateway_dns).unwrap();
    }
    net.run_until(5, "queries sent", |n| {
        n.wire.tx.is_empty() && n.net.stats().dns_queries > 0
    });
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.net.stats().dns_queries, 3);
    resolver.set_nonblocking(true).unwrap();
    let mut seen = 0;
    while resolver.recv(&mut [0; 64]).is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 3, "only the first three reached the resolver");
    net.run_until(5, "timed out", |n| n.net.stats().dns_queries == 0);
}

#[test]
fn other_udp_is_dropped() {
    let mut net = Net::new(test_config());
    let h = udp_socket(&mut net, 5353);
    // The guest must learn the gateway's MAC first; DNS without a resolver is dropped quietly.
    net.udp(h)
        .send_slice(b"ntp", (IpAddress::Ipv4(config::GATEWAY_IP), 123))
        .unwrap();
    net.udp(h)
        .send_slice(b"far", (IpAddress::Ipv4(Ipv4Addr::new(192, 0, 2, 1)), 53))
        .unwrap();
    net.run_until(5, "sent", |n| n.net.stats().dropped_from_guest == 2);
    net.run_for(Duration::from_millis(50));
    assert!(net.udp(h).recv().is_err(), "no answer, not even ICMP");
}

//! State machine tests with canned server replies built by `dhcproto`.

use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const XID: u32 = 0x1234_5678;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

fn client() -> Client {
    Client::new(MAC, XID, 0, Timing::default())
}

/// A server reply as QEMU's user-mode network sends it.
fn reply(
    kind: MessageType,
    xid: u32,
    mac: &[u8],
    yiaddr: Ipv4Addr,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let unspec = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, unspec, yiaddr, SERVER, unspec, mac);
    m.set_opcode(Opcode::BootReply);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    if let Some(server) = server {
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    opts.insert(DhcpOption::Router(vec![SERVER]));
    opts.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
        10, 0, 2, 3,
    )]));
    opts.insert(DhcpOption::AddressLeaseTime(86_400));
    m.to_vec().unwrap()
}

fn offer() -> Vec<u8> {
    reply(MessageType::Offer, XID, &MAC, OFFERED, Some(SERVER))
}

fn ack() -> Vec<u8> {
    reply(MessageType::Ack, XID, &MAC, OFFERED, Some(SERVER))
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).unwrap()
}

#[test]
fn first_discover_is_due_at_once_and_well_formed() {
    let mut c = client();
    let bytes = c.poll_transmit(0).expect("discover due at start");
    let m = decode(&bytes);
    assert_eq!(m.opcode(), Opcode::BootRequest);
    assert_eq!(m.xid(), XID);
    assert_eq!(&m.chaddr()[..6], &MAC);
    assert!(
        m.flags().broadcast(),
        "no address yet: replies must be broadcast"
    );
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    match m.opts().get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(list)) => {
            assert!(list.contains(&OptionCode::Router));
            assert!(list.contains(&OptionCode::DomainNameServer));
        }
        other => panic!("no parameter request list: {other:?}"),
    }
    assert_eq!(
        c.poll_transmit(10),
        None,
        "nothing more until the retransmit time"
    );
}

#[test]
fn full_exchange_binds_with_every_option() {
    let mut c = client();
    c.poll_transmit(0).unwrap();
    assert_eq!(c.handle(&offer(), 50), Ok(Handled::Offered(OFFERED)));
    let request = decode(
        &c.poll_transmit(50)
            .expect("request due right after the offer"),
    );
    assert_eq!(request.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(request.xid(), XID);
    assert!(request.flags().broadcast());
    assert_eq!(
        request.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        request.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    let Ok(Handled::Bound(lease)) = c.handle(&ack(), 90) else {
        panic!("ack must bind");
    };
    assert_eq!(lease.address, OFFERED);
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.router, Some(SERVER));
    assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
    assert_eq!(lease.lease_secs, Some(86_400));
    assert_eq!(lease.server, SERVER);
    assert_eq!(lease.acquired_ms, 90);
    assert_eq!(lease.broadcast(), Ipv4Addr::new(10, 0, 2, 255));
    assert!(c.is_finished());
    assert_eq!(c.lease(), Some(&lease));
    assert_eq!(c.next_wakeup_ms(), None);
    assert_eq!(c.poll_transmit(100_000), None, "bound clients stay quiet");
    assert_eq!(c.handle(&ack(), 100), Err(Ignored::Finished));
}

#[test]
fn foreign_and_broken_packets_are_ignored() {
    let mut c = client();
    c.poll_transmit(0).unwrap();
    let other_mac = [2, 0, 0, 0, 0, 1];
    assert_eq!(
        c.handle(
            &reply(MessageType::Offer, XID + 1, &MAC, OFFERED, Some(SERVER)),
            1
        ),
        Err(Ignored::WrongXid)
    );
    assert_eq!(
        c.handle(
            &reply(MessageType::Offer, XID, &other_mac, OFFERED, Some(SERVER)),
            1
        ),
        Err(Ignored::WrongChaddr)
    );
    assert_eq!(c.handle(&[1, 2, 3], 1), Err(Ignored::Malformed));
    // Our own broadcast DISCOVER looped back is a request, not a reply.
    let mut other = client();
    assert_eq!(
        c.handle(&other.poll_transmit(0).unwrap(), 1),
        Err(Ignored::NotAReply)
    );
    // An ACK while selecting, an offer without a server id or without an address.
    assert_eq!(c.handle(&ack(), 1), Err(Ignored::Unexpected));
    assert_eq!(
        c.handle(&reply(MessageType::Offer, XID, &MAC, OFFERED, None), 1),
        Err(Ignored::Incomplete)
    );
    assert_eq!(
        c.handle(
            &reply(
                MessageType::Offer,
                XID,
                &MAC,
                Ipv4Addr::UNSPECIFIED,
                Some(SERVER)
            ),
            1
        ),
        Err(Ignored::Incomplete)
    );
    assert!(!c.is_finished());
    // Still selecting: the real offer is taken.
    assert_eq!(c.handle(&offer(), 2), Ok(Handled::Offered(OFFERED)));
    // An ACK from a different server is not ours to take.
    let stranger = reply(
        MessageType::Ack,
        XID,
        &MAC,
        OFFERED,
        Some(Ipv4Addr::new(10, 0, 2, 9)),
    );
    assert_eq!(c.handle(&stranger, 3), Err(Ignored::Unexpected));
    assert!(c.lease().is_none());
}

#[test]
fn discover_backs_off_then_times_out() {
    let mut c = client();
    let mut sent_at = Vec::new();
    for now in (0..=25_000).step_by(100) {
        if c.poll_transmit(now).is_some() {
            sent_at.push(now);
        }
    }
    assert_eq!(sent_at, [0, 1_000, 3_000, 7_000, 15_000]);
    assert_eq!(c.failure(), Some(&DhcpError::TimedOut(20_000)));
    assert_eq!(c.next_wakeup_ms(), None);
}

#[test]
fn next_wakeup_is_the_retransmit_or_the_deadline() {
    let mut c = client();
    assert_eq!(c.next_wakeup_ms(), Some(0));
    c.poll_transmit(0).unwrap();
    assert_eq!(c.next_wakeup_ms(), Some(1_000));
    let mut late = Client::new(
        MAC,
        XID,
        0,
        Timing {
            total_ms: 500,
            ..Timing::default()
        },
    );
    late.poll_transmit(0).unwrap();
    assert_eq!(late.next_wakeup_ms(), Some(500));
}

#[test]
fn unanswered_requests_fall_back_to_discover() {
    let mut c = client();
    c.poll_transmit(0).unwrap();
    c.handle(&offer(), 10).unwrap();
    let kinds: Vec<_> = [10, 1_010, 3_010, 7_010]
        .iter()
        .map(|&t| decode(&c.poll_transmit(t).unwrap()).opts().msg_type())
        .collect();
    assert_eq!(
        kinds,
        [
            Some(MessageType::Request),
            Some(MessageType::Request),
            Some(MessageType::Request),
            Some(MessageType::Discover)
        ]
    );
}

#[test]
fn nak_restarts_after_a_pause() {
    let mut c = client();
    c.poll_transmit(0).unwrap();
    c.handle(&offer(), 10).unwrap();
    c.poll_transmit(10).unwrap();
    let nak = reply(
        MessageType::Nak,
        XID,
        &MAC,
        Ipv4Addr::UNSPECIFIED,
        Some(SERVER),
    );
    assert_eq!(c.handle(&nak, 20), Ok(Handled::Nak));
    assert_eq!(c.poll_transmit(500), None);
    let m = decode(&c.poll_transmit(1_020).unwrap());
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
}

#[test]
fn masks_and_defaults() {
    assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
    assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 240, 0)), Some(20));
    assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
    assert_eq!(mask_to_prefix(Ipv4Addr::UNSPECIFIED), Some(0));
    assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    assert_eq!(classful_prefix(Ipv4Addr::new(10, 1, 2, 3)), 8);
    assert_eq!(classful_prefix(Ipv4Addr::new(172, 16, 0, 1)), 16);
    assert_eq!(classful_prefix(Ipv4Addr::new(192, 168, 1, 1)), 24);
    let lease = Lease {
        address: Ipv4Addr::new(192, 168, 7, 9),
        prefix_len: 0,
        router: None,
        dns: vec![],
        domain: None,
        server: SERVER,
        lease_secs: None,
        renewal_secs: None,
        rebinding_secs: None,
        acquired_ms: 0,
    };
    assert_eq!(lease.broadcast(), Ipv4Addr::BROADCAST);
    assert_eq!(
        Lease {
            prefix_len: 32,
            ..lease
        }
        .broadcast(),
        Ipv4Addr::new(192, 168, 7, 9)
    );
}

#[test]
fn domain_names_are_filtered_for_resolv_conf() {
    assert!(is_plain_word("example.org"));
    assert!(!is_plain_word("evil\nnameserver 6.6.6.6"));
    assert!(!is_plain_word(""));
}

//! The lease keeper's timers and states, driven with a fake clock and canned server replies.

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const XID: u32 = 0x1000;
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 50);
/// The lease starts at 5 s on the caller's clock.
const START: u64 = 5_000;

fn lease(secs: Option<u32>, t1: Option<u32>, t2: Option<u32>) -> Lease {
    Lease {
        address: ADDRESS,
        prefix_len: 24,
        router: Some(SERVER),
        dns: vec![SERVER],
        domain: None,
        server: SERVER,
        lease_secs: secs,
        renewal_secs: t1,
        rebinding_secs: t2,
        acquired_ms: START,
    }
}

/// A 120 s lease (dnsmasq's shortest): T1 at 60 s, T2 at 105 s, expiry at 120 s.
fn keeper() -> Keeper {
    Keeper::new(
        MAC,
        XID,
        lease(Some(120), None, None),
        RenewTiming::default(),
    )
}

fn reply(kind: MessageType, xid: u32, yiaddr: Ipv4Addr, server: Ipv4Addr, secs: u32) -> Vec<u8> {
    let unspec = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, unspec, yiaddr, server, unspec, &MAC);
    m.set_opcode(Opcode::BootReply);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server));
    opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    opts.insert(DhcpOption::AddressLeaseTime(secs));
    m.to_vec().unwrap()
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).unwrap()
}

#[test]
fn times_default_to_half_and_seven_eighths_of_the_lease() {
    let t = LeaseTimes::of(&lease(Some(120), None, None)).unwrap();
    assert_eq!(
        t,
        LeaseTimes {
            renew_ms: START + 60_000,
            rebind_ms: START + 105_000,
            expiry_ms: START + 120_000,
        }
    );
}

#[test]
fn times_take_the_servers_t1_and_t2_only_when_consistent() {
    let t = LeaseTimes::of(&lease(Some(100), Some(30), Some(80))).unwrap();
    assert_eq!((t.renew_ms, t.rebind_ms), (START + 30_000, START + 80_000));
    // T1 after T2, T2 after the lease's end: the defaults instead.
    for (t1, t2) in [
        (Some(90), Some(80)),
        (Some(10), Some(100)),
        (Some(100), None),
    ] {
        let t = LeaseTimes::of(&lease(Some(100), t1, t2)).unwrap();
        assert_eq!(
            (t.renew_ms, t.rebind_ms),
            (START + 50_000, START + 87_500),
            "{t1:?} {t2:?}"
        );
    }
    // One of the two given and sound: kept, the other defaulted.
    let t = LeaseTimes::of(&lease(Some(100), Some(20), None)).unwrap();
    assert_eq!((t.renew_ms, t.rebind_ms), (START + 20_000, START + 87_500));
    let t = LeaseTimes::of(&lease(Some(100), None, Some(70))).unwrap();
    assert_eq!((t.renew_ms, t.rebind_ms), (START + 50_000, START + 70_000));
}

#[test]
fn infinite_or_missing_lease_times_are_never_renewed() {
    for secs in [None, Some(u32::MAX)] {
        let mut k = Keeper::new(MAC, XID, lease(secs, None, None), RenewTiming::default());
        assert_eq!(k.times(), None);
        assert_eq!(k.next_wakeup_ms(), None);
        assert_eq!(k.poll(u64::MAX / 2), Poll::default());
        assert_eq!(k.state(), KeepState::Bound);
    }
}

#[test]
fn nothing_happens_before_t1() {
    let mut k = keeper();
    assert_eq!(k.next_wakeup_ms(), Some(START + 60_000));
    assert_eq!(k.poll(START + 59_999), Poll::default());
    assert_eq!(k.state(), KeepState::Bound);
    assert!(!k.is_asking());
}

#[test]
fn at_t1_a_request_for_our_address_goes_to_the_granting_server() {
    let mut k = keeper();
    let p = k.poll(START + 60_000);
    assert_eq!(p.change, Some(Change::Renewing));
    let t = p.transmit.expect("a REQUEST at T1");
    assert_eq!(t.to, Destination::Server(SERVER));
    let m = decode(&t.packet);
    assert_eq!(m.opcode(), Opcode::BootRequest);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(m.ciaddr(), ADDRESS, "RENEWING fills ciaddr");
    assert!(
        !m.flags().broadcast(),
        "we have an address: unicast replies"
    );
    assert_eq!(m.xid(), k.xid());
    assert_ne!(k.xid(), XID, "a new transaction per renewal");
    // RFC 2131 table 5: no requested address nor server identifier while renewing.
    assert!(m.opts().get(OptionCode::RequestedIpAddress).is_none());
    assert!(m.opts().get(OptionCode::ServerIdentifier).is_none());
    assert!(k.is_asking());
}

#[test]
fn renewing_retransmits_at_half_the_time_left_but_not_below_the_floor_nor_past_t2() {
    let timing = RenewTiming {
        min_retransmit_ms: 10_000,
    };
    // 1000 s: T1 500 s, T2 875 s. Half of 375 s is 187.5 s.
    let mut k = Keeper::new(MAC, XID, lease(Some(1000), None, None), timing);
    let t1 = START + 500_000;
    assert!(k.poll(t1).transmit.is_some());
    assert_eq!(k.next_wakeup_ms(), Some(t1 + 187_500));
    assert_eq!(k.poll(t1 + 187_499), Poll::default());
    let again = k.poll(t1 + 187_500);
    assert_eq!(again.change, None, "a retransmission is no state change");
    assert!(again.transmit.is_some());
    // Close to T2 the floor applies, but T2 itself comes first.
    let late = START + 870_000;
    assert!(k.poll(late).transmit.is_some());
    assert_eq!(k.next_wakeup_ms(), Some(START + 875_000));
}

#[test]
fn no_answer_by_t2_rebinds_by_broadcast_then_expires() {
    let mut k = keeper();
    let _ = k.poll(START + 60_000);
    let p = k.poll(START + 105_000);
    assert_eq!(p.change, Some(Change::Rebinding));
    let t = p.transmit.expect("a broadcast REQUEST at T2");
    assert_eq!(t.to, Destination::Broadcast);
    assert_eq!(decode(&t.packet).ciaddr(), ADDRESS);
    assert_eq!(k.state(), KeepState::Rebinding);
    // 15 s left, floor 60 s: the next try is the expiry itself.
    assert_eq!(k.next_wakeup_ms(), Some(START + 120_000));
    let p = k.poll(START + 120_000);
    assert_eq!(p.change, Some(Change::Lost(Loss::Expired)));
    assert_eq!(p.transmit, None);
    assert_eq!(k.state(), KeepState::Lost);
    assert_eq!(k.next_wakeup_ms(), None);
    assert_eq!(
        k.poll(START + 200_000),
        Poll::default(),
        "one loss, reported once"
    );
}

#[test]
fn a_late_wakeup_goes_straight_to_the_state_due() {
    let mut k = keeper();
    let p = k.poll(START + 110_000);
    assert_eq!(p.change, Some(Change::Rebinding));
    assert_eq!(p.transmit.map(|t| t.to), Some(Destination::Broadcast));
    let mut k = keeper();
    assert_eq!(
        k.poll(START + 500_000).change,
        Some(Change::Lost(Loss::Expired))
    );
}

#[test]
fn an_ack_while_renewing_extends_the_lease_from_when_the_round_began() {
    let mut k = keeper();
    let _ = k.poll(START + 60_000);
    let _ = k.poll(START + 100_000);
    let ack = reply(MessageType::Ack, k.xid(), ADDRESS, SERVER, 120);
    assert_eq!(k.handle(&ack), Ok(Change::Renewed));
    assert_eq!(k.state(), KeepState::Bound);
    assert!(!k.is_asking());
    assert_eq!(k.lease().acquired_ms, START + 60_000);
    assert_eq!(k.lease().lease_secs, Some(120));
    assert_eq!(k.times().map(|t| t.renew_ms), Some(START + 60_000 + 60_000));
    assert_eq!(k.next_wakeup_ms(), Some(START + 120_000));
    // The next round renews again.
    assert_eq!(k.poll(START + 120_000).change, Some(Change::Renewing));
}

#[test]
fn while_rebinding_any_server_may_renew() {
    let mut k = keeper();
    let _ = k.poll(START + 106_000);
    let ack = reply(MessageType::Ack, k.xid(), ADDRESS, OTHER_SERVER, 300);
    assert_eq!(k.handle(&ack), Ok(Change::Renewed));
    assert_eq!(k.lease().server, OTHER_SERVER);
    assert_eq!(k.lease().lease_secs, Some(300));
}

#[test]
fn a_nak_loses_the_lease() {
    let mut k = keeper();
    let _ = k.poll(START + 60_000);
    let nak = reply(MessageType::Nak, k.xid(), Ipv4Addr::UNSPECIFIED, SERVER, 0);
    assert_eq!(k.handle(&nak), Ok(Change::Lost(Loss::Refused(SERVER))));
    assert_eq!(k.state(), KeepState::Lost);
    assert_eq!(k.next_wakeup_ms(), None);
}

#[test]
fn replies_that_are_not_for_this_renewal_are_ignored() {
    let mut k = keeper();
    let early = reply(MessageType::Ack, XID, ADDRESS, SERVER, 120);
    assert_eq!(k.handle(&early), Err(Ignored::Finished), "not asking yet");
    let _ = k.poll(START + 60_000);
    let xid = k.xid();
    let cases = [
        (
            reply(MessageType::Ack, xid ^ 1, ADDRESS, SERVER, 120),
            Ignored::WrongXid,
        ),
        (
            reply(
                MessageType::Ack,
                xid,
                Ipv4Addr::new(192, 168, 77, 51),
                SERVER,
                120,
            ),
            Ignored::Unexpected,
        ),
        (
            reply(MessageType::Ack, xid, ADDRESS, OTHER_SERVER, 120),
            Ignored::Unexpected,
        ),
        (
            reply(MessageType::Offer, xid, ADDRESS, SERVER, 120),
            Ignored::Unexpected,
        ),
        (vec![1, 2, 3], Ignored::Malformed),
    ];
    for (packet, why) in cases {
        assert_eq!(k.handle(&packet), Err(why));
        assert_eq!(k.state(), KeepState::Renewing);
    }
    let mut other_mac = decode(&reply(MessageType::Ack, xid, ADDRESS, SERVER, 120));
    other_mac.set_chaddr(&[9, 9, 9, 9, 9, 9]);
    assert_eq!(
        k.handle(&other_mac.to_vec().unwrap()),
        Err(Ignored::WrongChaddr)
    );
}

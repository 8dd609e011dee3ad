//! DHCP replies from the network, handled by PID 1's DHCP client state machine and by its lease
//! keeper: never panic, whatever arrives in whichever state (selecting, then requesting after a
//! first packet; renewing, then rebinding for the keeper).

use std::net::Ipv4Addr;

use pid1::net::dhcp::renew::{Keeper, RenewTiming};
use pid1::net::dhcp::{Client, Lease, Timing};

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let mut client = Client::new(MAC, 0x1234_5678, 0, Timing::default());
    let _ = client.poll_transmit(0);
    let (first, second) = data.split_at(data.len() / 2);
    let _ = client.handle(first, 10);
    let _ = client.poll_transmit(20);
    let _ = client.handle(second, 30);
    let _ = client.next_wakeup_ms();

    // A 120 s lease: renewing from 60 s, rebinding from 105 s.
    let lease = Lease {
        address: Ipv4Addr::new(10, 0, 2, 15),
        prefix_len: 24,
        router: None,
        dns: Vec::new(),
        domain: None,
        server: Ipv4Addr::new(10, 0, 2, 2),
        lease_secs: Some(120),
        renewal_secs: None,
        rebinding_secs: None,
        acquired_ms: 0,
    };
    let mut keeper = Keeper::new(MAC, 0x1234_5678, lease, RenewTiming::default());
    let _ = keeper.poll(60_000);
    let _ = keeper.handle(first);
    let _ = keeper.poll(105_000);
    let _ = keeper.handle(second);
    let _ = keeper.next_wakeup_ms();
    let _ = keeper.poll(200_000);
}

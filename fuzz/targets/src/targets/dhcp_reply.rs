//! DHCP replies from the network, handled by PID 1's DHCP client state machine: never panic,
//! whatever arrives in whichever state (selecting, then requesting after a first packet).

use pid1::net::dhcp::{Client, Timing};

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let mut client = Client::new(
        [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        0x1234_5678,
        0,
        Timing::default(),
    );
    let _ = client.poll_transmit(0);
    let (first, second) = data.split_at(data.len() / 2);
    let _ = client.handle(first, 10);
    let _ = client.poll_transmit(20);
    let _ = client.handle(second, 30);
    let _ = client.next_wakeup_ms();
}

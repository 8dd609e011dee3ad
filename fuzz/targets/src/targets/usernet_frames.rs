//! Ethernet frames a guest sends to its user-mode network (`usernet`, public API only): any
//! sequence of frames, interleaved with polls, never panics, the queue of frames for the guest
//! stays bounded, and every frame the gateway sends back is a well-formed Ethernet frame from
//! the gateway's MAC.
//!
//! Nothing leaves this machine: TCP to an address outside the guest network 10.200.0.0/24 would
//! start a real host connect, so the target rewrites such destinations into 127.0.0.0/8 before
//! handing the frame over (loopback is refused by the default configuration, with an RST), and
//! DNS forwarding is off (the default). The test is then that no TCP flow ever opens.
//!
//! Input: records `length (u16 LE, modulo 2048), frame bytes`; after each record whose length's
//! top bit is set, the stack is polled and the frames for the guest drained.

use usernet::config::GATEWAY_MAC;
use usernet::{UserNet, UserNetConfig};

/// Ethernet header (14) + the IPv4 destination's offset in the IP header (16).
const IPV4_DST: usize = 14 + 16;
const IPV4_PROTO: usize = 14 + 9;

fn keep_local(frame: &mut [u8]) {
    let ipv4 = frame.len() > IPV4_DST + 3 && frame[12..14] == [0x08, 0x00];
    if ipv4 && frame[IPV4_PROTO] == 6 && frame[IPV4_DST..IPV4_DST + 3] != [10, 200, 0] {
        frame[IPV4_DST] = 127;
    }
}

fn drain(net: &mut UserNet) {
    net.poll();
    while let Some(frame) = net.take_guest_frame() {
        assert!(
            (14..=1514).contains(&frame.len()),
            "frame of {} bytes",
            frame.len()
        );
        assert_eq!(frame[6..12], GATEWAY_MAC, "a frame not from the gateway");
    }
}

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(mut net) = UserNet::new(UserNetConfig::default()) else {
        panic!("the default configuration is valid");
    };
    let mut rest = data;
    while rest.len() >= 2 {
        let header = u16::from_le_bytes([rest[0], rest[1]]);
        let len = usize::from(header & 0x7ff).min(rest.len() - 2);
        let mut frame = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        keep_local(&mut frame);
        net.guest_frame(&frame);
        if header & 0x8000 != 0 {
            drain(&mut net);
        }
        assert_eq!(net.stats().tcp_flows, 0, "a TCP flow opened to loopback");
    }
    drain(&mut net);
    assert!(!net.has_guest_frames());
    assert_eq!(net.stats().tcp_flows, 0, "a TCP flow opened to loopback");
}

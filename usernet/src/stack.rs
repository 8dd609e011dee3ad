//! The smoltcp side: the interface, its sockets, and the bounded queue of frames for the guest.
//!
//! The "device" is two borrowed ends: at most one guest frame to ingest (borrowed, never
//! copied) and the queue that egress appends to. smoltcp writes each outgoing frame straight
//! into the `Vec` that [`UserNet::take_guest_frame`](crate::UserNet::take_guest_frame) hands out.

use std::collections::VecDeque;

use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

use crate::config::UserNetConfig;

/// Ethernet payload MTU of the guest link (the virtio-net default).
pub(crate) const MTU: usize = 1500;
/// Ethernet header length.
const ETH_HEADER: usize = 14;

/// Frames waiting for the guest, at most `cap`.
#[derive(Debug)]
pub(crate) struct GuestQueue {
    frames: VecDeque<Vec<u8>>,
    cap: usize,
    /// Frames lost because the queue was full when smoltcp answered during ingress.
    pub dropped: u64,
}

impl GuestQueue {
    fn new(cap: usize) -> Self {
        GuestQueue {
            frames: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.frames.len() >= self.cap
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }
}

/// One frame in, the guest queue out.
struct Link<'a> {
    rx: Option<&'a [u8]>,
    queue: &'a mut GuestQueue,
}

struct FrameRx<'a>(&'a [u8]);

struct FrameTx<'a>(&'a mut GuestQueue);

impl smoltcp::phy::RxToken for FrameRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl smoltcp::phy::TxToken for FrameTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        // Egress only gets a token when there is room; an answer smoltcp sends while
        // ingesting (an RST, an ARP reply) may find the queue full and is lost, as on a wire.
        if self.0.is_full() {
            self.0.dropped += 1;
        } else {
            self.0.frames.push_back(frame);
        }
        r
    }
}

impl Device for Link<'_> {
    type RxToken<'b>
        = FrameRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = FrameTx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(FrameRx<'_>, FrameTx<'_>)> {
        let frame = self.rx.take()?;
        Some((FrameRx(frame), FrameTx(self.queue)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<FrameTx<'_>> {
        if self.queue.is_full() {
            None
        } else {
            Some(FrameTx(self.queue))
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + ETH_HEADER;
        // Compute checksums on what we send; do not verify what the guest sends. The link is
        // memory (nothing corrupts a frame on the way), a bad checksum can only hurt the
        // guest's own flows, and it lets the VMM offer checksum offload (VIRTIO_NET_F_CSUM),
        // whose frames carry partial checksums.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

/// smoltcp's interface, sockets and the guest queue.
pub(crate) struct Stack {
    iface: Interface,
    pub sockets: SocketSet<'static>,
    pub queue: GuestQueue,
}

impl Stack {
    pub fn new(cfg: &UserNetConfig, now: Instant) -> Self {
        let mut queue = GuestQueue::new(cfg.guest_queue_frames);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(cfg.gateway_mac)));
        config.random_seed = random_seed();
        let mut link = Link {
            rx: None,
            queue: &mut queue,
        };
        let mut iface = Interface::new(config, &mut link, now);
        iface.update_ip_addrs(|addrs| {
            // Cannot fail: the list is empty and holds at least one address.
            let _ = addrs.push(IpCidr::new(cfg.gateway_ip.into(), cfg.prefix_len));
        });
        // Accept packets for every address (each proxied connection's local end is the remote
        // server's address), routed through ourselves.
        iface.set_any_ip(true);
        // Cannot fail: the route table is empty.
        let _ = iface.routes_mut().add_default_ipv4_route(cfg.gateway_ip);
        Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            queue,
        }
    }

    /// Processes one guest frame (smoltcp may queue an immediate answer).
    pub fn ingest(&mut self, frame: &[u8], now: Instant) {
        let mut link = Link {
            rx: Some(frame),
            queue: &mut self.queue,
        };
        self.iface
            .poll_ingress_single(now, &mut link, &mut self.sockets);
    }

    /// Lets every socket send what it can, until the guest queue is full or nothing is left.
    pub fn egress(&mut self, now: Instant) {
        let mut link = Link {
            rx: None,
            queue: &mut self.queue,
        };
        self.iface.poll_maintenance(now);
        while self.iface.poll_egress(now, &mut link, &mut self.sockets) != PollResult::None {}
    }

    /// smoltcp's next deadline, or `None` when it only waits for frames.
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        self.iface.poll_delay(now, &self.sockets)
    }
}

/// A seed for smoltcp's initial sequence numbers and ports, from getrandom(2).
fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: the buffer is live, writable and of the length passed.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if usize::try_from(n).ok() != Some(seed.len()) {
        // Predictable sequence numbers only matter to an attacker on the guest link, which is
        // the guest itself; fall back to the clock rather than fail.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return u64::from(nanos) ^ u64::from(std::process::id()) << 32;
    }
    u64::from_ne_bytes(seed)
}

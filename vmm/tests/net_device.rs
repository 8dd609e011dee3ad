//! Device tests of the network `vmm --net` gives a guest, driven from the guest's side.
//!
//! The device stack is the one `builder` builds: `MmioTransport<VirtioNet<UserNetBackend>>` on
//! the vmm's MMIO bus at the first virtio-mmio slot, with the vmm's own [`NetThread`] running
//! `usernet` behind it. This test plays the guest the way Linux's `virtio_mmio` and
//! `virtio_net` drivers do: every register access goes through the bus (magic, version,
//! device ID, the ACKNOWLEDGE/DRIVER/FEATURES_OK/DRIVER_OK handshake, feature banks, queue
//! set-up, `QueueNotify`, `InterruptStatus`/`InterruptAck`), the split rings live in guest
//! memory (laid out by virtio-queue's `MockSplitQueue`), receive buffers are 1530-byte
//! device-writable descriptors that are re-posted once used, and each transmitted frame is a
//! two-descriptor chain: a 12-byte `virtio_net_hdr_v1` and the Ethernet frame. Frames reach the
//! guest only through its interrupt handler (status read, acknowledge, then the used ring),
//! and the interrupt line records, each time it fires, how far the device had used each ring,
//! so the tests can check that no used buffer goes unsignalled.
//!
//! The guest network is the static configuration micro-VMs use (no DHCP): 10.200.0.2/24 with
//! gateway 10.200.0.1. TCP goes to a real listener on 127.0.0.1, which the proxy refuses by
//! default; the tests allow it with `UserNetConfig::allow_loopback`.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};
use usernet::{config, UserNet, UserNetConfig};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_mmio::{
    VIRTIO_MMIO_CONFIG, VIRTIO_MMIO_DEVICE_FEATURES, VIRTIO_MMIO_DEVICE_FEATURES_SEL,
    VIRTIO_MMIO_DEVICE_ID, VIRTIO_MMIO_DRIVER_FEATURES, VIRTIO_MMIO_DRIVER_FEATURES_SEL,
    VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INTERRUPT_STATUS, VIRTIO_MMIO_INT_VRING,
    VIRTIO_MMIO_MAGIC_VALUE, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
    VIRTIO_MMIO_QUEUE_DESC_HIGH, VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_NOTIFY,
    VIRTIO_MMIO_QUEUE_NUM, VIRTIO_MMIO_QUEUE_NUM_MAX, VIRTIO_MMIO_QUEUE_READY,
    VIRTIO_MMIO_QUEUE_SEL, VIRTIO_MMIO_QUEUE_USED_HIGH, VIRTIO_MMIO_QUEUE_USED_LOW,
    VIRTIO_MMIO_STATUS, VIRTIO_MMIO_VERSION,
};
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_devices::net::{MAX_FRAME_LEN, NET_HDR_LEN, QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use virtio_devices::{InterruptLine, MmioTransport, VirtioNet};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm::builder::virtio_slots;
use vmm::devices::bus::{Bus, WriteOutcome};
use vmm::devices::virtio::{NetThread, SharedNet, UserNetBackend};
use vmm_sys_util::eventfd::EventFd;

/// Longest wait for anything in these tests; a test fails with a message instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest sleep of the smoltcp guest without an interrupt or a timer of its own.
const MAX_IDLE: Duration = Duration::from_millis(20);

/// Guest memory: both rings below `RX_BUFS`, then the buffers.
const MEM_SIZE: usize = 0x10_0000;
const RX_RING: u64 = 0x0;
const TX_RING: u64 = 0x8000;
const RX_BUFS: u64 = 0x1_0000;
const TX_BUFS: u64 = 0x4_0000;
const BUF_STRIDE: u64 = 0x800;
/// Receive buffers kept posted. Linux fills the ring; four make the tests recycle them often.
const RX_BUFFERS: u16 = 4;
/// Linux's size for a receive buffer without mergeable buffers or offloads: header + 1518.
const RX_BUF_LEN: usize = NET_HDR_LEN + MAX_FRAME_LEN;
/// Transmit chains take two descriptors each.
const TX_SLOTS: u16 = QUEUE_SIZE / 2;
/// `virtio_net_hdr_v1` of a received frame without offloads: all zero but `num_buffers` = 1.
const RX_HEADER: [u8; NET_HDR_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

const GUEST_MAC: EthernetAddress = EthernetAddress(config::GUEST_MAC);
const GATEWAY_MAC: EthernetAddress = EthernetAddress(config::GATEWAY_MAC);

fn lock(net: &SharedNet) -> MutexGuard<'_, MmioTransport<VirtioNet<UserNetBackend>>> {
    net.lock().unwrap_or_else(PoisonError::into_inner)
}

fn u16_of(v: u32) -> u16 {
    u16::try_from(v).expect("fits u16")
}

fn addr_of(v: usize) -> u64 {
    u64::try_from(v).expect("fits u64")
}

/// One interrupt: the used-ring indexes in guest memory when it fired, and whether the vmm's
/// network thread (rather than the guest's own `QueueNotify` write) raised it.
#[derive(Debug, Clone, Copy)]
struct Irq {
    rx_used: u16,
    tx_used: u16,
    from_net_thread: bool,
}

/// The device's interrupt line as the test sees it: records every trigger and wakes a
/// waiting guest.
struct RecordingLine {
    mem: GuestMemoryMmap,
    rx_used_idx: GuestAddress,
    tx_used_idx: GuestAddress,
    log: Mutex<Vec<Irq>>,
    fired: Condvar,
}

impl RecordingLine {
    fn log(&self) -> MutexGuard<'_, Vec<Irq>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until more than `seen` interrupts fired or `timeout` passed; returns the count.
    fn wait_beyond(&self, seen: usize, timeout: Duration) -> usize {
        let log = self.log();
        let (log, _) = self
            .fired
            .wait_timeout_while(log, timeout, |log| log.len() <= seen)
            .unwrap_or_else(PoisonError::into_inner);
        log.len()
    }
}

impl InterruptLine for RecordingLine {
    fn trigger(&self) -> std::io::Result<()> {
        let rx = self
            .mem
            .read_obj::<u16>(self.rx_used_idx)
            .map_err(std::io::Error::other)?;
        let tx = self
            .mem
            .read_obj::<u16>(self.tx_used_idx)
            .map_err(std::io::Error::other)?;
        self.log().push(Irq {
            rx_used: u16::from_le(rx),
            tx_used: u16::from_le(tx),
            // `NetThread::spawn` names its thread "net".
            from_net_thread: thread::current().name() == Some("net"),
        });
        self.fired.notify_all();
        Ok(())
    }
}

/// Makes the chain at `head` available, as a driver does: ring slot, then the index.
fn make_available(queue: &MockSplitQueue<'_, GuestMemoryMmap>, head: u16) {
    let idx = queue.avail().idx().load();
    queue
        .avail()
        .ring()
        .ref_at(usize::from(idx % QUEUE_SIZE))
        .expect("avail ring slot")
        .store(head.to_le());
    queue.avail().idx().store(idx.wrapping_add(1).to_le());
}

fn rx_buffer(id: u16) -> GuestAddress {
    GuestAddress(RX_BUFS + u64::from(id) * BUF_STRIDE)
}

/// The guest's virtio-net driver, with the device, the bus and the network thread of the vmm.
struct Driver<'m> {
    mem: &'m GuestMemoryMmap,
    rx: MockSplitQueue<'m, GuestMemoryMmap>,
    tx: MockSplitQueue<'m, GuestMemoryMmap>,
    bus: Bus,
    base: u64,
    net: SharedNet,
    irq: Arc<RecordingLine>,
    thread: Option<NetThread>,
    /// Interrupts the guest has taken.
    irqs_seen: usize,
    /// Interrupts whose `InterruptStatus` said "used buffer".
    vring_irqs: usize,
    rx_used_seen: u16,
    tx_made_available: u16,
    /// Frames taken from used receive buffers, not yet consumed by the test or smoltcp.
    received: VecDeque<Vec<u8>>,
    /// Every frame the guest transmitted.
    sent: Vec<Vec<u8>>,
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        self.stop_network();
    }
}

impl<'m> Driver<'m> {
    /// Builds the vmm's `--net` device on `mem` (as `builder::run_vm` does, with loopback
    /// allowed and no DNS) and starts its network thread.
    fn new(mem: &'m GuestMemoryMmap) -> Self {
        let rx = MockSplitQueue::create(mem, GuestAddress(RX_RING), QUEUE_SIZE);
        let tx = MockSplitQueue::create(mem, GuestAddress(TX_RING), QUEUE_SIZE);
        assert!(rx.end() <= GuestAddress(TX_RING) && tx.end() <= GuestAddress(RX_BUFS));
        let irq = Arc::new(RecordingLine {
            mem: mem.clone(),
            rx_used_idx: GuestAddress(rx.used_addr().0 + 2),
            tx_used_idx: GuestAddress(tx.used_addr().0 + 2),
            log: Mutex::new(Vec::new()),
            fired: Condvar::new(),
        });
        let stack = UserNet::new(UserNetConfig {
            allow_loopback: true,
            ..UserNetConfig::default()
        })
        .expect("user-mode network");
        let wake = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let backend = UserNetBackend::new(stack, wake.try_clone().expect("clone eventfd"));
        let device = VirtioNet::new(backend, config::GUEST_MAC);
        let net: SharedNet = Arc::new(Mutex::new(
            MmioTransport::new(device, mem.clone(), irq.clone()).expect("transport"),
        ));
        let slot = virtio_slots(1).remove(0);
        let mut bus = Bus::new();
        bus.insert(slot.base, u64::from(slot.len), net.clone())
            .expect("bus slot");
        let thread = NetThread::spawn(net.clone(), wake).expect("network thread");
        Self {
            mem,
            rx,
            tx,
            bus,
            base: slot.base,
            net,
            irq,
            thread: Some(thread),
            irqs_seen: 0,
            vring_irqs: 0,
            rx_used_seen: 0,
            tx_made_available: 0,
            received: VecDeque::new(),
            sent: Vec::new(),
        }
    }

    fn stop_network(&mut self) {
        if let Some(t) = self.thread.take() {
            t.stop();
        }
    }

    fn read_reg(&self, reg: u32) -> u32 {
        let mut data = [0u8; 4];
        assert!(
            self.bus.read(self.base + u64::from(reg), &mut data),
            "register {reg:#x} is on the bus"
        );
        u32::from_le_bytes(data)
    }

    fn write_reg(&self, reg: u32, value: u32) {
        let outcome = self
            .bus
            .write(self.base + u64::from(reg), &value.to_le_bytes());
        assert_eq!(
            outcome,
            WriteOutcome::Handled(None),
            "write register {reg:#x}"
        );
    }

    /// Config space byte by byte, as Linux reads the MAC.
    fn read_config(&self, offset: u64, len: usize) -> Vec<u8> {
        (0..addr_of(len))
            .map(|i| {
                let mut b = [0u8; 1];
                let at = self.base + u64::from(VIRTIO_MMIO_CONFIG) + offset + i;
                assert!(self.bus.read(at, &mut b), "config byte {at:#x}");
                b[0]
            })
            .collect()
    }

    /// `virtio_mmio`'s probe and `virtio_net`'s set-up and open; returns the MAC from config.
    fn probe(&mut self) -> [u8; 6] {
        assert_eq!(self.read_reg(VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976, "magic");
        assert_eq!(self.read_reg(VIRTIO_MMIO_VERSION), 2, "modern virtio-mmio");
        assert_eq!(self.read_reg(VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
        self.write_reg(VIRTIO_MMIO_STATUS, 0);
        let mut status = VIRTIO_CONFIG_S_ACKNOWLEDGE;
        self.write_reg(VIRTIO_MMIO_STATUS, status);
        status |= VIRTIO_CONFIG_S_DRIVER;
        self.write_reg(VIRTIO_MMIO_STATUS, status);

        let mut offered = 0u64;
        for bank in 0..2u32 {
            self.write_reg(VIRTIO_MMIO_DEVICE_FEATURES_SEL, bank);
            offered |= u64::from(self.read_reg(VIRTIO_MMIO_DEVICE_FEATURES)) << (32 * bank);
        }
        let wanted =
            1u64 << VIRTIO_F_VERSION_1 | 1u64 << VIRTIO_NET_F_MAC | 1u64 << VIRTIO_NET_F_STATUS;
        assert_eq!(
            offered & wanted,
            wanted,
            "features {offered:#x} lack VERSION_1, MAC or STATUS"
        );
        for bank in 0..2u32 {
            self.write_reg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, bank);
            let half = u32::try_from((wanted >> (32 * bank)) & 0xffff_ffff).expect("32 bits");
            self.write_reg(VIRTIO_MMIO_DRIVER_FEATURES, half);
        }
        status |= VIRTIO_CONFIG_S_FEATURES_OK;
        self.write_reg(VIRTIO_MMIO_STATUS, status);
        assert_eq!(
            self.read_reg(VIRTIO_MMIO_STATUS),
            status,
            "the device kept FEATURES_OK"
        );

        let config = self.read_config(0, 8);
        let mac: [u8; 6] = config[..6].try_into().expect("6 bytes");
        let link = u16::from_le_bytes([config[6], config[7]]);
        assert_eq!(u32::from(link), VIRTIO_NET_S_LINK_UP, "link status");

        let rings = [
            (
                RX_QUEUE,
                self.rx.desc_table_addr(),
                self.rx.avail_addr(),
                self.rx.used_addr(),
            ),
            (
                TX_QUEUE,
                self.tx.desc_table_addr(),
                self.tx.avail_addr(),
                self.tx.used_addr(),
            ),
        ];
        for (index, desc, avail, used) in rings {
            self.write_reg(VIRTIO_MMIO_QUEUE_SEL, u32::from(index));
            assert_eq!(
                self.read_reg(VIRTIO_MMIO_QUEUE_READY),
                0,
                "queue {index} idle"
            );
            assert!(self.read_reg(VIRTIO_MMIO_QUEUE_NUM_MAX) >= u32::from(QUEUE_SIZE));
            self.write_reg(VIRTIO_MMIO_QUEUE_NUM, u32::from(QUEUE_SIZE));
            for (low, high, at) in [
                (
                    VIRTIO_MMIO_QUEUE_DESC_LOW,
                    VIRTIO_MMIO_QUEUE_DESC_HIGH,
                    desc,
                ),
                (
                    VIRTIO_MMIO_QUEUE_AVAIL_LOW,
                    VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
                    avail,
                ),
                (
                    VIRTIO_MMIO_QUEUE_USED_LOW,
                    VIRTIO_MMIO_QUEUE_USED_HIGH,
                    used,
                ),
            ] {
                self.write_reg(low, u32::try_from(at.0 & 0xffff_ffff).expect("32 bits"));
                self.write_reg(high, u32::try_from(at.0 >> 32).expect("32 bits"));
            }
            self.write_reg(VIRTIO_MMIO_QUEUE_READY, 1);
            assert_eq!(
                self.read_reg(VIRTIO_MMIO_QUEUE_READY),
                1,
                "queue {index} ready"
            );
        }
        status |= VIRTIO_CONFIG_S_DRIVER_OK;
        self.write_reg(VIRTIO_MMIO_STATUS, status);
        assert_eq!(self.read_reg(VIRTIO_MMIO_STATUS), status, "DRIVER_OK kept");
        assert!(lock(&self.net).is_activated(), "the device took its queues");

        // Open: fill the receive queue and kick it.
        {
            let _device = lock(&self.net);
            for id in 0..RX_BUFFERS {
                self.post_rx(id);
            }
        }
        self.write_reg(VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(RX_QUEUE));
        mac
    }

    /// Offers receive buffer `id` (call with the device locked: the network thread reads the
    /// ring concurrently, as the device of a real guest does).
    fn post_rx(&self, id: u16) {
        let flags = u16_of(VRING_DESC_F_WRITE);
        let len = u32::try_from(RX_BUF_LEN).expect("fits");
        let desc = Descriptor::new(rx_buffer(id).0, len, flags, 0);
        self.rx
            .desc_table()
            .store(id, RawDescriptor::from(desc))
            .expect("descriptor");
        make_available(&self.rx, id);
    }

    /// `start_xmit`: header and frame as a two-descriptor chain, then `QueueNotify`.
    fn transmit(&mut self, frame: &[u8]) {
        assert!(
            frame.len() <= MAX_FRAME_LEN,
            "frame of {} bytes",
            frame.len()
        );
        let slot = self.tx_made_available % TX_SLOTS;
        let head = slot * 2;
        let header = GuestAddress(TX_BUFS + u64::from(slot) * BUF_STRIDE);
        let body = GuestAddress(header.0 + addr_of(NET_HDR_LEN));
        {
            let _device = lock(&self.net);
            self.mem
                .write_slice(&[0u8; NET_HDR_LEN], header)
                .expect("write header");
            self.mem.write_slice(frame, body).expect("write frame");
            let next = u16_of(VRING_DESC_F_NEXT);
            let descs = [
                Descriptor::new(header.0, 12, next, head + 1),
                Descriptor::new(body.0, u32::try_from(frame.len()).expect("fits"), 0, 0),
            ];
            for (i, d) in (head..).zip(descs) {
                self.tx
                    .desc_table()
                    .store(i, RawDescriptor::from(d))
                    .expect("descriptor");
            }
            make_available(&self.tx, head);
        }
        self.tx_made_available = self.tx_made_available.wrapping_add(1);
        self.write_reg(VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(TX_QUEUE));
        // The device sends synchronously in the vCPU's QueueNotify write.
        let used = {
            let _device = lock(&self.net);
            self.tx.used().idx().load()
        };
        assert_eq!(
            used, self.tx_made_available,
            "every transmit chain was used during its QueueNotify"
        );
        self.sent.push(frame.to_vec());
    }

    /// Waits up to `timeout` for an interrupt and handles it; returns whether one came.
    fn wait_interrupt(&mut self, timeout: Duration) -> bool {
        let n = self.irq.wait_beyond(self.irqs_seen, timeout);
        if n == self.irqs_seen {
            return false;
        }
        self.irqs_seen = n;
        self.interrupt();
        true
    }

    /// `vm_interrupt`: read the status, acknowledge it, then look at the used rings.
    fn interrupt(&mut self) {
        let status = self.read_reg(VIRTIO_MMIO_INTERRUPT_STATUS);
        if status == 0 {
            // Already handled with an earlier interrupt.
            return;
        }
        assert_eq!(status, VIRTIO_MMIO_INT_VRING, "only used-buffer interrupts");
        self.write_reg(VIRTIO_MMIO_INTERRUPT_ACK, status);
        self.vring_irqs += 1;
        let mut reposted = false;
        {
            let _device = lock(&self.net);
            let used = u16::from_le(self.rx.used().idx().load());
            while self.rx_used_seen != used {
                let elem = self
                    .rx
                    .used()
                    .ring()
                    .ref_at(usize::from(self.rx_used_seen % QUEUE_SIZE))
                    .expect("used ring slot")
                    .load();
                let id = u16::try_from(elem.id()).expect("descriptor id");
                assert!(id < RX_BUFFERS, "used receive buffer {id} was never posted");
                let len = usize::try_from(elem.len()).expect("length");
                assert!(
                    len > NET_HDR_LEN + 14 && len <= RX_BUF_LEN,
                    "receive buffer {id} used with length {len}"
                );
                let mut buf = vec![0u8; len];
                self.mem
                    .read_slice(&mut buf, rx_buffer(id))
                    .expect("read buffer");
                assert_eq!(buf[..NET_HDR_LEN], RX_HEADER, "virtio_net_hdr_v1");
                self.received.push_back(buf.split_off(NET_HDR_LEN));
                self.post_rx(id);
                reposted = true;
                self.rx_used_seen = self.rx_used_seen.wrapping_add(1);
            }
        }
        if reposted {
            self.write_reg(VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(RX_QUEUE));
        }
    }

    /// The next received frame `wanted` accepts; other frames are set aside (ARP requests for
    /// the guest are answered, as any host would). Fails after [`TIMEOUT`].
    fn expect_frame(&mut self, what: &str, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        let mut others = Vec::new();
        loop {
            while let Some(frame) = self.received.pop_front() {
                if wanted(&frame) {
                    return frame;
                }
                if let Some(reply) = answer_arp(&frame) {
                    self.transmit(&reply);
                }
                others.push(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {TIMEOUT:?}; other frames: {others:02x?}"
            );
            self.wait_interrupt(left);
        }
    }

    /// Checks that every buffer the device used was followed by an interrupt (call after
    /// stopping the network thread, so the rings are still).
    fn assert_used_buffers_signalled(&self) {
        assert!(self.thread.is_none(), "network thread stopped first");
        let rx = self.rx.used().idx().load();
        let tx = self.tx.used().idx().load();
        let last = self.irq.log().last().map(|i| (i.rx_used, i.tx_used));
        assert_eq!(
            last,
            Some((rx, tx)),
            "the last interrupt came after the last used buffer"
        );
    }
}

struct RxFrame(Vec<u8>);

struct TxSlot<'a, 'm>(&'a mut Driver<'m>);

impl phy::RxToken for RxFrame {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxSlot<'_, '_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.transmit(&frame);
        r
    }
}

/// A smoltcp guest on the driver: transmit into the TX queue, receive what interrupts brought.
impl<'m> phy::Device for Driver<'m> {
    type RxToken<'a>
        = RxFrame
    where
        Self: 'a;
    type TxToken<'a>
        = TxSlot<'a, 'm>
    where
        Self: 'a;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.received.pop_front()?;
        Some((RxFrame(frame), TxSlot(self)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxSlot(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory")
}

fn ethernet(dst: EthernetAddress, ethertype: EthernetProtocol, payload_len: usize) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: GUEST_MAC,
        dst_addr: dst,
        ethertype,
    };
    let mut buf = vec![0; eth.buffer_len() + payload_len];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    buf
}

fn arp(operation: ArpOperation, target_mac: EthernetAddress, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: GUEST_MAC,
        source_protocol_addr: config::GUEST_IP,
        target_hardware_addr: target_mac,
        target_protocol_addr: target,
    };
    let dst = match operation {
        ArpOperation::Request => EthernetAddress::BROADCAST,
        _ => target_mac,
    };
    let mut buf = ethernet(dst, EthernetProtocol::Arp, arp.buffer_len());
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

fn parse_arp(frame: &[u8]) -> Option<(EthernetAddress, EthernetAddress, ArpRepr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    Some((eth.src_addr(), eth.dst_addr(), arp))
}

/// The guest's reply to an ARP request for its address, if `frame` is one.
fn answer_arp(frame: &[u8]) -> Option<Vec<u8>> {
    match parse_arp(frame)?.2 {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } if target_protocol_addr == config::GUEST_IP => Some(arp(
            ArpOperation::Reply,
            source_hardware_addr,
            source_protocol_addr,
        )),
        _ => None,
    }
}

/// One TCP segment from the guest to `dst` through the gateway.
fn tcp_segment(src_port: u16, dst: SocketAddrV4, control: TcpControl, seq: i32) -> Vec<u8> {
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
        src_addr: config::GUEST_IP,
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = ethernet(
        GATEWAY_MAC,
        EthernetProtocol::Ipv4,
        ip.buffer_len() + tcp.buffer_len(),
    );
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv4(config::GUEST_IP),
        &IpAddress::Ipv4(*dst.ip()),
        &caps,
    );
    buf
}

/// A TCP segment to the guest, with checksums verified.
#[derive(Debug, PartialEq)]
struct Segment {
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    control: TcpControl,
    seq: TcpSeqNumber,
    ack: Option<TcpSeqNumber>,
}

fn parse_tcp(frame: &[u8]) -> Option<Segment> {
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

fn loopback_listener() -> (TcpListener, SocketAddrV4) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a host listener");
    let port = listener.local_addr().expect("local address").port();
    (listener, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Accepts one connection within [`TIMEOUT`].
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).expect("non-blocking");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                assert!(peer.ip().is_loopback(), "the peer is the vmm's host socket");
                stream.set_nonblocking(false).expect("blocking");
                stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no connection from the vmm within {TIMEOUT:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// The gateway answers the guest's ARP, found through the MMIO registers; other ARP is not.
#[test]
fn arp_for_the_gateway_is_answered_into_a_receive_buffer_with_an_interrupt() {
    let mem = guest_memory();
    let mut guest = Driver::new(&mem);
    assert_eq!(guest.probe(), config::GUEST_MAC, "MAC in the config space");
    assert!(
        guest.irq.log().is_empty(),
        "no interrupt before any traffic"
    );

    guest.transmit(&arp(
        ArpOperation::Request,
        EthernetAddress([0; 6]),
        config::GATEWAY_IP,
    ));
    let reply = guest.expect_frame("ARP reply", |f| parse_arp(f).is_some());
    // 14-byte Ethernet header + 28-byte ARP body; the used length was 12 more (the header
    // was checked when the buffer was taken).
    assert_eq!(reply.len(), 42);
    assert_eq!(
        parse_arp(&reply),
        Some((
            GATEWAY_MAC,
            GUEST_MAC,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: GATEWAY_MAC,
                source_protocol_addr: config::GATEWAY_IP,
                target_hardware_addr: GUEST_MAC,
                target_protocol_addr: config::GUEST_IP,
            }
        ))
    );
    assert!(
        guest.irq.log().iter().any(|i| i.rx_used == 1),
        "an interrupt fired once the reply's buffer was used: {:?}",
        guest.irq.log()
    );
    assert!(guest.vring_irqs > 0);

    // Nobody else is on this link: ARP for a neighbour stays unanswered.
    guest.transmit(&arp(
        ArpOperation::Request,
        EthernetAddress([0; 6]),
        Ipv4Addr::new(10, 200, 0, 9),
    ));
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        guest.wait_interrupt(left);
    }
    assert!(
        guest.received.is_empty(),
        "unexpected frames: {:02x?}",
        guest.received
    );
    assert_eq!(guest.rx_used_seen, 1);

    guest.stop_network();
    guest.assert_used_buffers_signalled();
}

/// A raw SYN to a host listener: the vmm connects on the host, then answers with a SYN-ACK.
#[test]
fn syn_is_proxied_to_a_host_listener_and_answered_with_syn_ack() {
    let (listener, server) = loopback_listener();
    let mem = guest_memory();
    let mut guest = Driver::new(&mem);
    guest.probe();
    // A static guest learns the gateway's MAC first.
    guest.transmit(&arp(
        ArpOperation::Request,
        EthernetAddress([0; 6]),
        config::GATEWAY_IP,
    ));
    guest.expect_frame("ARP reply", |f| parse_arp(f).is_some());

    const GUEST_PORT: u16 = 40001;
    const ISN: i32 = 1000;
    guest.transmit(&tcp_segment(GUEST_PORT, server, TcpControl::Syn, ISN));
    let syn_ack = guest.expect_frame("SYN-ACK", |f| parse_tcp(f).is_some());
    let seg = parse_tcp(&syn_ack).expect("TCP");
    assert_eq!(
        (seg.eth_src, seg.eth_dst, seg.src, seg.dst, seg.control),
        (
            GATEWAY_MAC,
            GUEST_MAC,
            server,
            SocketAddrV4::new(config::GUEST_IP, GUEST_PORT),
            TcpControl::Syn,
        )
    );
    assert_eq!(seg.ack, Some(TcpSeqNumber(ISN + 1)), "acknowledges our SYN");
    // The SYN-ACK is sent only once the host connect succeeded: the connection is there.
    let mut stream = accept(&listener);

    // A reset from the guest ends the host side too.
    guest.transmit(&tcp_segment(GUEST_PORT, server, TcpControl::Rst, ISN + 1));
    match stream.read(&mut [0; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the host socket outlived the guest's reset: {other:?}"),
    }

    guest.stop_network();
    guest.assert_used_buffers_signalled();
}

/// What the host server answers to the guest's "hello": a line and enough bytes to take
/// several windows and to recycle every receive buffer many times.
fn server_reply() -> Vec<u8> {
    let mut reply = b"hello from the host\n".to_vec();
    reply.extend((0..32 * 1024u32).map(|i| i.to_le_bytes()[0] ^ i.to_le_bytes()[1]));
    reply
}

/// A smoltcp guest with the static micro-VM configuration, whose link is this driver, talks
/// to a host server through the whole path and closes the connection.
#[test]
fn static_guest_exchanges_data_with_a_host_server_and_closes() {
    let (listener, server) = loopback_listener();
    let (done_tx, done_rx) = mpsc::channel();
    let server_thread = thread::spawn(move || {
        let mut stream = accept(&listener);
        let mut hello = [0u8; 5];
        stream
            .read_exact(&mut hello)
            .expect("read the guest's hello");
        stream.write_all(&server_reply()).expect("reply");
        // The guest's FIN is our EOF; nothing else came.
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("read to the guest's FIN");
        drop(stream);
        let _ = done_tx.send((hello, rest));
    });

    let mem = guest_memory();
    let mut driver = Driver::new(&mem);
    let mac = driver.probe();
    let epoch = Instant::now();
    let now = || {
        smoltcp::time::Instant::from_micros(
            i64::try_from(epoch.elapsed().as_micros()).expect("fits"),
        )
    };
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    cfg.random_seed = 0x6e75_6c6c;
    let mut iface = Interface::new(cfg, &mut driver, now());
    // `ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off`
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(
            IpAddress::Ipv4(config::GUEST_IP),
            config::PREFIX_LEN,
        ))
        .expect("address");
    });
    iface
        .routes_mut()
        .add_default_ipv4_route(config::GATEWAY_IP)
        .expect("default route");
    let mut sockets = SocketSet::new(Vec::new());
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    );
    socket
        .connect(iface.context(), (*server.ip(), server.port()), 49152)
        .expect("connect");
    let h = sockets.add(socket);

    let mut run_until = |what: &str, done: &mut dyn FnMut(&mut tcp::Socket<'_>) -> bool| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            iface.poll(now(), &mut driver, &mut sockets);
            if done(sockets.get_mut::<tcp::Socket>(h)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what} (socket {})",
                sockets.get::<tcp::Socket>(h).state()
            );
            let delay = iface
                .poll_delay(now(), &sockets)
                .map_or(MAX_IDLE, |d| Duration::from(d).min(MAX_IDLE));
            driver.wait_interrupt(delay);
        }
    };

    run_until("the connection", &mut |s| {
        assert_ne!(s.state(), tcp::State::Closed, "the connection was refused");
        s.state() == tcp::State::Established
    });
    let mut sent = false;
    let expected = server_reply();
    let mut got = Vec::new();
    run_until("the server's reply", &mut |s| {
        if !sent && s.can_send() {
            assert_eq!(s.send_slice(b"hello").expect("send"), 5);
            sent = true;
        }
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .expect("receive");
        }
        got.len() >= expected.len()
    });
    assert!(got == expected, "the server's bytes arrived intact");
    run_until("the close", &mut |s| {
        s.close();
        matches!(s.state(), tcp::State::TimeWait | tcp::State::Closed)
    });

    let (hello, rest) = done_rx.recv_timeout(TIMEOUT).expect("the server finished");
    server_thread.join().expect("server thread");
    assert_eq!(&hello, b"hello");
    assert!(rest.is_empty(), "nothing after hello: {rest:?}");

    // Static configuration: the guest found the gateway by ARP, and every IP frame went to
    // the gateway's MAC from the guest's address.
    let first = parse_arp(&driver.sent[0]).map(|(_, _, a)| a);
    assert!(
        matches!(
            first,
            Some(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                target_protocol_addr,
                ..
            }) if target_protocol_addr == config::GATEWAY_IP
        ),
        "the guest first asked for the gateway: {first:?}"
    );
    let segments: Vec<_> = driver.sent.iter().filter_map(|f| parse_tcp(f)).collect();
    assert!(segments.len() >= 4, "SYN, ACK, data, FIN at least");
    for seg in &segments {
        assert_eq!(seg.eth_dst, GATEWAY_MAC);
        assert_eq!(seg.src, SocketAddrV4::new(config::GUEST_IP, 49152));
        assert_eq!(seg.dst, server);
    }
    assert!(
        driver.rx_used_seen > 4 * RX_BUFFERS,
        "receive buffers were recycled ({} frames)",
        driver.rx_used_seen
    );

    driver.stop_network();
    driver.assert_used_buffers_signalled();
    // The server's bytes came with interrupts the network thread raised, not only with those
    // of the guest's own QueueNotify writes.
    let log = driver.irq.log().clone();
    assert!(
        log.iter().any(|i| i.from_net_thread),
        "no interrupt from the network thread: {log:?}"
    );
}

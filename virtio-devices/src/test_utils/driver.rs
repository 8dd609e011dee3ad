//! The guest's virtio-net driver, played the way Linux's `virtio_mmio` and `virtio_net` drivers
//! do: every register access goes through the device's window (magic, version, device ID, the
//! ACKNOWLEDGE/DRIVER/FEATURES_OK/DRIVER_OK handshake, feature banks, queue set-up,
//! `QueueNotify`, `InterruptStatus`/`InterruptAck`), the split rings live in guest memory (laid
//! out by virtio-queue's `MockSplitQueue`), receive buffers are 1530-byte device-writable
//! descriptors that are re-posted once used, and each transmitted frame is a two-descriptor
//! chain: a 12-byte `virtio_net_hdr_v1` and the Ethernet frame. Frames reach the guest only
//! through its interrupt handler (status read, acknowledge, then the used ring), and the
//! interrupt line records, each time it fires, how far the device had used each ring, so a test
//! can check that no used buffer goes unsignalled.
//!
//! The window is a [`GuestBus`]: the transport itself in an `Arc<Mutex<..>>`, or the vmm's MMIO
//! bus in the vmm's tests.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

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
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::frames::Link;
use crate::net::{MAX_FRAME_LEN, NET_HDR_LEN, QUEUE_SIZE, RX_QUEUE, TX_QUEUE};
use crate::{InterruptLine, MmioTransport, VirtioDevice};

/// Longest wait of [`NetDriver::expect_frame`]; a test fails with a message instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Guest memory of the driver: both rings below [`RX_BUFS`], then the buffers (1 MiB in all,
/// as [`super::memory`] maps).
pub const RX_RING: u64 = 0x0;
/// The transmit queue's rings.
pub const TX_RING: u64 = 0x8000;
/// Receive buffer `id` is at `RX_BUFS + id * BUF_STRIDE`.
pub const RX_BUFS: u64 = 0x1_0000;
/// Transmit slot `n` (header, then frame) is at `TX_BUFS + n * BUF_STRIDE`.
pub const TX_BUFS: u64 = 0x4_0000;
/// Distance between two buffers.
pub const BUF_STRIDE: u64 = 0x800;
/// Receive buffers kept posted. Linux fills the ring; four make the tests recycle them often.
pub const RX_BUFFERS: u16 = 4;
/// Linux's size for a receive buffer without mergeable buffers or offloads: header + 1518.
pub const RX_BUF_LEN: usize = NET_HDR_LEN + MAX_FRAME_LEN;
/// Transmit chains take two descriptors each.
const TX_SLOTS: u16 = QUEUE_SIZE / 2;
/// `virtio_net_hdr_v1` of a received frame without offloads: all zero but `num_buffers` = 1.
pub const RX_HEADER: [u8; NET_HDR_LEN] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// The device's register window as the guest reaches it.
pub trait GuestBus {
    /// Holds the device still: while the guard lives, no other thread runs the device (the
    /// driver writes its rings under it, as the device of a real guest may read them any time).
    type Guard<'a>
    where
        Self: 'a;

    /// Reads `data.len()` bytes at `offset` in the window; panics if nothing answers.
    fn read(&self, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` in the window; panics if nothing takes it.
    fn write(&self, offset: u64, data: &[u8]);
    /// See [`GuestBus::Guard`].
    fn hold(&self) -> Self::Guard<'_>;
    /// Whether the device took its queues (`DRIVER_OK` was accepted).
    fn is_activated(&self) -> bool;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The transport itself, shared as the vmm shares it with its network thread.
impl<D: VirtioDevice> GuestBus for Arc<Mutex<MmioTransport<D>>> {
    type Guard<'a>
        = MutexGuard<'a, MmioTransport<D>>
    where
        Self: 'a;

    fn read(&self, offset: u64, data: &mut [u8]) {
        lock(self).read(offset, data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        lock(self).write(offset, data);
    }

    fn hold(&self) -> Self::Guard<'_> {
        lock(self)
    }

    fn is_activated(&self) -> bool {
        lock(self).is_activated()
    }
}

/// One interrupt: the used-ring indexes in guest memory when it fired, and the name of the
/// thread that raised it (a device's own thread, or the guest's during its `QueueNotify` write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    /// The receive queue's used index.
    pub rx_used: u16,
    /// The transmit queue's used index.
    pub tx_used: u16,
    /// The name of the thread that triggered the line.
    pub thread: Option<String>,
}

/// The device's interrupt line as the guest sees it: records every trigger and wakes a
/// waiting guest.
#[derive(Debug)]
pub struct RecordingLine {
    mem: GuestMemoryMmap,
    rx_used_idx: GuestAddress,
    tx_used_idx: GuestAddress,
    log: Mutex<Vec<Irq>>,
    fired: Condvar,
}

impl RecordingLine {
    /// Every interrupt so far, oldest first.
    pub fn log(&self) -> MutexGuard<'_, Vec<Irq>> {
        lock(&self.log)
    }

    /// Waits until more than `seen` interrupts fired or `timeout` passed; returns the count.
    pub fn wait_beyond(&self, seen: usize, timeout: Duration) -> usize {
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
            thread: thread::current().name().map(str::to_owned),
        });
        self.fired.notify_all();
        Ok(())
    }
}

fn u16_of(v: u32) -> u16 {
    u16::try_from(v).expect("fits u16")
}

fn addr_of(v: usize) -> u64 {
    u64::try_from(v).expect("fits u64")
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

/// The guest's virtio-net driver on the device behind `bus`.
pub struct NetDriver<'m, B: GuestBus> {
    mem: &'m GuestMemoryMmap,
    rx: MockSplitQueue<'m, GuestMemoryMmap>,
    tx: MockSplitQueue<'m, GuestMemoryMmap>,
    bus: B,
    /// The device's interrupt line.
    pub irq: Arc<RecordingLine>,
    /// Interrupts the guest has taken.
    pub irqs_seen: usize,
    /// Interrupts whose `InterruptStatus` said "used buffer".
    pub vring_irqs: usize,
    /// Receive buffers the guest took back from the used ring.
    pub rx_used_seen: u16,
    tx_made_available: u16,
    /// Frames taken from used receive buffers, not yet consumed by the test or smoltcp.
    pub received: VecDeque<Vec<u8>>,
    /// Every frame the guest transmitted.
    pub sent: Vec<Vec<u8>>,
    /// The guest's addressing, when it answers ARP requests for itself in
    /// [`NetDriver::expect_frame`] (as any host would).
    pub arp_identity: Option<Link>,
}

impl<B: GuestBus> std::fmt::Debug for NetDriver<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetDriver")
            .field("irqs_seen", &self.irqs_seen)
            .field("vring_irqs", &self.vring_irqs)
            .field("rx_used_seen", &self.rx_used_seen)
            .field("tx_made_available", &self.tx_made_available)
            .field("received", &self.received.len())
            .field("sent", &self.sent.len())
            .finish_non_exhaustive()
    }
}

impl<'m, B: GuestBus> NetDriver<'m, B> {
    /// Lays out the rings in `mem` (at least [`super::MEM_SIZE`] from 0) and makes the
    /// device's interrupt line; `connect` builds the device on that line and returns its window.
    pub fn new(mem: &'m GuestMemoryMmap, connect: impl FnOnce(Arc<RecordingLine>) -> B) -> Self {
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
        let bus = connect(irq.clone());
        Self {
            mem,
            rx,
            tx,
            bus,
            irq,
            irqs_seen: 0,
            vring_irqs: 0,
            rx_used_seen: 0,
            tx_made_available: 0,
            received: VecDeque::new(),
            sent: Vec::new(),
            arp_identity: None,
        }
    }

    /// The device's window.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    fn read_reg(&self, reg: u32) -> u32 {
        let mut data = [0u8; 4];
        self.bus.read(u64::from(reg), &mut data);
        u32::from_le_bytes(data)
    }

    fn write_reg(&self, reg: u32, value: u32) {
        self.bus.write(u64::from(reg), &value.to_le_bytes());
    }

    /// Config space byte by byte, as Linux reads the MAC.
    pub fn read_config(&self, offset: u64, len: usize) -> Vec<u8> {
        (0..addr_of(len))
            .map(|i| {
                let mut b = [0u8; 1];
                self.bus
                    .read(u64::from(VIRTIO_MMIO_CONFIG) + offset + i, &mut b);
                b[0]
            })
            .collect()
    }

    /// `virtio_mmio`'s probe and `virtio_net`'s set-up and open; returns the MAC from config.
    pub fn probe(&mut self) -> [u8; 6] {
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
        assert!(self.bus.is_activated(), "the device took its queues");

        // Open: fill the receive queue and kick it.
        {
            let _device = self.bus.hold();
            for id in 0..RX_BUFFERS {
                self.post_rx(id);
            }
        }
        self.write_reg(VIRTIO_MMIO_QUEUE_NOTIFY, u32::from(RX_QUEUE));
        mac
    }

    /// Offers receive buffer `id` (call with the device held: a device thread reads the ring
    /// concurrently, as the device of a real guest does).
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

    /// `start_xmit`: header and frame as a two-descriptor chain, then `QueueNotify`; checks
    /// that the device used the chain during that write.
    pub fn transmit(&mut self, frame: &[u8]) {
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
            let _device = self.bus.hold();
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
            let _device = self.bus.hold();
            self.tx.used().idx().load()
        };
        assert_eq!(
            used, self.tx_made_available,
            "every transmit chain was used during its QueueNotify"
        );
        self.sent.push(frame.to_vec());
    }

    /// Waits up to `timeout` for an interrupt and handles it; returns whether one came.
    pub fn wait_interrupt(&mut self, timeout: Duration) -> bool {
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
            let _device = self.bus.hold();
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
    /// the guest are answered when [`NetDriver::arp_identity`] is set). Fails after
    /// [`TIMEOUT`].
    pub fn expect_frame(&mut self, what: &str, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        let mut others = Vec::new();
        loop {
            while let Some(frame) = self.received.pop_front() {
                if wanted(&frame) {
                    return frame;
                }
                if let Some(reply) = self.arp_identity.and_then(|l| l.answer_arp(&frame)) {
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

    /// Checks that every buffer the device used was followed by an interrupt (call once no
    /// thread runs the device any more, so the rings are still).
    pub fn assert_used_buffers_signalled(&self) {
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

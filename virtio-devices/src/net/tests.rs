// Test fixtures cast small, known constants and indices.
#![allow(clippy::cast_possible_truncation)]

use std::sync::{Arc, Mutex};

use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::test_utils::driver::{NetDriver, RX_BUFFERS};
use crate::test_utils::{memory, offer, used, Buf, FakeBackend, DATA, MEM_SIZE};
use crate::MmioTransport;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Linux's small RX buffer: header + 1518-byte frame.
const RX_BUF_LEN: u32 = (NET_HDR_LEN + MAX_FRAME_LEN) as u32;

struct Harness<'a> {
    mem: &'a GuestMemoryMmap,
    rx: MockSplitQueue<'a, GuestMemoryMmap>,
    tx: MockSplitQueue<'a, GuestMemoryMmap>,
    dev: VirtioNet<FakeBackend>,
    rx_next: u16,
    tx_next: u16,
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemoryMmap) -> Self {
        let rx = MockSplitQueue::create(mem, GuestAddress(0), QUEUE_SIZE);
        let tx = MockSplitQueue::create(mem, GuestAddress(0x1_0000), QUEUE_SIZE);
        let mut dev = VirtioNet::new(FakeBackend::default(), MAC);
        let queues: Vec<Queue> = vec![
            rx.create_queue().expect("rx queue"),
            tx.create_queue().expect("tx queue"),
        ];
        dev.activate(0, queues).expect("activate");
        Self {
            mem,
            rx,
            tx,
            dev,
            rx_next: 0,
            tx_next: 0,
        }
    }

    fn offer_rx(&mut self, bufs: &[Buf]) {
        offer(&self.rx, self.rx_next, bufs);
        self.rx_next += u16::try_from(bufs.len()).expect("short chain");
    }

    fn offer_tx(&mut self, bufs: &[Buf]) {
        offer(&self.tx, self.tx_next, bufs);
        self.tx_next += u16::try_from(bufs.len()).expect("short chain");
    }

    fn guest(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.mem
            .read_slice(&mut out, GuestAddress(addr))
            .expect("guest read");
        out
    }

    fn put(&self, addr: u64, bytes: &[u8]) {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .expect("guest write");
    }
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// The header the device must put in front of every received frame.
fn rx_header() -> Vec<u8> {
    let mut h = vec![0u8; NET_HDR_LEN];
    h[10] = 1;
    h
}

#[test]
fn config_space_holds_the_mac_and_link_up() {
    let dev = VirtioNet::new(FakeBackend::default(), MAC);
    let mut config = [0u8; 10];
    dev.read_config(0, &mut config);
    assert_eq!(config[..6], MAC);
    assert_eq!(u16::from_le_bytes([config[6], config[7]]), 1, "link up");
    assert_eq!(config[8..], [0, 0], "past the end reads zero");
    assert_eq!(
        dev.features(),
        1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
    );
    assert_eq!(dev.device_type(), 1);
}

#[test]
fn activation_needs_both_queues_ready() {
    let mem = memory();
    let rx = MockSplitQueue::create(&mem, GuestAddress(0), QUEUE_SIZE);
    let mut dev = VirtioNet::new(FakeBackend::default(), MAC);
    let mut tx = Queue::new(QUEUE_SIZE).expect("queue");
    tx.set_ready(false);
    let err = dev
        .activate(0, vec![rx.create_queue().expect("rx"), tx])
        .unwrap_err();
    assert!(matches!(err, ActivateError::QueueNotReady(1)), "{err}");
    assert!(!dev.is_active());
    let err = dev.activate(0, vec![]).unwrap_err();
    assert!(matches!(err, ActivateError::QueueNotReady(0)), "{err}");
}

#[test]
fn transmitted_frames_reach_the_backend_without_their_header() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    let a = frame(60, 1);
    let b = frame(1514, 2);
    // Frame a: header and frame in one descriptor (what Linux does with VERSION_1).
    let mut one = vec![0u8; NET_HDR_LEN];
    one.extend_from_slice(&a);
    h.put(DATA, &one);
    h.offer_tx(&[(DATA, one.len() as u32, false)]);
    // Frame b: header alone, then the frame in two pieces.
    h.put(DATA + 0x1000, &[0; NET_HDR_LEN]);
    h.put(DATA + 0x2000, &b[..1000]);
    h.put(DATA + 0x3000, &b[1000..]);
    h.offer_tx(&[
        (DATA + 0x1000, NET_HDR_LEN as u32, false),
        (DATA + 0x2000, 1000, false),
        (DATA + 0x3000, 514, false),
    ]);
    assert!(h.dev.queue_notify(TX_QUEUE, &mem));
    assert_eq!(h.dev.backend().sent, vec![a, b]);
    assert_eq!(used(&h.tx), vec![(0, 0), (1, 0)]);
}

#[test]
fn malformed_transmit_chains_are_used_but_not_sent() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    h.offer_tx(&[(DATA, 60, true)]); // device-writable
    h.offer_tx(&[(DATA, 8, false)]); // shorter than the header
    h.offer_tx(&[(DATA, (NET_HDR_LEN + MAX_FRAME_LEN + 1) as u32, false)]); // too long
    h.offer_tx(&[(MEM_SIZE - 16, 60, false)]); // outside guest memory
    assert!(h.dev.process_tx(&mem));
    assert!(h.dev.backend().sent.is_empty());
    assert_eq!(used(&h.tx).len(), 4);
    // A good frame afterwards still goes out.
    h.put(DATA, &[0; 72]);
    h.offer_tx(&[(DATA, 72, false)]);
    assert!(h.dev.process_tx(&mem));
    assert_eq!(h.dev.backend().sent, vec![vec![0; 60]]);
}

#[test]
fn received_frames_land_in_guest_buffers_behind_a_header() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    let a = frame(42, 3);
    let b = frame(1514, 4);
    h.dev.backend_mut().inbox.extend([a.clone(), b.clone()]);
    h.offer_rx(&[(DATA, RX_BUF_LEN, true)]);
    // The second buffer is split: header in the first descriptor, frame across two.
    h.offer_rx(&[(DATA + 0x1000, 700, true), (DATA + 0x2000, 838, true)]);
    assert!(h.dev.process_rx(&mem));
    let mut expected_a = rx_header();
    expected_a.extend_from_slice(&a);
    assert_eq!(h.guest(DATA, expected_a.len()), expected_a);
    let mut expected_b = rx_header();
    expected_b.extend_from_slice(&b);
    let mut got_b = h.guest(DATA + 0x1000, 700);
    got_b.extend(h.guest(DATA + 0x2000, 838 - 12));
    assert_eq!(got_b, expected_b);
    assert_eq!(used(&h.rx), vec![(0, 54), (1, 1526)]);
    assert!(!h.dev.has_pending_rx());
}

#[test]
fn without_buffers_frames_wait_in_order_until_the_guest_offers_some() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(100 + i, i as u8)).collect();
    h.dev.backend_mut().inbox.extend(frames.iter().cloned());
    assert!(!h.dev.process_rx(&mem), "no buffer, nothing used");
    assert!(h.dev.has_pending_rx());
    // The device holds at most one frame; the rest stay in the backend.
    assert_eq!(h.dev.backend().inbox.len(), 2);

    h.offer_rx(&[(DATA, RX_BUF_LEN, true)]);
    assert!(h.dev.queue_notify(RX_QUEUE, &mem));
    assert_eq!(h.guest(DATA + 12, 100), frames[0]);
    assert_eq!(used(&h.rx).len(), 1);

    h.offer_rx(&[(DATA + 0x1000, RX_BUF_LEN, true)]);
    h.offer_rx(&[(DATA + 0x2000, RX_BUF_LEN, true)]);
    assert!(h.dev.process_rx(&mem));
    assert_eq!(h.guest(DATA + 0x1000 + 12, 101), frames[1]);
    assert_eq!(h.guest(DATA + 0x2000 + 12, 102), frames[2]);
    assert!(!h.dev.has_pending_rx());
    assert!(!h.dev.process_rx(&mem), "nothing more to deliver");
}

#[test]
fn oversized_frames_are_dropped_and_the_next_one_delivered() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    let good = frame(64, 9);
    h.dev
        .backend_mut()
        .inbox
        .extend([vec![0xaa; MAX_FRAME_LEN + 1], good.clone()]);
    h.offer_rx(&[(DATA, 4096, true)]);
    assert!(h.dev.process_rx(&mem));
    assert_eq!(used(&h.rx), vec![(0, 76)]);
    assert_eq!(h.guest(DATA + 12, 64), good);
}

#[test]
fn a_chain_too_small_is_returned_empty_and_the_frame_kept() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    let f = frame(200, 5);
    h.dev.backend_mut().inbox.push_back(f.clone());
    h.offer_rx(&[(DATA, 100, true)]); // too small
    h.offer_rx(&[(DATA + 0x1000, 64, false)]); // read-only: wrong direction
    h.offer_rx(&[(DATA + 0x2000, RX_BUF_LEN, true)]);
    assert!(h.dev.process_rx(&mem));
    assert_eq!(used(&h.rx), vec![(0, 0), (1, 0), (2, 212)]);
    assert_eq!(h.guest(DATA + 0x2000 + 12, 200), f);
}

#[test]
fn a_transmit_notification_also_delivers_the_backends_answers() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    h.dev.backend_mut().echo = true;
    h.offer_rx(&[(DATA + 0x8000, RX_BUF_LEN, true)]);
    let mut chain = vec![0u8; NET_HDR_LEN];
    chain.extend_from_slice(&[1, 2, 3, 4]);
    h.put(DATA, &chain);
    h.offer_tx(&[(DATA, chain.len() as u32, false)]);
    assert!(h.dev.queue_notify(TX_QUEUE, &mem));
    assert_eq!(h.guest(DATA + 0x8000 + 12, 4), [4, 3, 2, 1]);
    assert_eq!(used(&h.rx), vec![(0, 16)]);
}

#[test]
fn reset_drops_the_queues_and_the_held_frame() {
    let mem = memory();
    let mut h = Harness::new(&mem);
    h.dev.backend_mut().inbox.push_back(frame(10, 0));
    assert!(!h.dev.process_rx(&mem));
    h.dev.reset();
    assert!(!h.dev.is_active());
    assert!(!h.dev.has_pending_rx());
    h.offer_rx(&[(DATA, RX_BUF_LEN, true)]);
    h.dev.backend_mut().inbox.push_back(frame(10, 0));
    assert!(!h.dev.process_rx(&mem));
    assert!(!h.dev.queue_notify(TX_QUEUE, &mem));
    assert!(used(&h.rx).is_empty());
}

/// The test driver (Linux's probe and interrupt handling, through the registers only) against
/// the device behind its transport: frames go out, the backend's answers come back into
/// receive buffers the driver recycles, and every used buffer is signalled.
#[test]
fn a_guest_driver_sends_and_receives_over_mmio_through_recycled_buffers() {
    let mem = memory();
    let mut driver = NetDriver::new(&mem, |irq| {
        let backend = FakeBackend {
            echo: true,
            ..FakeBackend::default()
        };
        let dev = VirtioNet::new(backend, MAC);
        Arc::new(Mutex::new(
            MmioTransport::new(dev, mem.clone(), irq).expect("transport"),
        ))
    });
    assert_eq!(driver.probe(), MAC, "MAC from the config space");
    let frames: Vec<_> = (0..3 * RX_BUFFERS)
        .map(|i| frame(60, u8::try_from(i).expect("few frames")))
        .collect();
    for f in &frames {
        driver.transmit(f);
        let echo: Vec<u8> = f.iter().rev().copied().collect();
        driver.expect_frame("the echo", |g| g == echo.as_slice());
        assert!(driver.received.is_empty(), "one answer per frame");
    }
    assert_eq!(driver.rx_used_seen, 3 * RX_BUFFERS, "buffers were recycled");
    let sent = driver
        .bus()
        .lock()
        .expect("transport")
        .device()
        .backend()
        .sent
        .clone();
    assert_eq!(sent, frames, "the backend got each frame once, in order");
    driver.assert_used_buffers_signalled();
    let here = std::thread::current().name().map(str::to_owned);
    assert!(
        driver.irq.log().iter().all(|i| i.thread == here),
        "interrupts came from the guest's own QueueNotify writes"
    );
}

// Test fixtures cast small, known constants and indices.
#![allow(clippy::cast_possible_truncation)]

use std::io::Write;
use std::sync::Arc;

use tempfile::NamedTempFile;
use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_T_GET_ID};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::test_utils::{memory, offer, used, CountingLine, DATA, MEM_SIZE};
use crate::VirtioBlock;

const VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;
const FLUSH: u64 = 1 << VIRTIO_BLK_F_FLUSH;

struct Setup {
    mem: GuestMemoryMmap,
    line: Arc<CountingLine>,
    t: MmioTransport<VirtioBlock>,
    _image: NamedTempFile,
}

fn setup() -> Setup {
    let mut image = NamedTempFile::new().expect("temp image");
    image.write_all(&[0u8; 4096]).expect("fill image");
    let dev = VirtioBlock::open(image.path(), false, "root").expect("open image");
    let mem = memory();
    let line = CountingLine::new();
    let t = MmioTransport::new(dev, mem.clone(), line.clone()).expect("transport");
    Setup {
        mem,
        line,
        t,
        _image: image,
    }
}

fn r32(t: &mut MmioTransport<VirtioBlock>, offset: u64) -> u32 {
    let mut b = [0xffu8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn w32(t: &mut MmioTransport<VirtioBlock>, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

/// ACKNOWLEDGE, DRIVER, the features, FEATURES_OK: what Linux's virtio_dev_probe does.
fn negotiate(t: &mut MmioTransport<VirtioBlock>, features: u64) {
    w32(t, REG_STATUS, S_ACKNOWLEDGE);
    w32(t, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    w32(t, REG_DRIVER_FEATURES_SEL, 0);
    w32(t, REG_DRIVER_FEATURES, low(features));
    w32(t, REG_DRIVER_FEATURES_SEL, 1);
    w32(t, REG_DRIVER_FEATURES, high(features));
    w32(t, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
}

/// Programs queue `index` with the rings of `mock`, as vm_setup_vq does.
fn program_queue(
    t: &mut MmioTransport<VirtioBlock>,
    index: u32,
    mock: &MockSplitQueue<'_, GuestMemoryMmap>,
) {
    w32(t, REG_QUEUE_SEL, index);
    assert_eq!(r32(t, REG_QUEUE_READY), 0);
    w32(t, REG_QUEUE_NUM, 256);
    for (lo, addr) in [
        (REG_QUEUE_DESC_LOW, mock.desc_table_addr()),
        (REG_QUEUE_DRIVER_LOW, mock.avail_addr()),
        (REG_QUEUE_DEVICE_LOW, mock.used_addr()),
    ] {
        w32(t, lo, low(addr.0));
        w32(t, lo + 4, high(addr.0));
    }
    w32(t, REG_QUEUE_READY, 1);
}

const ALL_OK: u32 = S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;

#[test]
fn identity_registers() {
    let mut s = setup();
    assert_eq!(r32(&mut s.t, REG_MAGIC), 0x7472_6976);
    assert_eq!(r32(&mut s.t, REG_VERSION), 2);
    assert_eq!(r32(&mut s.t, REG_DEVICE_ID), 2);
    assert_eq!(r32(&mut s.t, REG_VENDOR_ID), VENDOR_ID);
    assert_eq!(r32(&mut s.t, REG_QUEUE_NUM_MAX), 256);
    w32(&mut s.t, REG_QUEUE_SEL, 1);
    assert_eq!(
        r32(&mut s.t, REG_QUEUE_NUM_MAX),
        0,
        "queue 1 does not exist"
    );
    assert_eq!(r32(&mut s.t, REG_SHM_LEN_LOW), u32::MAX, "no shared memory");
    assert_eq!(r32(&mut s.t, REG_CONFIG_GENERATION), 0);
}

#[test]
fn device_features_are_read_in_banks_with_version_1_always_offered() {
    let mut s = setup();
    let lo = r32(&mut s.t, REG_DEVICE_FEATURES);
    assert_ne!(u64::from(lo) & FLUSH, 0);
    w32(&mut s.t, REG_DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        r32(&mut s.t, REG_DEVICE_FEATURES),
        1,
        "bit 32: VIRTIO_F_VERSION_1"
    );
    w32(&mut s.t, REG_DEVICE_FEATURES_SEL, 2);
    assert_eq!(r32(&mut s.t, REG_DEVICE_FEATURES), 0);
}

#[test]
fn config_space_reads_at_any_width() {
    let mut s = setup();
    let mut cap = [0u8; 8];
    s.t.read(CONFIG_OFFSET, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 8, "4096 bytes = 8 sectors");
    assert_eq!(r32(&mut s.t, CONFIG_OFFSET), 8);
    assert_eq!(r32(&mut s.t, CONFIG_OFFSET + 4), 0);
    let mut one = [0xffu8; 1];
    s.t.read(CONFIG_OFFSET, &mut one);
    assert_eq!(one, [8]);
}

#[test]
fn odd_accesses_read_zero_and_write_nothing() {
    let mut s = setup();
    let mut two = [0xffu8; 2];
    s.t.read(REG_MAGIC, &mut two);
    assert_eq!(two, [0, 0], "2-byte register read");
    let mut unaligned = [0xffu8; 4];
    s.t.read(REG_MAGIC + 1, &mut unaligned);
    assert_eq!(unaligned, [0; 4]);
    s.t.write(REG_STATUS, &[1, 0]);
    assert_eq!(s.t.status(), 0, "2-byte status write ignored");
    let mut past = [0xffu8; 8];
    s.t.read(MMIO_WINDOW_SIZE - 4, &mut past);
    assert_eq!(past, [0; 8], "a read crossing the window end");
    s.t.read(u64::MAX, &mut past);
    s.t.read(u64::MAX - 2, &mut past);
    s.t.write(u64::MAX - 2, &past);
    s.t.read(0, &mut []);
    s.t.write(0x70, &[]);
    let mut big = vec![0xffu8; 0x2000];
    s.t.read(0x100, &mut big);
    assert!(big.iter().all(|&b| b == 0));
}

#[test]
fn feature_negotiation_requires_version_1_and_offered_bits_only() {
    let mut s = setup();
    negotiate(&mut s.t, FLUSH);
    assert_eq!(
        s.t.status(),
        S_ACKNOWLEDGE | S_DRIVER,
        "no VERSION_1: FEATURES_OK refused"
    );
    w32(&mut s.t, REG_STATUS, 0);

    negotiate(&mut s.t, VERSION_1 | 1 << 40);
    assert_eq!(
        s.t.status(),
        S_ACKNOWLEDGE | S_DRIVER,
        "unoffered bit: FEATURES_OK refused"
    );
    w32(&mut s.t, REG_STATUS, 0);

    negotiate(&mut s.t, VERSION_1 | FLUSH);
    assert_eq!(s.t.status(), S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    // Features are frozen after FEATURES_OK.
    w32(&mut s.t, REG_DRIVER_FEATURES_SEL, 0);
    w32(&mut s.t, REG_DRIVER_FEATURES, 0);
    assert_eq!(s.t.driver_features, VERSION_1 | FLUSH);
}

#[test]
fn status_bits_are_taken_only_in_order_and_never_cleared() {
    let mut s = setup();
    w32(&mut s.t, REG_STATUS, S_DRIVER);
    assert_eq!(s.t.status(), 0, "DRIVER before ACKNOWLEDGE");
    w32(&mut s.t, REG_DRIVER_FEATURES, 0xffff_ffff);
    assert_eq!(s.t.driver_features, 0, "features before DRIVER");
    w32(&mut s.t, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    w32(&mut s.t, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_DRIVER_OK);
    assert_eq!(
        s.t.status(),
        S_ACKNOWLEDGE | S_DRIVER,
        "DRIVER_OK before FEATURES_OK"
    );
    assert!(!s.t.is_activated());
    w32(&mut s.t, REG_STATUS, S_ACKNOWLEDGE);
    assert_eq!(
        s.t.status(),
        S_ACKNOWLEDGE | S_DRIVER,
        "bits are not cleared"
    );
    w32(&mut s.t, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FAILED);
    assert_eq!(s.t.status(), S_ACKNOWLEDGE | S_DRIVER | S_FAILED);
}

#[test]
fn queue_registers_are_writable_only_between_features_ok_and_driver_ok() {
    let mut s = setup();
    w32(&mut s.t, REG_QUEUE_READY, 1);
    assert_eq!(r32(&mut s.t, REG_QUEUE_READY), 0, "before FEATURES_OK");
    negotiate(&mut s.t, VERSION_1);
    w32(&mut s.t, REG_QUEUE_NUM, 100);
    assert_eq!(s.t.queues[0].size(), 256, "not a power of two: refused");
    w32(&mut s.t, REG_QUEUE_NUM, 64);
    assert_eq!(s.t.queues[0].size(), 64);
    w32(&mut s.t, REG_QUEUE_DESC_LOW, 0x1008);
    assert_eq!(
        s.t.queues[0].desc_table(),
        0,
        "misaligned descriptor table refused"
    );
    w32(&mut s.t, REG_QUEUE_DESC_LOW, 0x1000);
    w32(&mut s.t, REG_QUEUE_DESC_HIGH, 0x1);
    assert_eq!(s.t.queues[0].desc_table(), 0x1_0000_1000);
    w32(&mut s.t, REG_QUEUE_SEL, 7);
    w32(&mut s.t, REG_QUEUE_READY, 1);
    assert_eq!(r32(&mut s.t, REG_QUEUE_READY), 0, "absent queue");
}

#[test]
fn driver_ok_activates_and_a_notify_runs_the_device_and_raises_the_interrupt() {
    let mut s = setup();
    let mock = MockSplitQueue::new(&s.mem, 256);
    negotiate(&mut s.t, VERSION_1 | FLUSH);
    program_queue(&mut s.t, 0, &mock);
    w32(&mut s.t, REG_STATUS, ALL_OK);
    assert_eq!(s.t.status(), ALL_OK);
    assert!(s.t.is_activated());
    assert_eq!(r32(&mut s.t, REG_QUEUE_READY), 1);

    // Queue registers are frozen now.
    w32(&mut s.t, REG_QUEUE_NUM, 16);
    assert_eq!(s.t.queues[0].size(), 256);

    // A GET_ID request.
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&VIRTIO_BLK_T_GET_ID.to_le_bytes());
    s.mem.write_slice(&hdr, GuestAddress(DATA)).expect("header");
    offer(
        &mock,
        0,
        &[
            (DATA, 16, false),
            (DATA + 0x100, 20, true),
            (DATA + 0x200, 1, true),
        ],
    );
    w32(&mut s.t, REG_QUEUE_NOTIFY, 0);
    assert_eq!(used(&mock), vec![(0, 21)]);
    let mut id = [0u8; 4];
    s.mem
        .read_slice(&mut id, GuestAddress(DATA + 0x100))
        .expect("id");
    assert_eq!(&id, b"root");
    assert_eq!(s.line.count(), 1);
    assert_eq!(r32(&mut s.t, REG_INTERRUPT_STATUS), INT_USED_BUFFER);
    w32(&mut s.t, REG_INTERRUPT_ACK, INT_USED_BUFFER);
    assert_eq!(r32(&mut s.t, REG_INTERRUPT_STATUS), 0);

    // A notify with nothing available raises nothing; one for an absent queue is ignored.
    w32(&mut s.t, REG_QUEUE_NOTIFY, 0);
    w32(&mut s.t, REG_QUEUE_NOTIFY, 5);
    assert_eq!(s.line.count(), 1);
}

#[test]
fn a_ready_queue_outside_guest_memory_is_not_activated() {
    let mut s = setup();
    negotiate(&mut s.t, VERSION_1);
    w32(&mut s.t, REG_QUEUE_SEL, 0);
    w32(&mut s.t, REG_QUEUE_DESC_LOW, low(MEM_SIZE - 0x100));
    w32(&mut s.t, REG_QUEUE_DRIVER_LOW, 0x1000);
    w32(&mut s.t, REG_QUEUE_DEVICE_LOW, 0x2000);
    w32(&mut s.t, REG_QUEUE_READY, 1);
    w32(&mut s.t, REG_STATUS, ALL_OK);
    assert!(!s.t.is_activated());
    assert_eq!(s.t.status() & S_DRIVER_OK, 0);
    assert_ne!(s.t.status() & S_NEEDS_RESET, 0);
    w32(&mut s.t, REG_QUEUE_NOTIFY, 0);
    assert_eq!(s.line.count(), 0);
}

#[test]
fn the_device_refuses_activation_without_its_queue() {
    let mut s = setup();
    negotiate(&mut s.t, VERSION_1);
    w32(&mut s.t, REG_STATUS, ALL_OK);
    assert!(!s.t.is_activated());
    assert_ne!(s.t.status() & S_NEEDS_RESET, 0);
}

#[test]
fn writing_zero_to_status_resets_everything() {
    let mut s = setup();
    let mock = MockSplitQueue::new(&s.mem, 256);
    negotiate(&mut s.t, VERSION_1);
    program_queue(&mut s.t, 0, &mock);
    w32(&mut s.t, REG_STATUS, ALL_OK);
    s.t.signal_used_buffer();
    assert!(s.t.is_activated());

    w32(&mut s.t, REG_STATUS, 0);
    assert_eq!(s.t.status(), 0);
    assert!(!s.t.is_activated());
    assert_eq!(r32(&mut s.t, REG_INTERRUPT_STATUS), 0);
    assert_eq!(r32(&mut s.t, REG_QUEUE_READY), 0);
    assert_eq!(s.t.driver_features, 0);
    assert_eq!(s.t.queues[0].desc_table(), 0);

    // A request made available now is not processed until the driver sets up again.
    s.mem
        .write_slice(&[0u8; 16], GuestAddress(DATA))
        .expect("header");
    offer(
        &mock,
        0,
        &[
            (DATA, 16, false),
            (DATA + 0x100, 512, true),
            (DATA + 0x400, 1, true),
        ],
    );
    let before = s.line.count();
    w32(&mut s.t, REG_QUEUE_NOTIFY, 0);
    assert_eq!(s.line.count(), before);
    assert!(used(&mock).is_empty());

    // The same driver sequence works again after the reset.
    negotiate(&mut s.t, VERSION_1);
    program_queue(&mut s.t, 0, &mock);
    w32(&mut s.t, REG_STATUS, ALL_OK);
    assert!(s.t.is_activated());
    w32(&mut s.t, REG_QUEUE_NOTIFY, 0);
    assert_eq!(used(&mock), vec![(0, 513)]);
    assert_eq!(s.line.count(), before + 1);
}

#[test]
fn with_device_raises_the_interrupt_only_when_buffers_were_used() {
    let mut s = setup();
    let cap = s.t.with_device(|dev, _mem| (dev.capacity(), false));
    assert_eq!(cap, 8);
    assert_eq!(s.line.count(), 0);
    assert_eq!(s.t.interrupt_status(), 0);
    s.t.with_device(|_, _| ((), true));
    assert_eq!(s.line.count(), 1);
    assert_eq!(s.t.interrupt_status(), INT_USED_BUFFER);
}

#[test]
fn a_device_with_an_invalid_queue_size_is_refused() {
    struct Bad;
    impl VirtioDevice for Bad {
        fn device_type(&self) -> u32 {
            1
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[100]
        }
        fn features(&self) -> u64 {
            0
        }
        fn read_config(&self, _: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn activate(&mut self, _: u64, _: Vec<Queue>) -> Result<(), ActivateError> {
            Ok(())
        }
        fn queue_notify(&mut self, _: u16, _: &GuestMemoryMmap) -> bool {
            false
        }
        fn reset(&mut self) {}
    }
    let err = MmioTransport::new(Bad, memory(), CountingLine::new()).unwrap_err();
    assert!(
        matches!(
            err,
            MmioError::CreateQueue {
                index: 0,
                max_size: 100,
                ..
            }
        ),
        "{err}"
    );
}

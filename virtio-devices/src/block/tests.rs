// Test fixtures cast small, known constants and indices.
#![allow(clippy::cast_possible_truncation)]

use std::io::{Read, Seek, SeekFrom, Write};

use tempfile::NamedTempFile;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::test_utils::{chain, memory, offer, used, Buf, DATA, MEM_SIZE};

const SECTORS: u64 = 16;
const HDR: u64 = DATA;
const BUF: u64 = DATA + 0x1000;
const STATUS: u64 = DATA + 0x100;
/// A byte the device never writes as a status, to see whether it wrote one.
const UNTOUCHED: u8 = 0xee;

/// A disk image of 16 sectors where byte i holds i % 251.
fn image() -> NamedTempFile {
    let mut f = NamedTempFile::new().expect("temp image");
    let bytes: Vec<u8> = (0..SECTORS * SECTOR_SIZE)
        .map(|i| (i % 251) as u8)
        .collect();
    f.write_all(&bytes).expect("fill image");
    f
}

fn file_bytes(f: &NamedTempFile) -> Vec<u8> {
    let mut out = Vec::new();
    let mut file = f.reopen().expect("reopen image");
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.read_to_end(&mut out).expect("read image");
    out
}

struct Harness<'a> {
    mem: &'a GuestMemoryMmap,
    mock: MockSplitQueue<'a, GuestMemoryMmap>,
    dev: VirtioBlock,
    next: u16,
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemoryMmap, image: &NamedTempFile, read_only: bool) -> Self {
        let mock = MockSplitQueue::new(mem, QUEUE_SIZE);
        let mut dev = VirtioBlock::open(image.path(), read_only, "root").expect("open image");
        let queue: Queue = mock.create_queue().expect("queue");
        dev.activate(0, vec![queue]).expect("activate");
        Self {
            mem,
            mock,
            dev,
            next: 0,
        }
    }

    /// Writes a header, offers the chain and runs the queue; returns (used length, status byte).
    fn request(&mut self, request_type: u32, sector: u64, bufs: &[Buf]) -> (u32, u8) {
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&request_type.to_le_bytes());
        hdr[8..].copy_from_slice(&sector.to_le_bytes());
        self.mem
            .write_slice(&hdr, GuestAddress(HDR))
            .expect("header");
        self.raw(bufs)
    }

    /// Offers `bufs` as one chain as is and runs the queue.
    fn raw(&mut self, bufs: &[Buf]) -> (u32, u8) {
        self.mem
            .write_obj(UNTOUCHED, GuestAddress(STATUS))
            .expect("status");
        offer(&self.mock, self.next, bufs);
        let head = u32::from(self.next);
        self.next += u16::try_from(bufs.len()).expect("short chain");
        assert!(self.dev.process_queue(self.mem), "the chain is used");
        let entries = used(&self.mock);
        let &(id, len) = entries.last().expect("a used entry");
        assert_eq!(id, head, "the used entry names the chain head");
        let status: u8 = self.mem.read_obj(GuestAddress(STATUS)).expect("status");
        (len, status)
    }

    fn guest(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.mem
            .read_slice(&mut out, GuestAddress(addr))
            .expect("guest read");
        out
    }
}

fn hdr() -> Buf {
    (HDR, 16, false)
}

fn status() -> Buf {
    (STATUS, 1, true)
}

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;

#[test]
fn config_space_holds_the_capacity_in_sectors_and_features_follow_read_only() {
    let img = image();
    let rw = VirtioBlock::open(img.path(), false, "root").expect("open");
    let mut cap = [0u8; 8];
    rw.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), SECTORS);
    let mut seg = [0u8; 4];
    rw.read_config(12, &mut seg);
    assert_eq!(u32::from_le_bytes(seg), SEG_MAX);
    assert_ne!(rw.features() & 1 << VIRTIO_BLK_F_FLUSH, 0);
    assert_eq!(rw.features() & 1 << VIRTIO_BLK_F_RO, 0);
    let ro = VirtioBlock::open(img.path(), true, "root").expect("open");
    assert_ne!(ro.features() & 1 << VIRTIO_BLK_F_RO, 0);
}

#[test]
fn serial_longer_than_20_bytes_is_refused() {
    let img = image();
    let err = VirtioBlock::open(img.path(), true, "a-serial-of-21-bytes!").unwrap_err();
    assert!(matches!(err, BlockError::SerialTooLong(_)), "{err}");
}

#[test]
fn missing_image_is_an_open_error_naming_the_path() {
    let err = VirtioBlock::open(Path::new("/nonexistent/disk.img"), true, "x").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/disk.img"), "{err}");
}

#[test]
fn read_fills_the_guest_buffers_from_the_image() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, false);
    let (len, st) = h.request(
        VIRTIO_BLK_T_IN,
        1,
        &[hdr(), (BUF, 512, true), (BUF + 0x1000, 512, true), status()],
    );
    assert_eq!((len, st), (1025, OK));
    let expected = file_bytes(&img);
    assert_eq!(h.guest(BUF, 512), expected[512..1024]);
    assert_eq!(h.guest(BUF + 0x1000, 512), expected[1024..1536]);
}

#[test]
fn a_read_larger_than_the_bounce_buffer_is_complete() {
    let mem = memory();
    let mut f = NamedTempFile::new().expect("temp");
    let bytes: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 253) as u8).collect();
    f.write_all(&bytes).expect("fill");
    let mut h = Harness::new(&mem, &f, true);
    let (len, st) = h.request(
        VIRTIO_BLK_T_IN,
        0,
        &[hdr(), (BUF, 0x3_0000, true), status()],
    );
    assert_eq!((len, st), (0x3_0001, OK));
    assert_eq!(h.guest(BUF, 0x3_0000), bytes[..0x3_0000]);
}

#[test]
fn write_reaches_the_image_and_flush_succeeds() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, false);
    mem.write_slice(&[0xab; 1024], GuestAddress(BUF))
        .expect("data");
    let (len, st) = h.request(VIRTIO_BLK_T_OUT, 3, &[hdr(), (BUF, 1024, false), status()]);
    assert_eq!((len, st), (1, OK));
    let (len, st) = h.request(VIRTIO_BLK_T_FLUSH, 0, &[hdr(), status()]);
    assert_eq!((len, st), (1, OK));
    let after = file_bytes(&img);
    assert!(after[3 * 512..5 * 512].iter().all(|&b| b == 0xab));
    assert_eq!(
        after[5 * 512],
        (5 * 512 % 251) as u8,
        "the next sector is untouched"
    );
    assert_eq!(after[3 * 512 - 1], ((3 * 512 - 1) % 251) as u8);
}

#[test]
fn get_id_writes_the_serial_padded_to_20_bytes() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, true);
    mem.write_slice(&[0xff; 32], GuestAddress(BUF))
        .expect("data");
    let (len, st) = h.request(VIRTIO_BLK_T_GET_ID, 0, &[hdr(), (BUF, 32, true), status()]);
    assert_eq!((len, st), (21, OK));
    let mut expected = b"root".to_vec();
    expected.resize(20, 0);
    expected.extend_from_slice(&[0xff; 12]);
    assert_eq!(h.guest(BUF, 32), expected);
}

#[test]
fn write_to_a_read_only_disk_is_an_io_error_and_changes_nothing() {
    let mem = memory();
    let img = image();
    let before = file_bytes(&img);
    let mut h = Harness::new(&mem, &img, true);
    mem.write_slice(&[0xab; 512], GuestAddress(BUF))
        .expect("data");
    for _ in 0..2 {
        let (len, st) = h.request(VIRTIO_BLK_T_OUT, 0, &[hdr(), (BUF, 512, false), status()]);
        assert_eq!((len, st), (1, IOERR));
    }
    assert_eq!(file_bytes(&img), before);
    // Reads still work.
    let (_, st) = h.request(VIRTIO_BLK_T_IN, 0, &[hdr(), (BUF, 512, true), status()]);
    assert_eq!(st, OK);
}

#[test]
fn sectors_past_the_capacity_are_refused_without_overflow() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, false);
    mem.write_slice(&[0x11; 1024], GuestAddress(BUF))
        .expect("data");
    let before = file_bytes(&img);
    for (t, sector, writable) in [
        (VIRTIO_BLK_T_IN, SECTORS - 1, true),
        (VIRTIO_BLK_T_OUT, SECTORS - 1, false),
        (VIRTIO_BLK_T_IN, SECTORS, true),
        (VIRTIO_BLK_T_IN, u64::MAX, true),
        (VIRTIO_BLK_T_OUT, u64::MAX - 1, false),
        (VIRTIO_BLK_T_IN, u64::MAX / 512 + 1, true),
    ] {
        let (len, st) = h.request(t, sector, &[hdr(), (BUF, 1024, writable), status()]);
        assert_eq!((len, st), (1, IOERR), "type {t} sector {sector}");
    }
    assert_eq!(file_bytes(&img), before);
    // The last sector itself is fine.
    let (_, st) = h.request(
        VIRTIO_BLK_T_IN,
        SECTORS - 1,
        &[hdr(), (BUF, 512, true), status()],
    );
    assert_eq!(st, OK);
}

#[test]
fn unknown_request_types_are_unsupported() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, false);
    let (len, st) = h.request(11, 0, &[hdr(), (BUF, 16, false), status()]);
    assert_eq!((len, st), (1, VIRTIO_BLK_S_UNSUPP as u8));
}

#[test]
fn malformed_chains_with_a_status_byte_get_an_io_error() {
    let mem = memory();
    let img = image();
    let before = file_bytes(&img);
    let mut h = Harness::new(&mem, &img, false);
    let cases: &[(&str, u32, &[Buf])] = &[
        ("status only", VIRTIO_BLK_T_IN, &[status()]),
        (
            "write-only header",
            VIRTIO_BLK_T_IN,
            &[(HDR, 16, true), (BUF, 512, true), status()],
        ),
        (
            "short header",
            VIRTIO_BLK_T_IN,
            &[(HDR, 8, false), (BUF, 512, true), status()],
        ),
        (
            "header outside memory",
            VIRTIO_BLK_T_IN,
            &[(MEM_SIZE - 4, 16, false), status()],
        ),
        (
            "read into read-only buffer",
            VIRTIO_BLK_T_IN,
            &[hdr(), (BUF, 512, false), status()],
        ),
        (
            "write from writable buffer",
            VIRTIO_BLK_T_OUT,
            &[hdr(), (BUF, 512, true), status()],
        ),
        (
            "partial sector",
            VIRTIO_BLK_T_IN,
            &[hdr(), (BUF, 100, true), status()],
        ),
        (
            "data outside memory",
            VIRTIO_BLK_T_IN,
            &[hdr(), (MEM_SIZE - 512, 1024, true), status()],
        ),
        (
            "get id into read-only buffer",
            VIRTIO_BLK_T_GET_ID,
            &[hdr(), (BUF, 20, false), status()],
        ),
    ];
    for (name, t, bufs) in cases {
        let (len, st) = h.request(*t, 0, bufs);
        assert_eq!((len, st), (1, IOERR), "{name}");
    }
    assert_eq!(file_bytes(&img), before);
}

#[test]
fn chains_without_a_usable_status_byte_are_returned_empty() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, false);
    let cases: &[(&str, &[Buf])] = &[
        ("read-only status", &[hdr(), (STATUS, 1, false)]),
        ("empty status", &[hdr(), (STATUS, 0, true)]),
        ("status outside memory", &[hdr(), (MEM_SIZE + 8, 1, true)]),
    ];
    for (name, bufs) in cases {
        let (len, st) = h.request(VIRTIO_BLK_T_FLUSH, 0, bufs);
        assert_eq!((len, st), (0, UNTOUCHED), "{name}");
    }
    // The queue keeps working afterwards.
    let (len, st) = h.request(VIRTIO_BLK_T_FLUSH, 0, &[hdr(), status()]);
    assert_eq!((len, st), (1, OK));
}

#[test]
fn several_requests_are_handled_in_one_notification() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, true);
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&VIRTIO_BLK_T_FLUSH.to_le_bytes());
    mem.write_slice(&hdr, GuestAddress(HDR)).expect("header");
    offer(&h.mock, 0, &[(HDR, 16, false), (STATUS, 1, true)]);
    offer(&h.mock, 2, &[(HDR, 16, false), (STATUS + 1, 1, true)]);
    assert!(h.dev.process_queue(&mem));
    assert_eq!(used(&h.mock), vec![(0, 1), (2, 1)]);
    assert!(!h.dev.process_queue(&mem), "nothing left");
}

#[test]
fn nothing_is_processed_before_activation_or_after_reset() {
    let mem = memory();
    let img = image();
    let mut h = Harness::new(&mem, &img, true);
    h.dev.reset();
    offer(&h.mock, 0, &[hdr(), status()]);
    assert!(!h.dev.process_queue(&mem));
    assert!(!h.dev.queue_notify(0, &mem));
    assert!(used(&h.mock).is_empty());
}

#[test]
fn parse_reports_segments_and_refuses_overlong_chains() {
    let mem = memory();
    let mock = MockSplitQueue::new(&mem, 512);
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
    hdr[8..].copy_from_slice(&7u64.to_le_bytes());
    mem.write_slice(&hdr, GuestAddress(HDR)).expect("header");

    let descs = chain(
        0,
        &[
            hdr_buf(),
            (BUF, 512, true),
            (BUF + 512, 1024, true),
            status(),
        ],
    );
    let parsed = Request::parse(mock.build_desc_chain(&descs).expect("chain"), &mem).expect("ok");
    assert_eq!(parsed.request_type, RequestType::In);
    assert_eq!(parsed.sector, 7);
    assert_eq!(parsed.data_len(), 1536);
    assert_eq!(
        parsed.data[1],
        Segment {
            addr: GuestAddress(BUF + 512),
            len: 1024
        }
    );
    assert_eq!(parsed.status, GuestAddress(STATUS));

    let mut bufs = vec![hdr_buf()];
    bufs.extend((0..request::MAX_DESCRIPTORS).map(|i| (BUF + 512 * i as u64, 512, true)));
    bufs.push(status());
    let descs = chain(0, &bufs);
    let err = Request::parse(mock.build_desc_chain(&descs).expect("chain"), &mem).unwrap_err();
    assert!(
        matches!(err.error, ParseError::TooManyDescriptors),
        "{:?}",
        err.error
    );
    assert_eq!(err.status, None);
}

fn hdr_buf() -> Buf {
    (HDR, 16, false)
}

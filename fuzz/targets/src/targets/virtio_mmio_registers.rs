//! The virtio-mmio register window of a virtio-blk device, as a guest driver sees it: any
//! sequence of reads and writes of any width at any offset, interleaved with guest memory
//! writes (so that queues and requests can be built) never panics, and the identity registers
//! keep their values.
//!
//! Input: 7-byte records `kind, offset (u16 LE), value (u32 LE)`. `kind & 3`: 0 read, 1 write,
//! 2 store `value` in guest memory at `offset * 4`, 3 run device work through `with_device`.
//! `(kind >> 2) & 7` picks the access width from [4, 4, 1, 2, 8, 3, 16, 0].

use virtio_devices::test_utils::{scratch_image, CountingLine};
use virtio_devices::{MmioTransport, VirtioBlock};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const WIDTHS: [usize; 8] = [4, 4, 1, 2, 8, 3, 16, 0];

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).expect("guest memory");
    let dev = VirtioBlock::new(scratch_image(8 * 512), false, "fuzz").expect("block device");
    let mut t = MmioTransport::new(dev, mem.clone(), CountingLine::new()).expect("transport");
    for rec in data.chunks_exact(7) {
        let offset = u64::from(u16::from_le_bytes([rec[1], rec[2]]));
        let value = [rec[3], rec[4], rec[5], rec[6]];
        let width = WIDTHS[usize::from((rec[0] >> 2) & 7)];
        let bytes: Vec<u8> = value.iter().copied().cycle().take(width).collect();
        match rec[0] & 3 {
            0 => {
                let mut buf = vec![0u8; width];
                t.read(offset, &mut buf);
            }
            1 => t.write(offset, &bytes),
            2 => {
                let _ = mem.write_slice(&value, GuestAddress(offset * 4));
            }
            _ => t.with_device(|dev, mem| ((), dev.process_queue(mem))),
        }
    }
    let mut magic = [0u8; 4];
    t.read(0, &mut magic);
    assert_eq!(u32::from_le_bytes(magic), 0x7472_6976);
    let mut version = [0u8; 4];
    t.read(4, &mut version);
    assert_eq!(u32::from_le_bytes(version), 2);
}

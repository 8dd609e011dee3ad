//! Descriptor chains from a hostile guest: guest memory and a split queue built from the input,
//! then every available chain parsed as a virtio-blk request and as virtio-net TX/RX chains,
//! and run through the real devices. Never panics, never writes outside guest memory (vm-memory
//! checks), and always terminates.
//!
//! Input: queue size (u16 LE), descriptor table, available ring and used ring addresses (u16 LE
//! each), a flags byte (bit 0: read-only disk), then the first bytes of guest memory.

use std::collections::VecDeque;

use virtio_devices::block::Request;
use virtio_devices::net::{read_tx_frame, write_rx_frame};
use virtio_devices::test_utils::{scratch_image, FakeBackend};
use virtio_devices::{VirtioBlock, VirtioDevice, VirtioNet};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: usize = 0x1_0000;

fn copy(q: &Queue) -> Queue {
    Queue::try_from(q.state()).expect("a valid queue copies")
}

/// One input.
pub fn fuzz_one(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let word = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory");
    let content = &data[9..];
    mem.write_slice(&content[..content.len().min(MEM_SIZE)], GuestAddress(0))
        .expect("guest memory content");

    let mut queue = Queue::new(256).expect("queue");
    if queue.try_set_size(word(0)).is_err()
        || queue
            .try_set_desc_table_address(GuestAddress(word(2).into()))
            .is_err()
        || queue
            .try_set_avail_ring_address(GuestAddress(word(4).into()))
            .is_err()
        || queue
            .try_set_used_ring_address(GuestAddress(word(6).into()))
            .is_err()
    {
        return;
    }
    queue.set_ready(true);
    if !queue.is_valid(&mem) {
        return;
    }

    // The pure parsers, on every available chain.
    let mut q = copy(&queue);
    let mut buf = Vec::new();
    while let Some(chain) = q.pop_descriptor_chain(&mem) {
        let _ = Request::parse(chain.clone(), &mem);
        let _ = read_tx_frame(chain.clone(), &mem, &mut buf);
        let _ = write_rx_frame(chain, &mem, &[0x5a; 60]);
    }

    // The devices, end to end.
    let mut blk =
        VirtioBlock::new(scratch_image(8 * 512), data[8] & 1 == 1, "fuzz").expect("block device");
    if blk.activate(0, vec![copy(&queue)]).is_ok() {
        blk.queue_notify(0, &mem);
    }
    let mut net = VirtioNet::new(
        // Answers every frame (reversed), so RX runs too.
        FakeBackend {
            inbox: VecDeque::from([vec![0xa5; 64]]),
            echo: true,
            ..FakeBackend::default()
        },
        [0x52, 0x54, 0, 0x12, 0x34, 0x56],
    );
    if net.activate(0, vec![copy(&queue), copy(&queue)]).is_ok() {
        net.queue_notify(1, &mem);
        net.queue_notify(0, &mem);
    }
}

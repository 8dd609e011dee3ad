//! Moving Ethernet frames between descriptor chains and plain byte buffers: pure and bounded.
//!
//! Without `VIRTIO_NET_F_MRG_RXBUF` and offloads, every chain holds one 12-byte
//! `virtio_net_hdr_v1` followed by one frame (virtio 1.2, 5.1.6). TX chains are device-readable,
//! RX chains device-writable; the header may share a descriptor with the frame.

use std::ops::Deref;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

/// Length of `virtio_net_hdr_v1`, the header in front of every frame with `VIRTIO_F_VERSION_1`.
pub const NET_HDR_LEN: usize = 12;
/// Largest frame without offloads: 1500-byte MTU + Ethernet header + one VLAN tag.
pub const MAX_FRAME_LEN: usize = 1518;
/// Most descriptors we follow in one chain (the queue size).
pub(crate) const MAX_DESCRIPTORS: usize = super::QUEUE_SIZE as usize;

/// What is wrong with a chain.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// More descriptors than the queue size.
    #[error("descriptor chain longer than {MAX_DESCRIPTORS} descriptors")]
    TooManyDescriptors,
    /// A TX descriptor is write-only or an RX descriptor is read-only.
    #[error("descriptor {0} has the wrong direction")]
    WrongDirection(usize),
    /// A TX chain shorter than the header.
    #[error("transmit chain of {0} bytes is shorter than the {NET_HDR_LEN}-byte header")]
    TooShort(usize),
    /// A TX chain longer than header + [`MAX_FRAME_LEN`].
    #[error("transmit chain longer than {NET_HDR_LEN} + {MAX_FRAME_LEN} bytes")]
    TooLong,
    /// An RX chain too small for header + frame.
    #[error("receive chain of {capacity} bytes cannot hold a {frame}-byte frame and its header")]
    TooSmall {
        /// Bytes the chain can take.
        capacity: u64,
        /// Length of the frame.
        frame: usize,
    },
    /// A buffer is not in guest memory.
    #[error("access guest buffer")]
    GuestMemory(#[source] GuestMemoryError),
}

fn descriptors<M>(chain: DescriptorChain<M>) -> Result<Vec<Descriptor>, FrameError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let descs: Vec<Descriptor> = chain.take(MAX_DESCRIPTORS + 1).collect();
    if descs.len() > MAX_DESCRIPTORS {
        return Err(FrameError::TooManyDescriptors);
    }
    Ok(descs)
}

/// Reads a TX chain into `buf` (cleared first) and returns the frame without its header.
pub fn read_tx_frame<'b, M, T>(
    chain: DescriptorChain<M>,
    mem: &T,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], FrameError>
where
    M: Deref,
    M::Target: GuestMemory,
    T: GuestMemory,
{
    buf.clear();
    const LIMIT: usize = NET_HDR_LEN + MAX_FRAME_LEN;
    for (i, desc) in descriptors(chain)?.into_iter().enumerate() {
        if desc.is_write_only() {
            return Err(FrameError::WrongDirection(i));
        }
        let len = usize::try_from(desc.len()).map_err(|_| FrameError::TooLong)?;
        let start = buf.len();
        let end = start.checked_add(len).filter(|&e| e <= LIMIT);
        let Some(end) = end else {
            return Err(FrameError::TooLong);
        };
        buf.resize(end, 0);
        mem.read_slice(&mut buf[start..end], desc.addr())
            .map_err(FrameError::GuestMemory)?;
    }
    buf.get(NET_HDR_LEN..)
        .ok_or(FrameError::TooShort(buf.len()))
}

/// Writes the header and `frame` into an RX chain; returns the bytes written.
pub fn write_rx_frame<M, T>(
    chain: DescriptorChain<M>,
    mem: &T,
    frame: &[u8],
) -> Result<u32, FrameError>
where
    M: Deref,
    M::Target: GuestMemory,
    T: GuestMemory,
{
    let descs = descriptors(chain)?;
    if let Some(i) = descs.iter().position(|d| !d.is_write_only()) {
        return Err(FrameError::WrongDirection(i));
    }
    let capacity: u64 = descs.iter().map(|d| u64::from(d.len())).sum();
    let total = NET_HDR_LEN + frame.len();
    let written = u32::try_from(total)
        .ok()
        .filter(|&w| u64::from(w) <= capacity)
        .ok_or(FrameError::TooSmall {
            capacity,
            frame: frame.len(),
        })?;
    // No offloads: all header fields 0 except num_buffers = 1 (the last two bytes).
    let mut header = [0u8; NET_HDR_LEN];
    header[10] = 1;
    let mut parts = [&header[..], frame];
    let mut part = 0;
    for desc in &descs {
        let mut room = u64::from(desc.len());
        let mut addr = desc.addr();
        while room > 0 && part < parts.len() {
            let src = parts[part];
            let n = src.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            mem.write_slice(&src[..n], addr)
                .map_err(FrameError::GuestMemory)?;
            let n64 = u64::try_from(n).unwrap_or(u64::MAX);
            room -= n64;
            // The write above succeeded, so addr + n is still an address in guest memory.
            addr = addr
                .0
                .checked_add(n64)
                .map(GuestAddress)
                .ok_or(FrameError::GuestMemory(
                    GuestMemoryError::InvalidGuestAddress(addr),
                ))?;
            parts[part] = &src[n..];
            if parts[part].is_empty() {
                part += 1;
            }
        }
        if part == parts.len() {
            break;
        }
    }
    Ok(written)
}

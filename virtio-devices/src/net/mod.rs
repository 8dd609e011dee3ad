//! virtio-net on a pluggable frame backend (virtio 1.2, section 5.1).
//!
//! Offered features: `VIRTIO_NET_F_MAC` and `VIRTIO_NET_F_STATUS` (link always up). No offloads
//! and no mergeable RX buffers, so each RX chain takes one 12-byte header and one frame of at
//! most [`MAX_FRAME_LEN`] bytes. Queue 0 receives, queue 1 transmits.
//!
//! TX runs on the driver's `QueueNotify` (in the vCPU thread): every frame goes to
//! [`NetBackend::transmit`], then RX runs too, since the backend may already have answers. RX
//! also runs when the driver adds buffers (notify on queue 0) and when the vmm's network thread
//! calls [`VirtioNet::process_rx`] through [`crate::MmioTransport::with_device`].
//!
//! Backpressure: a frame is taken from the backend only when the device holds no frame already;
//! a frame that cannot be placed (no RX buffer available) waits in the device, the rest in the
//! backend. Frames longer than [`MAX_FRAME_LEN`] fit no buffer the driver is required to offer,
//! and are dropped with a debug line. A chain too small for a frame (the driver must offer
//! 1530 bytes per buffer, so this is a driver bug) is returned empty and the frame kept for the
//! next chain.

mod frame;

#[cfg(test)]
mod tests;

use std::fmt;

use log::debug;

use crate::log_limit::guest_warn;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// Warnings the guest can cause at will, logged through one limiter (see [`crate::log_limit`]).
static WARNINGS: crate::LogLimit = crate::LogLimit::new(
    crate::GUEST_LOG_LIMIT,
    log::Level::Warn,
    "virtio-net: further warnings are not logged",
);

pub use frame::{read_tx_frame, write_rx_frame, FrameError, MAX_FRAME_LEN, NET_HDR_LEN};

use crate::device::{read_config_bytes, ActivateError, VirtioDevice};

/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Index of the receive queue.
pub const RX_QUEUE: u16 = 0;
/// Index of the transmit queue.
pub const TX_QUEUE: u16 = 1;
const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE, QUEUE_SIZE];

/// Where guest frames go and host frames come from (the vmm adapts its user-mode network stack).
pub trait NetBackend: Send {
    /// Takes one Ethernet frame the guest sent (without the virtio header).
    fn transmit(&mut self, frame: &[u8]);
    /// Gives the next Ethernet frame for the guest, if any.
    fn receive(&mut self) -> Option<Vec<u8>>;
    /// Whether [`receive`](Self::receive) would return a frame.
    fn has_pending(&self) -> bool;
}

/// A virtio-net device in front of backend `B`.
pub struct VirtioNet<B: NetBackend> {
    backend: B,
    config: [u8; 8],
    /// Empty until activation; then `[rx, tx]`.
    queues: Vec<Queue>,
    /// A frame taken from the backend that found no RX buffer yet.
    pending: Option<Vec<u8>>,
    tx_buf: Vec<u8>,
}

impl<B: NetBackend> fmt::Debug for VirtioNet<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioNet")
            .field("mac", &&self.config[..6])
            .field("active", &!self.queues.is_empty())
            .field("pending_rx", &self.pending.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl<B: NetBackend> VirtioNet<B> {
    /// A device with MAC address `mac` in front of `backend`.
    pub fn new(backend: B, mac: [u8; 6]) -> Self {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac);
        // VIRTIO_NET_S_LINK_UP is 1: it fits the u16 status field.
        config[6..8].copy_from_slice(&1u16.to_le_bytes());
        debug_assert_eq!(VIRTIO_NET_S_LINK_UP, 1);
        Self {
            backend,
            config,
            queues: Vec::new(),
            pending: None,
            tx_buf: Vec::with_capacity(NET_HDR_LEN + MAX_FRAME_LEN),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (e.g. to poll its sockets from the network thread).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Whether the driver activated the device.
    pub fn is_active(&self) -> bool {
        !self.queues.is_empty()
    }

    /// Whether frames wait for the guest (in the device or in the backend).
    pub fn has_pending_rx(&self) -> bool {
        self.pending.is_some() || self.backend.has_pending()
    }

    /// Sends every frame of the TX queue to the backend; returns whether used buffers were added.
    pub fn process_tx(&mut self, mem: &GuestMemoryMmap) -> bool {
        let Some(queue) = self.queues.get_mut(usize::from(TX_QUEUE)) else {
            return false;
        };
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match read_tx_frame(chain, mem, &mut self.tx_buf) {
                Ok(frame) => self.backend.transmit(frame),
                Err(e) => guest_warn!("virtio-net: dropped a transmit chain: {e}"),
            }
            if let Err(e) = queue.add_used(mem, head, 0) {
                guest_warn!("virtio-net: cannot return transmit descriptor {head}: {e}");
                break;
            }
            used = true;
        }
        used
    }

    /// Fills available RX buffers with frames from the backend; returns whether used buffers
    /// were added.
    pub fn process_rx(&mut self, mem: &GuestMemoryMmap) -> bool {
        let Some(queue) = self.queues.get_mut(usize::from(RX_QUEUE)) else {
            return false;
        };
        let mut used = false;
        loop {
            if self.pending.is_none() {
                if !self.backend.has_pending() {
                    break;
                }
                match self.backend.receive() {
                    None => break,
                    Some(f) if f.len() > MAX_FRAME_LEN => {
                        debug!(
                            "virtio-net: dropped a {}-byte frame longer than {MAX_FRAME_LEN}",
                            f.len()
                        );
                        continue;
                    }
                    Some(f) => self.pending = Some(f),
                }
            }
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let Some(frame) = self.pending.take() else {
                break;
            };
            let head = chain.head_index();
            let len = match write_rx_frame(chain, mem, &frame) {
                Ok(len) => len,
                Err(e) => {
                    guest_warn!("virtio-net: receive chain {head} returned empty: {e}");
                    self.pending = Some(frame);
                    0
                }
            };
            if let Err(e) = queue.add_used(mem, head, len) {
                guest_warn!("virtio-net: cannot return receive descriptor {head}: {e}");
                break;
            }
            used = true;
        }
        used
    }
}

impl<B: NetBackend> VirtioDevice for VirtioNet<B> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, _acked_features: u64, queues: Vec<Queue>) -> Result<(), ActivateError> {
        if let Some(i) = (0..QUEUE_SIZES.len()).find(|&i| !queues.get(i).is_some_and(QueueT::ready))
        {
            return Err(ActivateError::QueueNotReady(i));
        }
        self.queues = queues;
        Ok(())
    }

    fn queue_notify(&mut self, index: u16, mem: &GuestMemoryMmap) -> bool {
        match index {
            RX_QUEUE => self.process_rx(mem),
            TX_QUEUE => {
                let tx = self.process_tx(mem);
                let rx = self.process_rx(mem);
                tx || rx
            }
            _ => false,
        }
    }

    fn reset(&mut self) {
        self.queues.clear();
        self.pending = None;
    }
}

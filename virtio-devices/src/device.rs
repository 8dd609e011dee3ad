//! The contract between the virtio-mmio transport and a device model.

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// The interrupt line of one virtio-mmio device.
///
/// The vmm implements it with an edge-triggered KVM irqfd (`EventFd::write(1)`); tests count calls.
pub trait InterruptLine: Send + Sync {
    /// Raise the interrupt once.
    fn trigger(&self) -> std::io::Result<()>;
}

/// Why a device refused to start when the driver set `DRIVER_OK`.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// A queue the driver marked ready lies (partly) outside guest memory.
    #[error("queue {0} is marked ready but its rings are not in guest memory")]
    InvalidQueue(usize),
    /// A queue the device needs was not set up by the driver.
    #[error("queue {0} is needed by the device but the driver did not make it ready")]
    QueueNotReady(usize),
}

/// A virtio device model behind a [`crate::MmioTransport`].
///
/// The transport calls these methods with its own `&mut` access, so a device needs no locking of
/// its own. Guest memory is passed to every call that touches queues; devices keep no reference.
pub trait VirtioDevice: Send {
    /// The virtio device ID (`VIRTIO_ID_BLOCK`, `VIRTIO_ID_NET`, ...).
    fn device_type(&self) -> u32;

    /// The maximum size of each queue, in queue order; each a power of two, at most 32768.
    fn queue_max_sizes(&self) -> &[u16];

    /// The device-specific feature bits offered. The transport adds `VIRTIO_F_VERSION_1`.
    fn features(&self) -> u64;

    /// Reads `data.len()` bytes of the config space at `offset`; bytes past its end read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes to the config space. Our devices have no writable config fields: ignored by default.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "virtio: ignored write of {} bytes at config offset {offset:#x}",
            data.len()
        );
    }

    /// The driver set `DRIVER_OK`: start with the negotiated features and the queues as the
    /// driver configured them (every queue in `queues` that is ready has valid rings).
    fn activate(&mut self, acked_features: u64, queues: Vec<Queue>) -> Result<(), ActivateError>;

    /// The driver wrote `index` to `QueueNotify`. Returns whether used buffers were added, in
    /// which case the transport raises the used-buffer interrupt.
    fn queue_notify(&mut self, index: u16, mem: &GuestMemoryMmap) -> bool;

    /// The driver wrote 0 to `Status`: drop the queues and return to the state before activation.
    fn reset(&mut self);
}

/// Copies the part of `config` at `offset` into `data`, zero-filling what lies past its end.
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::read_config_bytes;

    #[test]
    fn config_reads_past_the_end_are_zero() {
        let config = [1u8, 2, 3, 4];
        let mut out = [0xffu8; 4];
        read_config_bytes(&config, 2, &mut out);
        assert_eq!(out, [3, 4, 0, 0]);
        read_config_bytes(&config, u64::MAX, &mut out);
        assert_eq!(out, [0; 4]);
    }
}

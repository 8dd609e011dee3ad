//! The virtio-mmio transport, version 2 (virtio 1.x "modern"), as a pure register state machine.
//!
//! Register rules follow the virtio 1.2 specification, section 4.2.2: registers below
//! [`CONFIG_OFFSET`] are 32-bit and must be accessed with aligned 4-byte accesses (anything else
//! reads as zero and is ignored on write); the device config space at [`CONFIG_OFFSET`] takes any
//! width. The status state machine accepts bits only in the order ACKNOWLEDGE, DRIVER,
//! FEATURES_OK, DRIVER_OK; feature registers are writable between DRIVER and FEATURES_OK, queue
//! registers between FEATURES_OK and DRIVER_OK. Writing 0 to `Status` resets the device.

use std::fmt;
use std::sync::Arc;

use log::debug;

use crate::log_limit::guest_warn;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Warnings the guest can cause at will, logged through one limiter (see [`crate::log_limit`]).
static WARNINGS: crate::LogLimit = crate::LogLimit::new(
    crate::GUEST_LOG_LIMIT,
    log::Level::Warn,
    "virtio-mmio: further warnings are not logged",
);

use crate::device::{ActivateError, InterruptLine, VirtioDevice};

#[cfg(test)]
mod tests;

/// Size of one virtio-mmio register window (registers + config space).
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// Offset of the device config space in the window.
pub const CONFIG_OFFSET: u64 = 0x100;
/// `MagicValue`: "virt" in little endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// `Version`: 2, the modern (virtio 1.x) interface.
pub const MMIO_VERSION: u32 = 2;
/// `VendorID`: "NULL" in little endian. Linux matches drivers on the device ID only.
pub const VENDOR_ID: u32 = 0x4c4c_554e;
/// `InterruptStatus` bit: the device used a buffer.
pub const INT_USED_BUFFER: u32 = VIRTIO_MMIO_INT_VRING;
/// `InterruptStatus` bit: the config space changed.
pub const INT_CONFIG: u32 = VIRTIO_MMIO_INT_CONFIG;

// Register offsets (virtio 1.2, 4.2.2). Written out rather than taken from virtio-bindings'
// `VIRTIO_MMIO_*` because those are `u32` and match arms need the `u64` offset type.
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_SHM_SEL: u64 = 0x0ac;
const REG_SHM_LEN_LOW: u64 = 0x0b0;
const REG_SHM_BASE_HIGH: u64 = 0x0bc;
const REG_CONFIG_GENERATION: u64 = 0x0fc;

const S_ACKNOWLEDGE: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
const S_DRIVER: u32 = VIRTIO_CONFIG_S_DRIVER;
const S_FEATURES_OK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
const S_DRIVER_OK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;
const S_NEEDS_RESET: u32 = VIRTIO_CONFIG_S_NEEDS_RESET;
const S_FAILED: u32 = VIRTIO_CONFIG_S_FAILED;

/// Errors of building a transport.
#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    /// The device declared a queue size virtio-queue refuses (not a power of two, 0, > 32768).
    #[error("create queue {index} of max size {max_size}")]
    CreateQueue {
        /// Queue index.
        index: usize,
        /// The refused size.
        max_size: u16,
        /// virtio-queue's reason.
        #[source]
        source: virtio_queue::Error,
    },
}

/// One virtio-mmio device: the register file, the queue set-up and the device behind it.
///
/// Threading: the vmm keeps it in an `Arc<Mutex<MmioTransport<D>>>`; vCPU threads call
/// [`read`](Self::read) / [`write`](Self::write) on MMIO exits, and a device thread (virtio-net's
/// network thread) calls [`with_device`](Self::with_device).
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn InterruptLine>,
    queues: Vec<Queue>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    activated: bool,
}

impl<D: VirtioDevice> fmt::Debug for MmioTransport<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .field("interrupt_status", &self.interrupt_status)
            .field("driver_features", &self.driver_features)
            .field("activated", &self.activated)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// A transport in the reset state for `device`, on guest memory `mem`, raising `interrupt`.
    pub fn new(
        device: D,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn InterruptLine>,
    ) -> Result<Self, MmioError> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .enumerate()
            .map(|(index, &max_size)| {
                Queue::new(max_size).map_err(|source| MmioError::CreateQueue {
                    index,
                    max_size,
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            device,
            mem,
            interrupt,
            queues,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            activated: false,
        })
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, mutably (no interrupt is raised; see [`with_device`](Self::with_device)).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The guest memory the transport was built with.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Whether the driver set `DRIVER_OK` and the device accepted its queues.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// The `Status` register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The `InterruptStatus` register.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// Runs device work started outside the guest (e.g. frames for virtio-net) and raises the
    /// used-buffer interrupt when `f` reports that used buffers were added (second tuple field).
    ///
    /// `f` runs even before activation; devices without queues do nothing and return `false`.
    pub fn with_device<R>(&mut self, f: impl FnOnce(&mut D, &GuestMemoryMmap) -> (R, bool)) -> R {
        let (result, used) = f(&mut self.device, &self.mem);
        if used {
            self.signal_used_buffer();
        }
        result
    }

    /// Sets `InterruptStatus` bit 0 and triggers the interrupt line.
    pub fn signal_used_buffer(&mut self) {
        self.raise(INT_USED_BUFFER);
    }

    fn raise(&mut self, bit: u32) {
        self.interrupt_status |= bit;
        if let Err(e) = self.interrupt.trigger() {
            guest_warn!("virtio-mmio: cannot trigger the interrupt: {e}");
        }
    }

    fn device_features(&self) -> u64 {
        self.device.features() | (1 << VIRTIO_F_VERSION_1)
    }

    /// A guest read of `data.len()` bytes at `offset` in the window. Never panics; accesses that
    /// are not a register or config byte read as zeros.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            data.fill(0);
            match in_window(offset, data.len()) {
                true => self.device.read_config(offset - CONFIG_OFFSET, data),
                false => debug!("virtio-mmio: read past the window at {offset:#x}"),
            }
            return;
        }
        let value = match register_access(offset, data.len()) {
            Some(reg) => self.read_register(reg),
            None => {
                debug!(
                    "virtio-mmio: ignored {}-byte read at {offset:#x}",
                    data.len()
                );
                0
            }
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(bytes.len());
        data.fill(0);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn read_register(&self, reg: u64) -> u32 {
        match reg {
            REG_MAGIC => MAGIC_VALUE,
            REG_VERSION => MMIO_VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_select {
                0 => low(self.device_features()),
                1 => high(self.device_features()),
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| q.max_size().into()),
            REG_QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready().into()),
            REG_INTERRUPT_STATUS => self.interrupt_status,
            REG_STATUS => self.status,
            // No shared memory regions: a length of all ones tells the driver so.
            REG_SHM_LEN_LOW..=REG_SHM_BASE_HIGH => u32::MAX,
            REG_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    /// A guest write of `data` at `offset` in the window. Never panics; writes the device does
    /// not accept in its current state are ignored (logged at debug level).
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            match in_window(offset, data.len()) {
                true => self.device.write_config(offset - CONFIG_OFFSET, data),
                false => debug!("virtio-mmio: write past the window at {offset:#x}"),
            }
            return;
        }
        let Some(reg) = register_access(offset, data.len()) else {
            debug!(
                "virtio-mmio: ignored {}-byte write at {offset:#x}",
                data.len()
            );
            return;
        };
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&data[..4]);
        self.write_register(reg, u32::from_le_bytes(bytes));
    }

    fn write_register(&mut self, reg: u64, value: u32) {
        match reg {
            REG_DEVICE_FEATURES_SEL => self.device_features_select = value,
            REG_DRIVER_FEATURES_SEL => self.driver_features_select = value,
            REG_DRIVER_FEATURES => self.write_driver_features(value),
            REG_QUEUE_SEL => self.queue_select = value,
            REG_QUEUE_NUM
            | REG_QUEUE_READY
            | REG_QUEUE_DESC_LOW
            | REG_QUEUE_DESC_HIGH
            | REG_QUEUE_DRIVER_LOW
            | REG_QUEUE_DRIVER_HIGH
            | REG_QUEUE_DEVICE_LOW
            | REG_QUEUE_DEVICE_HIGH => self.write_queue_register(reg, value),
            REG_QUEUE_NOTIFY => self.queue_notify(value),
            REG_INTERRUPT_ACK => self.interrupt_status &= !value,
            REG_STATUS => self.write_status(value),
            REG_SHM_SEL => {}
            _ => debug!("virtio-mmio: ignored write of {value:#x} to register {reg:#x}"),
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status & (S_DRIVER | S_FEATURES_OK | S_FAILED) != S_DRIVER {
            debug!(
                "virtio-mmio: driver features written in status {:#x}",
                self.status
            );
            return;
        }
        let value = u64::from(value);
        match self.driver_features_select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (value << 32),
            sel => debug!("virtio-mmio: driver features bank {sel} does not exist"),
        }
    }

    fn selected_queue(&self) -> Option<&Queue> {
        usize::try_from(self.queue_select)
            .ok()
            .and_then(|i| self.queues.get(i))
    }

    fn write_queue_register(&mut self, reg: u64, value: u32) {
        if self.status & (S_FEATURES_OK | S_DRIVER_OK | S_FAILED) != S_FEATURES_OK {
            debug!(
                "virtio-mmio: queue register {reg:#x} written in status {:#x}",
                self.status
            );
            return;
        }
        let select = self.queue_select;
        let Some(queue) = usize::try_from(select)
            .ok()
            .and_then(|i| self.queues.get_mut(i))
        else {
            debug!("virtio-mmio: queue register {reg:#x} written for absent queue {select}");
            return;
        };
        let result = match reg {
            REG_QUEUE_NUM => u16::try_from(value)
                .map_err(|_| virtio_queue::Error::InvalidSize)
                .and_then(|size| queue.try_set_size(size)),
            REG_QUEUE_READY => {
                queue.set_ready(value == 1);
                Ok(())
            }
            REG_QUEUE_DESC_LOW => {
                queue.try_set_desc_table_address(set_low(queue.desc_table(), value))
            }
            REG_QUEUE_DESC_HIGH => {
                queue.try_set_desc_table_address(set_high(queue.desc_table(), value))
            }
            REG_QUEUE_DRIVER_LOW => {
                queue.try_set_avail_ring_address(set_low(queue.avail_ring(), value))
            }
            REG_QUEUE_DRIVER_HIGH => {
                queue.try_set_avail_ring_address(set_high(queue.avail_ring(), value))
            }
            REG_QUEUE_DEVICE_LOW => {
                queue.try_set_used_ring_address(set_low(queue.used_ring(), value))
            }
            REG_QUEUE_DEVICE_HIGH => {
                queue.try_set_used_ring_address(set_high(queue.used_ring(), value))
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            debug!("virtio-mmio: queue {select} register {reg:#x} value {value:#x} refused: {e}");
        }
    }

    fn queue_notify(&mut self, value: u32) {
        if !self.activated {
            debug!("virtio-mmio: queue notify {value} before activation");
            return;
        }
        let index = match u16::try_from(value) {
            Ok(i) if usize::from(i) < self.queues.len() => i,
            _ => {
                debug!("virtio-mmio: notify for absent queue {value}");
                return;
            }
        };
        if self.device.queue_notify(index, &self.mem) {
            self.signal_used_buffer();
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // The driver never clears bits except by writing 0; NEEDS_RESET is the device's to set.
        let value = value & !S_NEEDS_RESET;
        let old = self.status & !S_NEEDS_RESET;
        if value & old != old {
            debug!(
                "virtio-mmio: status {value:#x} would clear bits of {:#x}",
                self.status
            );
            return;
        }
        let new = value & !old;
        let mut status = self.status;
        if new & S_ACKNOWLEDGE != 0 {
            status |= S_ACKNOWLEDGE;
        }
        if new & S_DRIVER != 0 && status & S_ACKNOWLEDGE != 0 {
            status |= S_DRIVER;
        }
        if new & S_FEATURES_OK != 0 && status & S_DRIVER != 0 {
            let offered = self.device_features();
            if self.driver_features & !offered != 0 {
                guest_warn!(
                    "virtio-mmio: driver accepted features {:#x} beyond the offered {offered:#x}",
                    self.driver_features
                );
            } else if self.driver_features & (1 << VIRTIO_F_VERSION_1) == 0 {
                guest_warn!("virtio-mmio: driver did not accept VIRTIO_F_VERSION_1");
            } else {
                status |= S_FEATURES_OK;
            }
        }
        if new & S_DRIVER_OK != 0 && status & S_FEATURES_OK != 0 && !self.activated {
            match self.activate() {
                Ok(()) => {
                    self.activated = true;
                    status |= S_DRIVER_OK;
                }
                Err(e) => {
                    guest_warn!(
                        "virtio-mmio: device type {} not activated: {e}",
                        self.device.device_type()
                    );
                    status |= S_NEEDS_RESET;
                }
            }
        }
        if new & S_FAILED != 0 {
            status |= S_FAILED;
        }
        if status & !self.status & !S_NEEDS_RESET != new {
            debug!(
                "virtio-mmio: status {value:#x} out of order from {:#x}, now {status:#x}",
                self.status
            );
        }
        self.status = status;
    }

    fn activate(&mut self) -> Result<(), ActivateError> {
        if let Some(index) = self
            .queues
            .iter()
            .position(|q| q.ready() && !q.is_valid(&self.mem))
        {
            return Err(ActivateError::InvalidQueue(index));
        }
        // The device gets copies; the transport keeps its own for register reads until reset.
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| Queue::try_from(q.state()).map_err(|_| ActivateError::InvalidQueue(i)))
            .collect::<Result<Vec<_>, _>>()?;
        self.device.activate(self.driver_features, queues)
    }

    /// The device reset of a 0 written to `Status` (also usable by the vmm, e.g. on guest reboot).
    pub fn reset(&mut self) {
        self.device.reset();
        for queue in &mut self.queues {
            queue.reset();
        }
        self.queue_select = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
        self.activated = false;
    }
}

/// The register of an aligned 4-byte access below the config space.
fn register_access(offset: u64, len: usize) -> Option<u64> {
    (len == 4 && offset % 4 == 0 && offset < CONFIG_OFFSET).then_some(offset)
}

/// Whether `len` bytes at `offset` lie in the window.
fn in_window(offset: u64, len: usize) -> bool {
    u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len))
        .is_some_and(|end| end <= MMIO_WINDOW_SIZE)
}

// Splitting a 64-bit feature word into its 32-bit register banks truncates on purpose.
#[allow(clippy::cast_possible_truncation)]
fn low(v: u64) -> u32 {
    v as u32
}

#[allow(clippy::cast_possible_truncation)]
fn high(v: u64) -> u32 {
    (v >> 32) as u32
}

fn set_low(addr: u64, value: u32) -> GuestAddress {
    GuestAddress((addr & !0xffff_ffff) | u64::from(value))
}

fn set_high(addr: u64, value: u32) -> GuestAddress {
    GuestAddress((addr & 0xffff_ffff) | (u64::from(value) << 32))
}

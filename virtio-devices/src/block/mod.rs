//! virtio-blk on a raw image file (virtio 1.2, section 5.2).
//!
//! Offered features: `VIRTIO_BLK_F_SEG_MAX`, `VIRTIO_BLK_F_BLK_SIZE` (512), `VIRTIO_BLK_F_FLUSH`,
//! and `VIRTIO_BLK_F_RO` for a read-only disk. One request queue. Requests are handled
//! synchronously when the driver notifies the queue: [`Request::parse`] (pure) then the file I/O.

mod disk;
pub mod request;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use log::{debug, warn};

use crate::log_limit::guest_warn;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Warnings the guest can cause at will, logged through one limiter (see [`crate::log_limit`]).
static WARNINGS: crate::LogLimit = crate::LogLimit::new(
    crate::GUEST_LOG_LIMIT,
    log::Level::Warn,
    "virtio-blk: further warnings are not logged",
);

pub use disk::ExecuteError;
pub use request::{BadRequest, ParseError, Request, RequestType, Segment};

use crate::device::{read_config_bytes, ActivateError, VirtioDevice};
use disk::Disk;

/// Bytes per sector, the unit of `sector` and `capacity`.
pub const SECTOR_SIZE: u64 = 512;
/// Size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most data segments in one request (the queue size minus header and status).
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Length of the GET_ID answer (`VIRTIO_BLK_ID_BYTES`).
pub const SERIAL_LEN: usize = 20;
/// Length of the config space we expose: capacity, size_max, seg_max, geometry, blk_size.
const CONFIG_LEN: usize = 24;

/// Errors of opening a disk.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image cannot be opened.
    #[error("open disk image {path}")]
    Open {
        /// The image path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The image's size cannot be read.
    #[error("read the size of the disk image")]
    Metadata(#[source] io::Error),
    /// The serial does not fit the 20 bytes of GET_ID.
    #[error("disk serial {0:?} is longer than {SERIAL_LEN} bytes")]
    SerialTooLong(String),
}

/// A virtio-blk device backed by a raw image file.
pub struct VirtioBlock {
    disk: Disk,
    config: [u8; CONFIG_LEN],
    queue: Option<Queue>,
}

impl fmt::Debug for VirtioBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioBlock")
            .field("capacity_sectors", &self.disk.capacity())
            .field("read_only", &self.disk.read_only())
            .field("active", &self.queue.is_some())
            .finish_non_exhaustive()
    }
}

impl VirtioBlock {
    /// A device on `file` (opened read-write unless `read_only`), answering GET_ID with `serial`.
    /// The capacity is the file length rounded down to whole sectors.
    pub fn new(file: File, read_only: bool, serial: &str) -> Result<Self, BlockError> {
        if serial.len() > SERIAL_LEN {
            return Err(BlockError::SerialTooLong(serial.to_owned()));
        }
        let mut id = [0u8; SERIAL_LEN];
        id[..serial.len()].copy_from_slice(serial.as_bytes());
        let len = file.metadata().map_err(BlockError::Metadata)?.len();
        if len % SECTOR_SIZE != 0 {
            warn!("virtio-blk: image size {len} is not a multiple of {SECTOR_SIZE}; the tail is not visible");
        }
        let capacity = len / SECTOR_SIZE;
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        // SECTOR_SIZE is 512: it fits the u32 field.
        config[20..24].copy_from_slice(&512u32.to_le_bytes());
        Ok(Self {
            disk: Disk::new(file, read_only, capacity, id),
            config,
            queue: None,
        })
    }

    /// Opens `path` (read-only or read-write) and builds the device on it.
    pub fn open(path: &Path, read_only: bool, serial: &str) -> Result<Self, BlockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| BlockError::Open {
                path: path.to_owned(),
                source,
            })?;
        Self::new(file, read_only, serial)
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.disk.capacity()
    }

    /// Whether the disk refuses writes.
    pub fn read_only(&self) -> bool {
        self.disk.read_only()
    }

    /// Handles every available request; returns whether used buffers were added.
    pub fn process_queue(&mut self, mem: &GuestMemoryMmap) -> bool {
        let Some(queue) = self.queue.as_mut() else {
            return false;
        };
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = match Request::parse(chain, mem) {
                Ok(req) => {
                    let (status, written) = match self.disk.execute(&req, mem) {
                        Ok(written) => (VIRTIO_BLK_S_OK, written),
                        Err(ExecuteError::Unsupported(t)) => {
                            debug!("virtio-blk: unsupported request type {t}");
                            (VIRTIO_BLK_S_UNSUPP, 0)
                        }
                        Err(e) => {
                            log_execute_error(&e);
                            (VIRTIO_BLK_S_IOERR, 0)
                        }
                    };
                    if write_status(mem, req.status, status) {
                        written.saturating_add(1)
                    } else {
                        0
                    }
                }
                Err(bad) => {
                    guest_warn!("virtio-blk: {bad}: {}", bad.error);
                    match bad.status {
                        Some(s) if write_status(mem, s, VIRTIO_BLK_S_IOERR) => 1,
                        _ => 0,
                    }
                }
            };
            if let Err(e) = queue.add_used(mem, head, len) {
                guest_warn!("virtio-blk: cannot return descriptor {head}: {e}");
                break;
            }
            used = true;
        }
        used
    }
}

fn log_execute_error(e: &ExecuteError) {
    match e {
        // Already logged once by the disk.
        ExecuteError::ReadOnly => {}
        ExecuteError::Read(source) | ExecuteError::Write(source) | ExecuteError::Flush(source) => {
            guest_warn!("virtio-blk: {e}: {source}");
        }
        _ => debug!("virtio-blk: request failed: {e}"),
    }
}

/// Writes the status byte; false when it is not in guest memory.
fn write_status(mem: &GuestMemoryMmap, addr: GuestAddress, status: u32) -> bool {
    // The status values are 0..=2.
    let byte = u8::try_from(status).unwrap_or(u8::MAX);
    match mem.write_obj(byte, addr) {
        Ok(()) => true,
        Err(e) => {
            debug!("virtio-blk: cannot write the status byte: {e}");
            false
        }
    }
}

impl VirtioDevice for VirtioBlock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut features =
            1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_BLK_SIZE | 1 << VIRTIO_BLK_F_FLUSH;
        if self.disk.read_only() {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, _acked_features: u64, queues: Vec<Queue>) -> Result<(), ActivateError> {
        let queue = queues
            .into_iter()
            .next()
            .filter(QueueT::ready)
            .ok_or(ActivateError::QueueNotReady(0))?;
        self.queue = Some(queue);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16, mem: &GuestMemoryMmap) -> bool {
        match index {
            0 => self.process_queue(mem),
            _ => false,
        }
    }

    fn reset(&mut self) {
        self.queue = None;
    }
}

//! Executing parsed requests against the raw image file: the I/O half of virtio-blk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use log::warn;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use super::request::{Request, RequestType};
use super::{SECTOR_SIZE, SERIAL_LEN};

/// Data moves between the file and guest memory through a bounce buffer of this size, so that
/// no request, however large, makes us allocate more.
const BOUNCE_LEN: usize = 64 * 1024;

/// Why a request failed (answered with `VIRTIO_BLK_S_IOERR` or `_UNSUPP`).
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// An OUT request on a read-only disk.
    #[error("write to a read-only disk")]
    ReadOnly,
    /// The sectors lie (partly) past the end of the disk.
    #[error("sectors {sector}+{len_bytes} bytes beyond the capacity of {capacity} sectors")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Data length in bytes.
        len_bytes: u64,
        /// Disk capacity in sectors.
        capacity: u64,
    },
    /// Reading the image failed.
    #[error("read image")]
    Read(#[source] io::Error),
    /// Writing the image failed.
    #[error("write image")]
    Write(#[source] io::Error),
    /// fdatasync failed.
    #[error("flush image")]
    Flush(#[source] io::Error),
    /// A data buffer is not in guest memory.
    #[error("access guest buffer")]
    GuestMemory(#[source] GuestMemoryError),
    /// A request type we do not implement.
    #[error("unsupported request type {0}")]
    Unsupported(u32),
}

/// The backing image and what we know about it.
pub(crate) struct Disk {
    file: File,
    read_only: bool,
    capacity: u64,
    serial: [u8; SERIAL_LEN],
    warned_read_only: bool,
    bounce: Vec<u8>,
}

impl Disk {
    pub(crate) fn new(
        file: File,
        read_only: bool,
        capacity: u64,
        serial: [u8; SERIAL_LEN],
    ) -> Self {
        Self {
            file,
            read_only,
            capacity,
            serial,
            warned_read_only: false,
            bounce: Vec::new(),
        }
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Executes `req`; returns the number of bytes written into the guest's data buffers.
    pub(crate) fn execute<M: GuestMemory>(
        &mut self,
        req: &Request,
        mem: &M,
    ) -> Result<u32, ExecuteError> {
        match req.request_type {
            RequestType::In => {
                let offset = self.check_range(req)?;
                self.transfer(req, mem, offset, true)?;
                // Bounded by the chain: virtio-queue stops a chain at 2^32 bytes in total.
                Ok(u32::try_from(req.data_len()).unwrap_or(u32::MAX))
            }
            RequestType::Out => {
                if self.read_only {
                    if !self.warned_read_only {
                        warn!("virtio-blk: the guest writes to a read-only disk; refused (logged once)");
                        self.warned_read_only = true;
                    }
                    return Err(ExecuteError::ReadOnly);
                }
                let offset = self.check_range(req)?;
                self.transfer(req, mem, offset, false)?;
                Ok(0)
            }
            RequestType::Flush => {
                if !self.read_only {
                    self.file.sync_data().map_err(ExecuteError::Flush)?;
                }
                Ok(0)
            }
            RequestType::GetId => {
                let mut written = 0u32;
                let mut rest: &[u8] = &self.serial;
                for seg in &req.data {
                    let n = rest
                        .len()
                        .min(usize::try_from(seg.len).unwrap_or(usize::MAX));
                    let (chunk, tail) = rest.split_at(n);
                    mem.write_slice(chunk, seg.addr)
                        .map_err(ExecuteError::GuestMemory)?;
                    // n <= SERIAL_LEN (20).
                    written += u32::try_from(n).unwrap_or(0);
                    rest = tail;
                }
                Ok(written)
            }
            RequestType::Unsupported(t) => Err(ExecuteError::Unsupported(t)),
        }
    }

    /// The byte offset of `req`'s first sector, after checking that all of it lies on the disk.
    fn check_range(&self, req: &Request) -> Result<u64, ExecuteError> {
        let len_bytes = req.data_len();
        let out_of_range = || ExecuteError::OutOfRange {
            sector: req.sector,
            len_bytes,
            capacity: self.capacity,
        };
        let end = req
            .sector
            .checked_add(len_bytes / SECTOR_SIZE)
            .ok_or_else(out_of_range)?;
        if end > self.capacity {
            return Err(out_of_range());
        }
        // end <= capacity = file length / 512, so this cannot overflow.
        req.sector.checked_mul(SECTOR_SIZE).ok_or_else(out_of_range)
    }

    /// Moves the data of `req` between the file at `offset` and the guest buffers.
    fn transfer<M: GuestMemory>(
        &mut self,
        req: &Request,
        mem: &M,
        mut offset: u64,
        to_guest: bool,
    ) -> Result<(), ExecuteError> {
        if self.bounce.is_empty() {
            self.bounce = vec![0; BOUNCE_LEN];
        }
        for seg in &req.data {
            let mut done = 0u64;
            let seg_len = u64::from(seg.len);
            while done < seg_len {
                let n = usize::try_from(seg_len - done)
                    .unwrap_or(BOUNCE_LEN)
                    .min(BOUNCE_LEN);
                let addr = seg.addr.0.checked_add(done).map(GuestAddress).ok_or(
                    ExecuteError::GuestMemory(GuestMemoryError::InvalidGuestAddress(seg.addr)),
                )?;
                let buf = &mut self.bounce[..n];
                if to_guest {
                    self.file
                        .read_exact_at(buf, offset)
                        .map_err(ExecuteError::Read)?;
                    mem.write_slice(buf, addr)
                        .map_err(ExecuteError::GuestMemory)?;
                } else {
                    mem.read_slice(buf, addr)
                        .map_err(ExecuteError::GuestMemory)?;
                    self.file
                        .write_all_at(buf, offset)
                        .map_err(ExecuteError::Write)?;
                }
                // n <= BOUNCE_LEN; offsets stay below the checked end of the request.
                let n = n as u64;
                done += n;
                offset += n;
            }
        }
        Ok(())
    }
}

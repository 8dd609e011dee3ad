//! `image-builder farm-stick`: writes the farmer's settings ([`interfaces::farmer`], the file
//! `nullos-node`: the farm and optionally the notary) onto the release partition of a NullOS
//! stick, or of the `usb.img` before it is flashed. Everything else on the stick (the signed
//! release, the UKI) is untouched: stage 0 reads this file and passes it on to the node.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fatfs::{FileSystem, FsOptions};
use gpt::disk::LogicalBlockSize;
use gpt::GptConfig;
use interfaces::farmer::{FarmerSettings, FARMER_FILE};

use super::RELEASE_NAME;

/// Why the farmer's file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FarmStickError {
    /// The stick or image could not be opened, read or written.
    #[error("{}", path.display())]
    Io {
        /// The stick or image.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its partition table could not be read.
    #[error("{}: no GPT partition table", path.display())]
    Gpt {
        /// The stick or image.
        path: PathBuf,
        /// Why.
        #[source]
        source: gpt::GptError,
    },
    /// It has no release partition.
    #[error("{}: no partition named {RELEASE_NAME} (not a NullOS stick?)", path.display())]
    NoReleasePartition {
        /// The stick or image.
        path: PathBuf,
    },
}

/// A byte range of a file, as a device of its own (for fatfs).
struct Slice {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let read = self.file.read(&mut buf[..n])?;
        self.pos += read as u64;
        Ok(read)
    }
}

impl Write for Slice {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(std::io::Error::other("write past the end of the partition"));
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let written = self.file.write(&buf[..n])?;
        self.pos += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Slice {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos
            .filter(|p| *p <= self.len)
            .ok_or_else(|| std::io::Error::other("seek outside the partition"))?;
        Ok(self.pos)
    }
}

/// Writes `settings` as [`FARMER_FILE`] on the release partition of `stick` (a block device
/// or a `usb.img`), replacing an earlier one.
pub fn write(stick: &Path, settings: &FarmerSettings) -> Result<(), FarmStickError> {
    let io = |source| FarmStickError::Io {
        path: stick.to_owned(),
        source,
    };
    let table = GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open(stick)
        .map_err(|source| FarmStickError::Gpt {
            path: stick.to_owned(),
            source,
        })?;
    let release = table
        .partitions()
        .values()
        .find(|p| p.is_used() && p.name == RELEASE_NAME)
        .ok_or_else(|| FarmStickError::NoReleasePartition {
            path: stick.to_owned(),
        })?;
    let start = release.first_lba.saturating_mul(512);
    let len = (release.last_lba + 1)
        .saturating_sub(release.first_lba)
        .saturating_mul(512);
    drop(table);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(stick)
        .map_err(io)?;
    let slice = Slice {
        file: file.try_clone().map_err(io)?,
        start,
        len,
        pos: 0,
    };
    let fs = FileSystem::new(slice, FsOptions::new()).map_err(io)?;
    {
        let mut out = fs.root_dir().create_file(FARMER_FILE).map_err(io)?;
        out.truncate().map_err(io)?;
        out.write_all(settings.to_text().as_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
    }
    fs.unmount().map_err(io)?;
    file.sync_all().map_err(io)
}

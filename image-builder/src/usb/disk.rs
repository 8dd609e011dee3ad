//! A whole GPT disk in memory: protective MBR, primary and backup GPT (the `gpt` crate), and
//! the partitions' contents at 1 MiB boundaries.
//!
//! The `gpt` crate draws random GUIDs when asked to add a partition, so the partition table is
//! given to it whole (`update_partitions`) with GUIDs we chose, and the disk GUID is passed to
//! `create_from_device`: nothing random or clock-dependent remains.

use std::collections::BTreeMap;
use std::io::Cursor;

use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types::Type;
use gpt::GptConfig;
use uuid::Uuid;

use super::fat::SECTOR;

/// Partitions start at 1 MiB boundaries (what partitioning tools do; good for flash).
pub const ALIGNMENT: u64 = 1 << 20;
/// Largest disk image `read` accepts.
pub const MAX_DISK_BYTES: u64 = 1 << 34;

/// Why a disk could not be assembled or read.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A partition's size is not whole sectors.
    #[error("partition {name:?} is {size} bytes, not whole {SECTOR}-byte sectors")]
    PartitionSize {
        /// The partition's name.
        name: String,
        /// Its size.
        size: u64,
    },
    /// The disk would not fit in memory or in the tables.
    #[error("the disk image would be too large")]
    TooLarge,
    /// Writing the protective MBR.
    #[error("cannot write the protective MBR")]
    WriteMbr(#[source] gpt::mbr::MBRError),
    /// Writing the partition tables.
    #[error("cannot write the GPT")]
    WriteGpt(#[source] gpt::GptError),
    /// Reading the partition table.
    #[error("not a valid GPT disk")]
    ReadGpt(#[source] gpt::GptError),
}

/// One partition to lay out.
#[derive(Debug, Clone, Copy)]
pub struct PartitionSpec<'a> {
    /// GPT partition name (UTF-16 on disk, at most 36 characters).
    pub name: &'a str,
    /// Partition type.
    pub kind: &'a Type,
    /// Unique partition GUID.
    pub guid: Uuid,
    /// The partition's bytes (whole sectors); its size is theirs.
    pub contents: &'a [u8],
}

/// Lays out `partitions` in order from 1 MiB on and returns the disk image, whose size is a
/// whole number of MiB with the backup GPT in its last MiB.
pub fn build(disk_guid: Uuid, partitions: &[PartitionSpec<'_>]) -> Result<Vec<u8>, DiskError> {
    let mut table = BTreeMap::new();
    let mut next = ALIGNMENT;
    let mut placed = Vec::new();
    for (i, p) in partitions.iter().enumerate() {
        let size = p.contents.len() as u64;
        if size == 0 || size % SECTOR != 0 {
            return Err(DiskError::PartitionSize {
                name: p.name.to_owned(),
                size,
            });
        }
        let start = next;
        next = (start + size).div_ceil(ALIGNMENT) * ALIGNMENT;
        table.insert(
            u32::try_from(i + 1).map_err(|_| DiskError::TooLarge)?,
            Partition {
                part_type_guid: p.kind.clone(),
                part_guid: p.guid,
                first_lba: start / SECTOR,
                last_lba: (start + size) / SECTOR - 1,
                flags: 0,
                name: p.name.to_owned(),
            },
        );
        placed.push((start, p.contents));
    }
    let total = next + ALIGNMENT;
    if total > MAX_DISK_BYTES {
        return Err(DiskError::TooLarge);
    }
    let mut image = vec![0u8; usize::try_from(total).map_err(|_| DiskError::TooLarge)?];
    for (start, contents) in placed {
        let start = usize::try_from(start).map_err(|_| DiskError::TooLarge)?;
        image[start..start + contents.len()].copy_from_slice(contents);
    }

    let mut device = Cursor::new(image);
    let sectors = u32::try_from(total / SECTOR - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(sectors)
        .overwrite_lba0(&mut device)
        .map_err(DiskError::WriteMbr)?;
    let mut gpt = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(device, Some(disk_guid))
        .map_err(DiskError::WriteGpt)?;
    gpt.update_partitions(table).map_err(DiskError::WriteGpt)?;
    let device = gpt.write().map_err(DiskError::WriteGpt)?;
    Ok(device.into_inner())
}

/// A partition found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPartition {
    /// 1-based table index.
    pub index: u32,
    /// GPT name.
    pub name: String,
    /// Type GUID.
    pub kind: Uuid,
    /// Unique GUID.
    pub guid: Uuid,
    /// Byte offset of the first sector.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

impl FoundPartition {
    /// The partition's bytes in `image`, or `None` if the table points outside it.
    pub fn contents<'a>(&self, image: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.start).ok()?;
        let end = usize::try_from(self.start.checked_add(self.size)?).ok()?;
        image.get(start..end)
    }
}

/// The disk GUID and the partitions of a GPT disk image (both headers are checked by the
/// `gpt` crate, including their CRCs).
pub fn read(image: &[u8]) -> Result<(Uuid, Vec<FoundPartition>), DiskError> {
    if image.len() as u64 > MAX_DISK_BYTES {
        return Err(DiskError::TooLarge);
    }
    // `gpt` wants a writable device even to read; it gets a copy and is told not to write.
    let disk = GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(Cursor::new(image.to_vec()))
        .map_err(DiskError::ReadGpt)?;
    let mut found = Vec::new();
    for (&index, p) in disk.partitions() {
        if !p.is_used() {
            continue;
        }
        let start = p.first_lba.saturating_mul(SECTOR);
        let size = (p.last_lba + 1)
            .saturating_sub(p.first_lba)
            .saturating_mul(SECTOR);
        found.push(FoundPartition {
            index,
            name: p.name.clone(),
            kind: p.part_type_guid.guid,
            guid: p.part_guid,
            start,
            size,
        });
    }
    Ok((*disk.guid(), found))
}

#[cfg(test)]
mod tests {
    use gpt::partition_types::{BASIC, EFI};

    use super::*;

    #[test]
    fn partitions_are_aligned_and_read_back_with_their_guids() {
        let a = vec![0xaa; 3 * 512];
        let b = vec![0xbb; (1 << 20) + 512];
        let guid = |n: u8| Uuid::from_bytes([n; 16]);
        let parts = [
            PartitionSpec {
                name: "EFI System Partition",
                kind: &EFI,
                guid: guid(1),
                contents: &a,
            },
            PartitionSpec {
                name: "NULLOS-RELEASE",
                kind: &BASIC,
                guid: guid(2),
                contents: &b,
            },
        ];
        let image = build(guid(9), &parts).unwrap();
        assert_eq!(image, build(guid(9), &parts).unwrap());
        // 1 MiB lead-in, 1 MiB for a, 2 MiB for b, 1 MiB for the backup GPT.
        assert_eq!(image.len(), 5 << 20);
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        assert_eq!(image[450], 0xee, "protective MBR partition type");
        assert_eq!(&image[512..520], b"EFI PART");
        assert_eq!(&image[image.len() - 512..image.len() - 504], b"EFI PART");

        let (disk, found) = read(&image).unwrap();
        assert_eq!(disk, guid(9));
        assert_eq!(found.len(), 2);
        assert_eq!(
            (
                found[0].name.as_str(),
                found[0].guid,
                found[0].start,
                found[0].size
            ),
            ("EFI System Partition", guid(1), 1 << 20, 3 * 512)
        );
        assert_eq!(found[0].kind, EFI.guid);
        assert_eq!(
            (found[1].name.as_str(), found[1].start, found[1].size),
            ("NULLOS-RELEASE", 2 << 20, (1 << 20) + 512)
        );
        assert_eq!(found[1].contents(&image).unwrap(), &b[..]);

        // A corrupted primary header is noticed (the crate checks CRCs).
        let mut bad = image.clone();
        bad[512 + 24] ^= 1;
        let mut bad_both = bad.clone();
        let backup = bad_both.len() - 512 + 24;
        bad_both[backup] ^= 1;
        assert!(read(&bad_both).is_err());
    }

    #[test]
    fn odd_sizes_are_refused() {
        let odd = [0u8; 100];
        let err = build(
            Uuid::nil(),
            &[PartitionSpec {
                name: "x",
                kind: &BASIC,
                guid: Uuid::nil(),
                contents: &odd,
            }],
        )
        .unwrap_err();
        assert!(matches!(err, DiskError::PartitionSize { size: 100, .. }));
    }
}

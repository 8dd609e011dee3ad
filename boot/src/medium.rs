//! The release medium: the partition named `NULLOS-RELEASE` (GPT partition name), a FAT volume.
//!
//! The partition is found through sysfs: every block device's `uevent` names its device node
//! (`DEVNAME`) and, for GPT partitions, the partition name (`PARTNAME`). The whole partition is
//! read into memory once (its size is bounded), and the files are read from that copy with the
//! `fatfs` crate, so what is verified can never change underneath. Only the state file is
//! written back, through the block device.

use std::fs::{File, OpenOptions};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fatfs::{FatType, FileSystem, FsOptions};

use crate::verify::Source;

// The GPT partition name of the release partition.
pub use interfaces::labels::RELEASE_PARTITION;
/// Largest release partition read into memory.
pub const MAX_PARTITION_BYTES: u64 = 1 << 30;
/// Where block devices are listed.
pub const SYS_BLOCK: &str = "/sys/class/block";

/// Why the medium could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MediumError {
    /// The partition's size could not be read.
    #[error("size of {path}")]
    Size {
        /// The sysfs size file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The partition is larger than stage 0 reads.
    #[error("{device} is {size} bytes, more than the {MAX_PARTITION_BYTES} read")]
    TooLarge {
        /// The device node.
        device: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The device could not be opened, read or written.
    #[error("{device}")]
    Device {
        /// The device node.
        device: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The FAT volume could not be opened.
    #[error("FAT volume on {device}")]
    Fat {
        /// The device node.
        device: PathBuf,
        /// The `fatfs` error.
        #[source]
        source: std::io::Error,
    },
}

/// The device node and partition name a block device's `uevent` text gives, if it names both.
pub fn uevent_partition(text: &str) -> Option<(String, String)> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some((field("DEVNAME")?, field("PARTNAME")?))
}

/// The device node of the block device whose partition name is `name`, under `sys_block`.
/// With several, the first in name order.
pub fn find_partition(sys_block: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    entries.into_iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("uevent")).ok()?;
        let (dev, part) = uevent_partition(&text)?;
        (part == name).then(|| Path::new("/dev").join(dev))
    })
}

/// A release partition read into memory.
pub struct Medium {
    device: PathBuf,
    fs: FileSystem<Cursor<Vec<u8>>>,
}

impl std::fmt::Debug for Medium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Medium")
            .field("device", &self.device)
            .finish()
    }
}

impl Medium {
    /// Reads the whole partition `device` (at most [`MAX_PARTITION_BYTES`]).
    pub fn read(device: &Path) -> Result<Medium, MediumError> {
        let dev_err = |source| MediumError::Device {
            device: device.to_owned(),
            source,
        };
        let mut file = File::open(device).map_err(dev_err)?;
        let size = file.seek(SeekFrom::End(0)).map_err(dev_err)?;
        if size > MAX_PARTITION_BYTES {
            return Err(MediumError::TooLarge {
                device: device.to_owned(),
                size,
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(dev_err)?;
        let mut bytes = Vec::new();
        file.take(size).read_to_end(&mut bytes).map_err(dev_err)?;
        Medium::from_bytes(device, bytes)
    }

    /// A medium over a volume image already in memory (`device` names it in messages).
    pub fn from_bytes(device: &Path, bytes: Vec<u8>) -> Result<Medium, MediumError> {
        let fat_err = |source| MediumError::Fat {
            device: device.to_owned(),
            source,
        };
        let root_cluster = fat32_root_cluster(&bytes);
        let fs = FileSystem::new(Cursor::new(bytes), FsOptions::new()).map_err(fat_err)?;
        // fatfs 0.3.6 turns a cluster into a sector with an unchecked `cluster - 2`
        // (`FileSystem::sector_from_cluster`): a FAT32 root directory at cluster 0 or 1 overflows
        // there on the first read of the root (a panic where overflow checks are on, a read of
        // other bytes where not). Refused here, before fatfs reads it.
        if fs.fat_type() == FatType::Fat32 && root_cluster < 2 {
            return Err(fat_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "FAT32 root directory at cluster {root_cluster} (data clusters start at 2)"
                ),
            )));
        }
        Ok(Medium {
            device: device.to_owned(),
            fs,
        })
    }

    /// The device node.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// Whether `name` is a file in the root folder.
    pub fn exists(&mut self, name: &str) -> bool {
        self.file_len(name).is_ok()
    }

    /// The length of the root folder's file `name`.
    pub fn file_len(&mut self, name: &str) -> Result<u64, String> {
        guarded(|| self.find_len(name))
    }
}

/// Runs a call into fatfs, turning a panic inside it into a refusal of the volume. fatfs 0.3.6
/// has unchecked cluster arithmetic (see [`Medium::from_bytes`]): the root directory's case is
/// refused before fatfs sees it, but a file's first cluster or a FAT entry of 1 cannot be seen
/// through its API. Release builds (no overflow checks) wrap there and read other bytes of the
/// in-memory volume, which the release's digests then refuse; builds with overflow checks (tests,
/// fuzzing) panic, and this keeps that panic out of PID 1's path.
fn guarded<R>(call: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or_else(|_| Err("the FAT reader failed on a malformed volume".to_owned()))
}

impl Source for Medium {
    fn len(&mut self, name: &str, _max: u64) -> Result<u64, String> {
        self.file_len(name)
    }

    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        let len = self.file_len(name)?;
        if len > max {
            return Err(format!("{len} bytes, more than the {max} accepted"));
        }
        guarded(|| self.read_whole(name, len, max))
    }

    /// The file straight from the in-memory volume into the caller's buffer (no copy of its own).
    fn open(&mut self, name: &str, max: u64) -> Result<Box<dyn Read + '_>, String> {
        let len = self.file_len(name)?;
        if len > max {
            return Err(format!("{len} bytes, more than the {max} accepted"));
        }
        let file = guarded(|| {
            self.fs
                .root_dir()
                .open_file(name)
                .map_err(|e| format!("cannot open: {e}"))
        })?;
        Ok(Box::new(Guarded(file.take(max.saturating_add(1)))))
    }
}

/// A reader inside fatfs whose panics (see [`guarded`]) become read errors.
struct Guarded<R>(R);

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.read(buf))).unwrap_or_else(
            |_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the FAT reader failed on a malformed volume",
                ))
            },
        )
    }
}

impl Medium {
    fn find_len(&mut self, name: &str) -> Result<u64, String> {
        for entry in self.fs.root_dir().iter() {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", self.device.display()))?;
            if entry.is_file() && entry.file_name().eq_ignore_ascii_case(name) {
                return Ok(entry.len());
            }
        }
        Err(format!(
            "missing from partition {RELEASE_PARTITION} ({})",
            self.device.display()
        ))
    }

    fn read_whole(&mut self, name: &str, len: u64, max: u64) -> Result<Vec<u8>, String> {
        let mut file = self
            .fs
            .root_dir()
            .open_file(name)
            .map_err(|e| format!("cannot open: {e}"))?;
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        (&mut file)
            .take(max)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read: {e}"))?;
        Ok(bytes)
    }
}

/// The FAT32 boot sector's root directory cluster (`BPB_RootClus`, bytes 44..48); 0 when the
/// volume is shorter (fatfs refuses such a volume anyway).
fn fat32_root_cluster(volume: &[u8]) -> u32 {
    volume
        .get(44..48)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// Writes `text` as the root file `name` of the FAT volume on `device` (through the block
/// device, then fsync).
pub fn write_file(device: &Path, name: &str, text: &[u8]) -> Result<(), MediumError> {
    let dev_err = |source| MediumError::Device {
        device: device.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(dev_err)?;
    let fs = FileSystem::new(&file, FsOptions::new()).map_err(|source| MediumError::Fat {
        device: device.to_owned(),
        source,
    })?;
    {
        let mut out = fs.root_dir().create_file(name).map_err(dev_err)?;
        out.truncate().map_err(dev_err)?;
        out.write_all(text).map_err(dev_err)?;
        out.flush().map_err(dev_err)?;
    }
    fs.unmount().map_err(dev_err)?;
    file.sync_all().map_err(dev_err)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn uevent_gives_device_and_partition_name() {
        let text = "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nDISKSEQ=9\nPARTN=2\nPARTNAME=NULLOS-RELEASE\n";
        assert_eq!(
            uevent_partition(text),
            Some(("sda2".into(), "NULLOS-RELEASE".into()))
        );
        assert_eq!(
            uevent_partition("MAJOR=8\nDEVNAME=sda\nDEVTYPE=disk\n"),
            None
        );
        // PARTNAMEX is not PARTNAME.
        assert_eq!(uevent_partition("DEVNAME=sda1\nPARTNAMEX=a\n"), None);
    }

    #[test]
    fn finds_the_partition_by_name_in_a_sysfs_tree() {
        let sys = tempfile::tempdir().unwrap();
        for (dir, uevent) in [
            ("sda", "DEVNAME=sda\nDEVTYPE=disk\n"),
            ("sda1", "DEVNAME=sda1\nPARTNAME=EFI System Partition\n"),
            ("sda2", "DEVNAME=sda2\nPARTNAME=NULLOS-RELEASE\n"),
        ] {
            std::fs::create_dir(sys.path().join(dir)).unwrap();
            std::fs::write(sys.path().join(dir).join("uevent"), uevent).unwrap();
        }
        assert_eq!(
            find_partition(sys.path(), RELEASE_PARTITION),
            Some(PathBuf::from("/dev/sda2"))
        );
        assert_eq!(find_partition(sys.path(), "OTHER"), None);
    }

    /// A FAT volume image holding `files` in its root folder.
    pub(crate) fn volume(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut disk = Cursor::new(vec![0u8; 4 << 20]);
        fatfs::format_volume(&mut disk, fatfs::FormatVolumeOptions::new()).unwrap();
        {
            let fs = FileSystem::new(&mut disk, FsOptions::new()).unwrap();
            for (name, bytes) in files {
                fs.root_dir()
                    .create_file(name)
                    .unwrap()
                    .write_all(bytes)
                    .unwrap();
            }
        }
        disk.into_inner()
    }

    #[test]
    fn a_fat32_root_directory_below_cluster_2_is_refused_before_fatfs_reads_it() {
        let mut disk = Cursor::new(vec![0u8; 40 << 20]);
        let options = fatfs::FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .bytes_per_cluster(512);
        fatfs::format_volume(&mut disk, options).unwrap();
        let good = disk.into_inner();
        assert_eq!(fat32_root_cluster(&good), 2);
        let mut medium = Medium::from_bytes(Path::new("/dev/good"), good.clone()).unwrap();
        assert!(medium.file_len("kernel").unwrap_err().contains("missing"));
        for cluster in [0u32, 1] {
            let mut bad = good.clone();
            bad[44..48].copy_from_slice(&cluster.to_le_bytes());
            let err = Medium::from_bytes(Path::new("/dev/bad"), bad).unwrap_err();
            let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
            assert_eq!(
                chain,
                format!(
                    "FAT volume on /dev/bad: FAT32 root directory at cluster {cluster} (data \
                     clusters start at 2)"
                )
            );
        }
    }

    #[test]
    fn a_file_at_cluster_1_is_never_read_as_its_content_and_never_panics() {
        let mut bytes = volume(&[("kernel", b"0123456789")]);
        let entry = bytes.windows(11).position(|w| w == b"KERNEL     ").unwrap();
        // DIR_FstClusLO: cluster 1, below the first data cluster.
        bytes[entry + 26..entry + 28].copy_from_slice(&1u16.to_le_bytes());
        let mut medium = Medium::from_bytes(Path::new("/dev/bad"), bytes).unwrap();
        // With overflow checks fatfs panics inside (caught: an error); without, it reads other
        // bytes. Either way not the file's content, and the caller goes on.
        match medium.read("kernel", 10) {
            Ok(read) => assert_ne!(read, b"0123456789"),
            Err(e) => assert_eq!(e, "the FAT reader failed on a malformed volume"),
        }
        // The same through the stream stage 0 hashes as it reads.
        let mut streamed = Vec::new();
        match medium
            .open("kernel", 10)
            .map(|mut f| f.read_to_end(&mut streamed))
        {
            Ok(Ok(_)) => assert_ne!(streamed, b"0123456789"),
            Ok(Err(e)) => assert_eq!(e.to_string(), "the FAT reader failed on a malformed volume"),
            Err(e) => assert_eq!(e, "the FAT reader failed on a malformed volume"),
        }
    }

    #[test]
    fn reads_files_bounded_and_writes_the_state_file_back() {
        let image = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(image.path(), volume(&[("kernel", b"0123456789")])).unwrap();
        let mut medium = Medium::read(image.path()).unwrap();
        assert_eq!(medium.file_len("kernel"), Ok(10));
        assert_eq!(medium.read("KERNEL", 10).unwrap(), b"0123456789");
        assert!(medium.read("kernel", 9).unwrap_err().contains("more than"));
        let mut streamed = Vec::new();
        medium
            .open("kernel", 10)
            .unwrap()
            .read_to_end(&mut streamed)
            .unwrap();
        assert_eq!(streamed, b"0123456789");
        assert!(medium
            .open("kernel", 9)
            .err()
            .unwrap()
            .contains("more than"));
        assert!(medium.open("initrd", 9).err().unwrap().contains("missing"));
        assert!(medium.file_len("initrd").unwrap_err().contains("missing"));
        assert!(!medium.exists("nullos-state"));

        write_file(image.path(), "nullos-state", b"highest_version = 4\n").unwrap();
        write_file(image.path(), "nullos-state", b"highest_version = 5\n").unwrap();
        let mut medium = Medium::read(image.path()).unwrap();
        assert_eq!(
            medium.read("nullos-state", 100).unwrap(),
            b"highest_version = 5\n"
        );
        assert_eq!(medium.read("kernel", 10).unwrap(), b"0123456789");
    }
}

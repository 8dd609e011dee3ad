//! `image-builder farm-stick`: writes the farmer's settings ([`interfaces::farmer`], the file
//! `nullos-node`: the farm and optionally the notary and the release channel) onto the release partition of a NullOS
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

#[cfg(test)]
mod tests {
    use gpt::partition_types::{BASIC, EFI};
    use uuid::Uuid;

    use super::*;
    use crate::usb::{disk, fat};

    /// A stick laid out as image-builder lays out usb.img: an ESP, then the release partition
    /// holding `files`.
    fn stick(files: &[(&str, &[u8])]) -> Vec<u8> {
        let volume = |label, fat32| fat::Volume {
            size: 34 << 20,
            fat32,
            label,
            volume_id: 7,
        };
        let esp = fat::build(&volume("ESP", true), &[]).unwrap();
        let release = fat::build(&volume("NULLOS-REL", true), files).unwrap();
        disk::build(
            Uuid::from_u128(1),
            &[
                disk::PartitionSpec {
                    name: "EFI",
                    kind: &EFI,
                    guid: Uuid::from_u128(2),
                    contents: &esp,
                },
                disk::PartitionSpec {
                    name: RELEASE_NAME,
                    kind: &BASIC,
                    guid: Uuid::from_u128(3),
                    contents: &release,
                },
            ],
        )
        .unwrap()
    }

    fn release_files(image: &[u8]) -> Vec<(String, Vec<u8>)> {
        let (_, parts) = disk::read(image).unwrap();
        let release = parts.iter().find(|p| p.name == RELEASE_NAME).unwrap();
        fat::read_files(release.contents(image).unwrap(), 1 << 20)
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.data))
            .collect()
    }

    #[test]
    fn writes_the_farmers_file_beside_the_release_and_replaces_an_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usb.img");
        std::fs::write(&path, stick(&[("release.manifest", b"signed bytes")])).unwrap();
        let first = FarmerSettings {
            farm: Some("ab".repeat(32)),
            notary: Some("http://10.9.0.1:7878".into()),
            channel: Some("http://10.9.0.1:8080/release".into()),
        };
        write(&path, &first).unwrap();
        let second = FarmerSettings {
            farm: Some("cd".repeat(32)),
            notary: None,
            channel: None,
        };
        write(&path, &second).unwrap();
        let files = release_files(&std::fs::read(&path).unwrap());
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["release.manifest", FARMER_FILE]);
        assert_eq!(files[0].1, b"signed bytes", "the release is untouched");
        assert_eq!(FarmerSettings::parse(&files[1].1), Ok(second));
    }

    #[test]
    fn a_disk_without_a_release_partition_is_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.img");
        let esp = fat::build(
            &fat::Volume {
                size: 34 << 20,
                fat32: true,
                label: "ESP",
                volume_id: 7,
            },
            &[],
        )
        .unwrap();
        let image = disk::build(
            Uuid::from_u128(1),
            &[disk::PartitionSpec {
                name: "EFI",
                kind: &EFI,
                guid: Uuid::from_u128(2),
                contents: &esp,
            }],
        )
        .unwrap();
        std::fs::write(&path, image).unwrap();
        let err = write(&path, &FarmerSettings::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: no partition named NULLOS-RELEASE (not a NullOS stick?)",
                path.display()
            )
        );
    }
}

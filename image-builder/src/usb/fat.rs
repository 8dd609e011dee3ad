//! FAT volumes in memory (the `fatfs` crate), with every timestamp fixed and the volume id given.

use std::io::{Cursor, Read, Write};

use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};

/// Bytes per sector of every volume and of the disk.
pub const SECTOR: u64 = 512;

/// Why a FAT volume could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// Formatting the volume.
    #[error("cannot format a {size}-byte FAT volume")]
    Format {
        /// Volume size in bytes.
        size: u64,
        /// The `fatfs` error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file or folder into it.
    #[error("cannot write {path} into the FAT volume")]
    Write {
        /// Path inside the volume.
        path: String,
        /// The `fatfs` error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the volume.
    #[error("cannot read the FAT volume")]
    Read(#[source] std::io::Error),
}

/// Every FAT timestamp is the FAT epoch, 1980-01-01 00:00:00. FAT has no way to say "no time",
/// and its range starts in 1980, so neither the build machine's clock nor `SOURCE_DATE_EPOCH`
/// (0 by default, before FAT's range) can be written faithfully; one fixed value keeps the
/// volume a function of its files.
#[derive(Debug)]
struct FatEpoch;

impl TimeProvider for FatEpoch {
    fn get_current_date(&self) -> Date {
        FAT_EPOCH_DATE
    }

    fn get_current_date_time(&self) -> DateTime {
        DateTime {
            date: FAT_EPOCH_DATE,
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

const FAT_EPOCH_DATE: Date = Date {
    year: 1980,
    month: 1,
    day: 1,
};

static FAT_EPOCH: FatEpoch = FatEpoch;

fn options() -> FsOptions {
    FsOptions::new()
        .time_provider(&FAT_EPOCH)
        .update_accessed_date(false)
}

/// What to format.
#[derive(Debug, Clone, Copy)]
pub struct Volume<'a> {
    /// Size in bytes (a multiple of [`SECTOR`]).
    pub size: u64,
    /// Force FAT32 (what firmware expects of an EFI System Partition); otherwise `fatfs` picks
    /// FAT12/16/32 by size.
    pub fat32: bool,
    /// Volume label, at most 11 ASCII characters.
    pub label: &'a str,
    /// Volume serial number.
    pub volume_id: u32,
}

/// Formats `volume` and writes `files` (paths with `/`, folders created as needed, in the
/// given order) into it.
pub fn build(volume: &Volume<'_>, files: &[(&str, &[u8])]) -> Result<Vec<u8>, FatError> {
    let size = usize::try_from(volume.size).map_err(|_| FatError::Format {
        size: volume.size,
        source: std::io::Error::other("too large"),
    })?;
    let mut disk = Cursor::new(vec![0u8; size]);
    let mut label = [b' '; 11];
    for (dst, src) in label.iter_mut().zip(volume.label.bytes()) {
        *dst = src.to_ascii_uppercase();
    }
    let mut format = FormatVolumeOptions::new()
        .volume_id(volume.volume_id)
        .volume_label(label);
    if volume.fat32 {
        format = format.fat_type(FatType::Fat32).bytes_per_cluster(512);
    }
    fatfs::format_volume(&mut disk, format).map_err(|source| FatError::Format {
        size: volume.size,
        source,
    })?;
    disk.set_position(0);
    {
        let fs = FileSystem::new(&mut disk, options()).map_err(|source| FatError::Format {
            size: volume.size,
            source,
        })?;
        // fatfs falls back to FAT12/16 where FAT32 does not fit instead of failing.
        if volume.fat32 && fs.fat_type() != FatType::Fat32 {
            return Err(FatError::Format {
                size: volume.size,
                source: std::io::Error::other("too small for FAT32 (65525 clusters)"),
            });
        }
        for (path, bytes) in files {
            let write_err = |source| FatError::Write {
                path: (*path).to_owned(),
                source,
            };
            let mut dir = fs.root_dir();
            let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let name = parts.pop().unwrap_or_default();
            for part in parts {
                dir = dir.create_dir(part).map_err(write_err)?;
            }
            let mut file = dir.create_file(name).map_err(write_err)?;
            file.truncate().map_err(write_err)?;
            file.write_all(bytes).map_err(write_err)?;
            file.flush().map_err(write_err)?;
        }
        fs.unmount().map_err(|source| FatError::Write {
            path: "/".to_owned(),
            source,
        })?;
    }
    Ok(disk.into_inner())
}

/// One file found in a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    /// Path from the root, `/`-separated, without a leading `/`.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
}

/// Every regular file in the volume, depth first in directory order; at most `max_bytes` of
/// file data in total are read.
pub fn read_files(volume: &[u8], max_bytes: u64) -> Result<Vec<FoundFile>, FatError> {
    // fatfs wants a writable device even to read; the copy keeps the caller's bytes untouched.
    let fs = FileSystem::new(Cursor::new(volume.to_vec()), options()).map_err(FatError::Read)?;
    let mut out = Vec::new();
    let mut budget = max_bytes;
    let mut stack = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = stack.pop() {
        let mut subdirs = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(FatError::Read)?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if entry.is_dir() {
                subdirs.push((format!("{path}/"), entry.to_dir()));
            } else if entry.is_file() {
                let len = entry.len();
                if len > budget {
                    return Err(FatError::Read(std::io::Error::other(format!(
                        "{path}: more than {max_bytes} bytes of files"
                    ))));
                }
                budget -= len;
                let mut data = Vec::new();
                entry
                    .to_file()
                    .read_to_end(&mut data)
                    .map_err(FatError::Read)?;
                out.push(FoundFile { path, data });
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// The volume's FAT type, serial number and label (from the boot sector).
pub fn describe(volume: &[u8]) -> Result<(FatType, u32, String), FatError> {
    // fatfs wants a writable device even to read; the copy keeps the caller's bytes untouched.
    let fs = FileSystem::new(Cursor::new(volume.to_vec()), options()).map_err(FatError::Read)?;
    Ok((
        fs.fat_type(),
        fs.volume_id(),
        fs.volume_label().trim().to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(fat32: bool, size: u64) -> Volume<'static> {
        Volume {
            size,
            fat32,
            label: "test-vol",
            volume_id: 0x1234_abcd,
        }
    }

    #[test]
    fn files_round_trip_and_the_volume_is_a_function_of_its_inputs() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let files: [(&str, &[u8]); 3] = [
            ("EFI/BOOT/BOOTX64.EFI", &big),
            ("release.manifest", b"signed"),
            ("cmdline", b"console=ttyS0"),
        ];
        let a = build(&volume(true, 40 << 20), &files).unwrap();
        let b = build(&volume(true, 40 << 20), &files).unwrap();
        assert!(a == b, "two volumes from the same inputs differ");
        let (fat, id, label) = describe(&a).unwrap();
        assert_eq!(fat, FatType::Fat32);
        assert_eq!(id, 0x1234_abcd);
        assert_eq!(label, "TEST-VOL");
        let found = read_files(&a, u64::MAX).unwrap();
        let got: Vec<(&str, &[u8])> = found
            .iter()
            .map(|f| (f.path.as_str(), f.data.as_slice()))
            .collect();
        let mut want = files.to_vec();
        want.sort_by_key(|(p, _)| p.to_string());
        let mut got_sorted = got.clone();
        got_sorted.sort_by_key(|(p, _)| p.to_string());
        assert_eq!(got_sorted, want);
        // Another serial number changes only the boot sector(s).
        let mut other = volume(true, 40 << 20);
        other.volume_id = 7;
        assert_ne!(build(&other, &files).unwrap(), a);
    }

    #[test]
    fn small_volumes_pick_their_own_fat_type_and_budgets_are_enforced() {
        let v = build(&volume(false, 4 << 20), &[("kernel", &[1u8; 5000])]).unwrap();
        assert_ne!(describe(&v).unwrap().0, FatType::Fat32);
        assert!(read_files(&v, 4999).is_err());
        assert_eq!(read_files(&v, 5000).unwrap().len(), 1);
        assert!(read_files(&[0u8; 1024], 10).is_err());
        // FAT32 needs at least 65525 clusters: a tiny volume cannot be FAT32.
        assert!(matches!(
            build(&volume(true, 4 << 20), &[]),
            Err(FatError::Format { .. })
        ));
    }
}

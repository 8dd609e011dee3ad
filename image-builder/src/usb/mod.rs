//! `usb.img`: a `dd`-able GPT disk that boots on UEFI machines.
//!
//! Layout (every identifier derived from the content, every timestamp fixed):
//! - partition 1, "EFI System Partition" (FAT32): `EFI/BOOT/BOOTX64.EFI`, a Unified Kernel
//!   Image ([`uki`]): systemd's EFI stub with `.osrel`, `.cmdline`, `.initrd` and `.linux`;
//!   firmware boots it as the removable-media default without any boot entry;
//! - partition 2, "NULLOS-RELEASE" (FAT32, basic-data type so any OS can read it): the signed
//!   release, `release.manifest`, `kernel`, `initrd`, `cmdline`, for stage 0 to verify offline.
//!
//! The UKI boots the boot image (stage 0, [`crate::stage0`]), which verifies the release on
//! partition 2 and kexecs it; a config without a `[stage0]` section puts the node kernel and
//! initramfs in the UKI instead (booted unverified).
//!
//! With a `[secure_boot]` key the UKI is signed ([`sign`]) before it goes on the ESP.
//!
//! Submodules: [`uki`] (PE sections), [`sign`] (Authenticode), [`fat`] (FAT volumes),
//! [`disk`] (GPT).

pub mod disk;
pub mod farmer;
pub mod fat;
pub mod sign;
pub mod uki;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gpt::partition_types::{BASIC, EFI};
use uuid::Uuid;

use crate::release::{CMDLINE_FILE, INITRD_FILE, KERNEL_FILE, MANIFEST_FILE};

/// The image's file name in the output folder.
pub const USB_FILE: &str = "usb.img";
/// Debian's systemd EFI stub (package `systemd-boot-efi`).
pub const DEFAULT_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// Where the UKI goes on the ESP: the removable-media boot path for x86-64.
pub const UKI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// GPT name of the EFI System Partition.
pub const ESP_NAME: &str = "EFI System Partition";
// GPT name of the partition holding the signed release (stage 0 looks for it by this name).
pub use interfaces::labels::RELEASE_PARTITION as RELEASE_NAME;
/// Smallest partition: FAT32 needs at least 65525 clusters (of 512 bytes here).
const MIN_PARTITION: u64 = 36 << 20;
/// Largest file `describe` reads.
const MAX_DESCRIBE_BYTES: u64 = disk::MAX_DISK_BYTES;

/// Why the USB image could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    /// The EFI stub is not there.
    #[error("EFI stub {path} not found: install the systemd-boot-efi package (`make deps`)")]
    MissingStub {
        /// The configured stub.
        path: PathBuf,
    },
    /// The EFI stub could not be read.
    #[error("cannot read EFI stub {path}")]
    ReadStub {
        /// The configured stub.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Making the UKI.
    #[error("unified kernel image")]
    Uki(#[from] uki::UkiError),
    /// Signing the UKI for Secure Boot.
    #[error("signing the UKI")]
    Sign(#[from] sign::SignError),
    /// Making or reading a FAT volume.
    #[error("FAT volume")]
    Fat(#[from] fat::FatError),
    /// Making or reading the GPT disk.
    #[error("GPT disk")]
    Disk(#[from] disk::DiskError),
}

/// A kernel, initramfs and command line that boot together.
#[derive(Debug, Clone, Copy)]
pub struct BootTriple<'a> {
    /// bzImage.
    pub kernel: &'a [u8],
    /// Compressed initramfs.
    pub initrd: &'a [u8],
    /// Kernel command line.
    pub cmdline: &'a [u8],
}

/// What goes on the stick.
#[derive(Debug, Clone, Copy)]
pub struct UsbContents<'a> {
    /// The EFI stub (`linuxx64.efi.stub`).
    pub stub: &'a [u8],
    /// What the UKI boots: the boot image (stage 0), or the node itself for a config without
    /// a `[stage0]` section.
    pub uki: BootTriple<'a>,
    /// The signed `release.manifest`.
    pub manifest: &'a [u8],
    /// The release's bzImage.
    pub kernel: &'a [u8],
    /// The release's compressed initramfs.
    pub initrd: &'a [u8],
    /// The release's kernel command line.
    pub cmdline: &'a [u8],
    /// Release version (for `.osrel`).
    pub version: u64,
    /// Profile name (for `.osrel`).
    pub profile: &'a str,
}

/// Reads the EFI stub; a missing file names the package that provides it.
pub fn read_stub(path: &Path) -> Result<Vec<u8>, UsbError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => UsbError::MissingStub {
            path: path.to_owned(),
        },
        _ => UsbError::ReadStub {
            path: path.to_owned(),
            source,
        },
    })
}

/// The `.osrel` section: os-release(5) lines boot menus show.
pub fn os_release(version: u64, profile: &str) -> String {
    format!(
        "NAME=\"NullOS\"\nID=nullos\nVERSION_ID={version}\nVARIANT_ID={profile}\n\
         PRETTY_NAME=\"NullOS {version} ({profile})\"\n"
    )
}

/// The Unified Kernel Image for `contents`.
pub fn build_uki(contents: &UsbContents<'_>) -> Result<Vec<u8>, UsbError> {
    let osrel = os_release(contents.version, contents.profile);
    // `.linux` last, as ukify does: nothing else sits after the kernel in memory.
    Ok(uki::build(
        contents.stub,
        &[
            uki::Section {
                name: ".osrel",
                data: osrel.as_bytes(),
            },
            uki::Section {
                name: ".cmdline",
                data: contents.uki.cmdline,
            },
            uki::Section {
                name: ".initrd",
                data: contents.uki.initrd,
            },
            uki::Section {
                name: ".linux",
                data: contents.uki.kernel,
            },
        ],
    )?)
}

/// The whole disk image, with an unsigned UKI.
pub fn build_image(contents: &UsbContents<'_>) -> Result<Vec<u8>, UsbError> {
    build_image_with_uki(contents, &build_uki(contents)?)
}

/// The whole disk image with `uki` (made by [`build_uki`] from `contents`, then signed or not)
/// as `EFI/BOOT/BOOTX64.EFI`.
pub fn build_image_with_uki(contents: &UsbContents<'_>, uki: &[u8]) -> Result<Vec<u8>, UsbError> {
    let ids = Identifiers::derive(contents);
    let esp = fat::build(
        &fat::Volume {
            size: partition_size(uki.len() as u64),
            fat32: true,
            label: "NULLOS-EFI",
            volume_id: ids.esp_volume,
        },
        &[(UKI_PATH, uki)],
    )?;
    let release_files: [(&str, &[u8]); 4] = [
        (MANIFEST_FILE, contents.manifest),
        (KERNEL_FILE, contents.kernel),
        (INITRD_FILE, contents.initrd),
        (CMDLINE_FILE, contents.cmdline),
    ];
    let release_bytes = release_files.iter().map(|(_, b)| b.len() as u64).sum();
    let release = fat::build(
        &fat::Volume {
            size: partition_size(release_bytes),
            fat32: true,
            label: "NULLOS-REL",
            volume_id: ids.release_volume,
        },
        &release_files,
    )?;
    Ok(disk::build(
        ids.disk,
        &[
            disk::PartitionSpec {
                name: ESP_NAME,
                kind: &EFI,
                guid: ids.esp,
                contents: &esp,
            },
            disk::PartitionSpec {
                name: RELEASE_NAME,
                kind: &BASIC,
                guid: ids.release,
                contents: &release,
            },
        ],
    )?)
}

/// A partition for `content` bytes of files: FAT's tables (under 2 % with 512-byte clusters)
/// and cluster rounding fit in the 1/16 plus 1 MiB of slack; whole MiB; FAT32's minimum.
fn partition_size(content: u64) -> u64 {
    let wanted = content + content / 16 + (1 << 20);
    wanted.div_ceil(1 << 20).max(MIN_PARTITION >> 20) << 20
}

/// The disk's GUIDs and FAT serial numbers, derived from the signed manifest (which pins the
/// kernel, initramfs and command line) and the stub: the same release makes the same stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identifiers {
    disk: Uuid,
    esp: Uuid,
    release: Uuid,
    esp_volume: u32,
    release_volume: u32,
}

impl Identifiers {
    fn derive(contents: &UsbContents<'_>) -> Identifiers {
        let mut seed = blake3::Hasher::new_derive_key("NullOS usb.img identifiers v1");
        seed.update(&(contents.manifest.len() as u64).to_le_bytes());
        seed.update(contents.manifest);
        seed.update(contents.stub);
        for part in [
            contents.uki.kernel,
            contents.uki.initrd,
            contents.uki.cmdline,
        ] {
            seed.update(&(part.len() as u64).to_le_bytes());
            seed.update(part);
        }
        let seed = *seed.finalize().as_bytes();
        let bytes = |label: &str| *blake3::keyed_hash(&seed, label.as_bytes()).as_bytes();
        // Random-format (version 4) GUIDs whose "random" bits are the hash.
        let guid = |label: &str| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes(label)[..16]);
            uuid::Builder::from_random_bytes(b).into_uuid()
        };
        let serial = |label: &str| {
            let b = bytes(label);
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        Identifiers {
            disk: guid("disk"),
            esp: guid("esp"),
            release: guid("release"),
            esp_volume: serial("esp-fat"),
            release_volume: serial("release-fat"),
        }
    }
}

/// Whether `bytes` look like a GPT disk (a header signature at LBA 1).
pub fn is_gpt_disk(bytes: &[u8]) -> bool {
    bytes.get(512..520) == Some(b"EFI PART".as_slice())
}

/// A listing of a USB image: partitions, their files, and the UKI's sections.
pub fn describe(image: &[u8]) -> Result<String, UsbError> {
    let (guid, partitions) = disk::read(image)?;
    let mut out = format!("GPT disk {guid}, {} bytes\n", image.len());
    for p in partitions {
        let _ = writeln!(
            out,
            "partition {} {:?} type {} guid {} at {} size {}",
            p.index, p.name, p.kind, p.guid, p.start, p.size
        );
        let Some(volume) = p.contents(image) else {
            let _ = writeln!(out, "  (partition lies outside the image)");
            continue;
        };
        let (fat_type, serial, label) = match fat::describe(volume) {
            Ok(d) => d,
            Err(_) => {
                let _ = writeln!(out, "  (not a FAT volume)");
                continue;
            }
        };
        let _ = writeln!(out, "  {fat_type:?} volume {label:?} serial {serial:08x}");
        for file in fat::read_files(volume, MAX_DESCRIBE_BYTES)? {
            let _ = writeln!(
                out,
                "  {:>10} {} blake3 {}",
                file.data.len(),
                file.path,
                trust::Digest::of(&file.data)
            );
            if file.path.eq_ignore_ascii_case(UKI_PATH) {
                for (name, size) in uki_sections(&file.data) {
                    let _ = writeln!(out, "  {:>10}   section {name}", size);
                }
            }
        }
    }
    Ok(out)
}

/// The names and sizes of a PE image's sections (empty if it is not one).
fn uki_sections(image: &[u8]) -> Vec<(String, u64)> {
    use object::{Object, ObjectSection};
    let Ok(file) = object::read::pe::PeFile64::parse(image) else {
        return Vec::new();
    };
    file.sections()
        .map(|s| (s.name().unwrap_or("?").to_owned(), s.size()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents<'a>(stub: &'a [u8], manifest: &'a [u8]) -> UsbContents<'a> {
        UsbContents {
            stub,
            uki: BootTriple {
                kernel: b"MZ boot kernel",
                initrd: b"boot initrd",
                cmdline: b"console=ttyS0 quiet",
            },
            manifest,
            kernel: b"MZ kernel",
            initrd: b"initrd bytes",
            cmdline: b"console=ttyS0",
            version: 3,
            profile: "dev",
        }
    }

    #[test]
    fn identifiers_follow_the_release_and_the_stub() {
        let a = Identifiers::derive(&contents(b"stub", b"manifest"));
        assert_eq!(a, Identifiers::derive(&contents(b"stub", b"manifest")));
        assert_ne!(a, Identifiers::derive(&contents(b"stub", b"manifest2")));
        assert_ne!(a, Identifiers::derive(&contents(b"stub2", b"manifest")));
        let all = [a.disk, a.esp, a.release];
        assert!(all.iter().all(|g| g.get_version_num() == 4));
        assert!(all[0] != all[1] && all[1] != all[2] && all[0] != all[2]);
        assert_ne!(a.esp_volume, a.release_volume);
    }

    #[test]
    fn partitions_are_fat32_sized_with_room_to_spare() {
        assert_eq!(partition_size(0), MIN_PARTITION);
        assert_eq!(partition_size(1 << 20), MIN_PARTITION);
        let big = 100 << 20;
        let size = partition_size(big);
        assert_eq!(size % (1 << 20), 0);
        assert!(size >= big + big / 16 + (1 << 20));
    }

    #[test]
    fn os_release_names_the_release() {
        let text = os_release(7, "metal");
        assert!(text.contains("ID=nullos\n"));
        assert!(text.contains("VERSION_ID=7\n"));
        assert!(text.contains("PRETTY_NAME=\"NullOS 7 (metal)\"\n"));
    }

    #[test]
    fn a_missing_stub_names_the_package() {
        let err = read_stub(Path::new("/nonexistent/linuxx64.efi.stub")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/linuxx64.efi.stub"), "{text}");
        assert!(text.contains("systemd-boot-efi"), "{text}");
    }

    #[test]
    fn the_image_holds_the_uki_and_the_release_and_describes_itself() {
        let stub = read_stub(Path::new(DEFAULT_STUB)).unwrap_or_else(|e| panic!("{e}"));
        let c = contents(&stub, b"signed manifest");
        let image = build_image(&c).unwrap();
        assert!(is_gpt_disk(&image));
        let (_, parts) = disk::read(&image).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].kind, EFI.guid);
        assert_eq!(parts[1].name, RELEASE_NAME);
        let volume = |i: usize| parts[i].contents(&image).unwrap();
        let esp = fat::read_files(volume(0), u64::MAX).unwrap();
        assert_eq!(esp.len(), 1);
        assert_eq!(esp[0].path, UKI_PATH);
        assert_eq!(esp[0].data, build_uki(&c).unwrap());
        let mut release: Vec<_> = fat::read_files(volume(1), u64::MAX)
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.data))
            .collect();
        release.sort();
        assert_eq!(
            release,
            [
                ("cmdline".to_owned(), b"console=ttyS0".to_vec()),
                ("initrd".to_owned(), b"initrd bytes".to_vec()),
                ("kernel".to_owned(), b"MZ kernel".to_vec()),
                ("release.manifest".to_owned(), b"signed manifest".to_vec()),
            ]
        );
        let text = describe(&image).unwrap();
        for needle in [
            "EFI System Partition",
            "NULLOS-RELEASE",
            "Fat32",
            "EFI/BOOT/BOOTX64.EFI",
            "section .linux",
            "release.manifest",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}

//! The built image directory (`image-builder build` output) as boot profiles.
//!
//! Layout: `<dir>/kernel`, `<dir>/initrd`, `<dir>/cmdline` for direct boot, and
//! `<dir>/pxe/boot.ipxe` (plus what it fetches by relative name) for PXE, `<dir>/usb.img` for
//! the USB stick on UEFI.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::Boot;

/// The file iPXE is told to fetch first.
pub const PXE_BOOTFILE: &str = "boot.ipxe";
/// The USB stick image.
pub const USB_IMAGE: &str = "usb.img";

/// An image directory that cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file the boot profile needs is not there.
    #[error("missing {path}: build the image first (`make image`)")]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// The command-line file exists but cannot be read.
    #[error("cannot read kernel command line {path}")]
    ReadCmdline {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The direct-boot triple of an image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectImage {
    /// `<dir>/kernel`.
    pub kernel: PathBuf,
    /// `<dir>/initrd`.
    pub initrd: PathBuf,
    /// Contents of `<dir>/cmdline`, surrounding whitespace trimmed.
    pub cmdline: String,
}

impl DirectImage {
    /// Checks that `<dir>/kernel`, `<dir>/initrd` and `<dir>/cmdline` exist and reads the
    /// command line.
    pub fn load(dir: &Path) -> Result<DirectImage, ImageError> {
        let kernel = existing(dir.join("kernel"))?;
        let initrd = existing(dir.join("initrd"))?;
        let cmdline_path = existing(dir.join("cmdline"))?;
        let cmdline =
            std::fs::read_to_string(&cmdline_path).map_err(|source| ImageError::ReadCmdline {
                path: cmdline_path,
                source,
            })?;
        Ok(DirectImage {
            kernel,
            initrd,
            cmdline: cmdline.trim().to_string(),
        })
    }

    /// The direct boot profile for this triple.
    pub fn boot(&self) -> Boot {
        Boot::Direct {
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
        }
    }
}

/// Direct boot of `<dir>/kernel` + `<dir>/initrd` with the command line in `<dir>/cmdline`
/// (surrounding whitespace trimmed).
pub fn direct_boot(dir: &Path) -> Result<Boot, ImageError> {
    DirectImage::load(dir).map(|image| image.boot())
}

/// PXE boot from `<dir>/pxe/` with `boot.ipxe` as the first file.
pub fn pxe_boot(dir: &Path) -> Result<Boot, ImageError> {
    let tftp_root = dir.join("pxe");
    existing(tftp_root.join(PXE_BOOTFILE))?;
    Ok(Boot::Pxe {
        tftp_root,
        bootfile: PXE_BOOTFILE.to_string(),
    })
}

/// UEFI boot of `<dir>/usb.img` as a USB stick.
pub fn usb_boot(dir: &Path) -> Result<Boot, ImageError> {
    Ok(Boot::UsbDisk {
        image: existing(dir.join(USB_IMAGE))?,
    })
}

fn existing(path: PathBuf) -> Result<PathBuf, ImageError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ImageError::Missing { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_boot_reads_the_triple_and_trims_the_cmdline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kernel"), b"k").unwrap();
        std::fs::write(dir.path().join("initrd"), b"i").unwrap();
        std::fs::write(dir.path().join("cmdline"), "console=ttyS0 quiet\n").unwrap();
        let boot = direct_boot(dir.path()).unwrap();
        assert_eq!(
            boot,
            Boot::Direct {
                kernel: dir.path().join("kernel"),
                initrd: dir.path().join("initrd"),
                cmdline: "console=ttyS0 quiet".into(),
            }
        );
    }

    #[test]
    fn a_missing_file_is_named_and_make_image_suggested() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kernel"), b"k").unwrap();
        let err = direct_boot(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join("initrd").display().to_string()),
            "{text}"
        );
        assert!(text.contains("make image"), "{text}");
        let err = pxe_boot(dir.path()).unwrap_err();
        assert!(err.to_string().contains("pxe/boot.ipxe"), "{err}");
        let err = usb_boot(dir.path()).unwrap_err();
        assert!(err.to_string().contains("usb.img"), "{err}");
        std::fs::write(dir.path().join("usb.img"), b"disk").unwrap();
        assert_eq!(
            usb_boot(dir.path()).unwrap(),
            Boot::UsbDisk {
                image: dir.path().join("usb.img")
            }
        );
    }

    #[test]
    fn pxe_boot_serves_the_pxe_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pxe")).unwrap();
        std::fs::write(dir.path().join("pxe/boot.ipxe"), "#!ipxe\n").unwrap();
        assert_eq!(
            pxe_boot(dir.path()).unwrap(),
            Boot::Pxe {
                tftp_root: dir.path().join("pxe"),
                bootfile: "boot.ipxe".into()
            }
        );
    }
}

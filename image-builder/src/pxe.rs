//! The PXE bundle: an iPXE script and the files it fetches, served from one TFTP (or HTTP) root.

use std::path::Path;

/// The bundle's folder inside the output folder.
pub const PXE_DIR: &str = "pxe";
/// The script iPXE is pointed at (DHCP bootfile or `chain`).
pub const SCRIPT_FILE: &str = "boot.ipxe";

/// Why the bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PxeError {
    /// Writing a file failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The iPXE script. Relative names are fetched from wherever the script came from (TFTP or
/// HTTP), so one bundle works behind any server. `initrd=initrd` lets EFI builds of iPXE hand the
/// initrd to the kernel's EFI stub; BIOS builds ignore it.
pub fn script(cmdline: &str) -> String {
    format!(
        "#!ipxe\n\
         # NullOS network boot: fetch the kernel and initramfs next to this script.\n\
         echo NullOS: loading kernel\n\
         kernel kernel initrd=initrd {cmdline}\n\
         echo NullOS: loading initrd\n\
         initrd initrd\n\
         boot\n"
    )
}

/// Writes `pxe/boot.ipxe`, `pxe/kernel` and `pxe/initrd` under `out`; returns the files written.
pub fn write_bundle(
    out: &Path,
    cmdline: &str,
    kernel: &[u8],
    initrd: &[u8],
) -> Result<Vec<std::path::PathBuf>, PxeError> {
    let dir = out.join(PXE_DIR);
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, bytes))
            .map_err(|source| PxeError::Write {
                path: path.clone(),
                source,
            })?;
        Ok::<_, PxeError>(path)
    };
    Ok(vec![
        write(SCRIPT_FILE, script(cmdline).as_bytes())?,
        write("kernel", kernel)?,
        write("initrd", initrd)?,
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn script_boots_kernel_with_cmdline() {
        let s = super::script("console=ttyS0 quiet");
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains("\nkernel kernel initrd=initrd console=ttyS0 quiet\n"));
        assert!(s.contains("\ninitrd initrd\n"));
        assert!(s.trim_end().ends_with("boot"));
    }
}

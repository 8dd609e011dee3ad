//! The PXE bundle: an iPXE script and the files it fetches, served from one TFTP (or HTTP) root.

/// The bundle's folder inside the output folder.
pub const PXE_DIR: &str = "pxe";
/// The script iPXE is pointed at (DHCP bootfile or `chain`).
pub const SCRIPT_FILE: &str = "boot.ipxe";

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

/// The bundle's files, as (path relative to the output folder, contents): `pxe/boot.ipxe` and
/// what it fetches, `pxe/kernel` and `pxe/initrd`.
pub fn bundle<'a>(script: &'a str, kernel: &'a [u8], initrd: &'a [u8]) -> [(String, &'a [u8]); 3] {
    [
        (format!("{PXE_DIR}/{SCRIPT_FILE}"), script.as_bytes()),
        (format!("{PXE_DIR}/kernel"), kernel),
        (format!("{PXE_DIR}/initrd"), initrd),
    ]
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

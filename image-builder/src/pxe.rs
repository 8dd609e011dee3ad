//! The PXE bundle: an iPXE script and the files it fetches, served from one TFTP (or HTTP) root.
//!
//! With a boot image (`[stage0]`), the script boots stage 0 (`pxe/kernel`, `pxe/initrd` are the
//! boot image) and tells it where the release is with `nullos.release=<url>`; the signed
//! release is in the bundle under `pxe/release/`, to be served over HTTP (TFTP only carries
//! stage 0: stage 0 has no TFTP client). Without a boot image, the script boots the node
//! kernel directly, unverified (the bundle of images that have no stage 0).

use interfaces::paths::RELEASE_URL_PARAM;

/// The bundle's folder inside the output folder.
pub const PXE_DIR: &str = "pxe";
/// The script iPXE is pointed at (DHCP bootfile or `chain`).
pub const SCRIPT_FILE: &str = "boot.ipxe";
/// The release's folder inside the bundle, served over HTTP.
pub const RELEASE_DIR: &str = "release";
/// The release URL the script gives stage 0 unless `[stage0] pxe_release` or the iPXE setting
/// `nullos-release` says otherwise: port 8080 of the server that handed out the script
/// (`next-server`, the TFTP server; QEMU's user network makes it the host, 10.0.2.2).
pub const DEFAULT_RELEASE_URL: &str = "http://${next-server}:8080/release";

/// The direct script: the node kernel and initramfs, no verification. Relative names are
/// fetched from wherever the script came from (TFTP or HTTP), so one bundle works behind any
/// server. `initrd=initrd` lets EFI builds of iPXE hand the initrd to the kernel's EFI stub;
/// BIOS builds ignore it.
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

/// The stage 0 script: boots the boot image next to it with `cmdline` plus
/// `nullos.release=<release_url>`. A `nullos-release` setting made before this script runs
/// (in an embedded script, a menu, or the DHCP server's iPXE options) wins over `release_url`.
pub fn stage0_script(cmdline: &str, release_url: &str) -> String {
    format!(
        "#!ipxe\n\
         # NullOS network boot: stage 0 (kernel, initrd next to this script) fetches the signed\n\
         # release over HTTP, verifies it and boots it. Serve the folder release/ of this bundle\n\
         # over HTTP at the URL below, or set nullos-release before chaining this script.\n\
         isset ${{nullos-release}} || set nullos-release {release_url}\n\
         echo NullOS: loading stage 0 (release at ${{nullos-release}})\n\
         kernel kernel initrd=initrd {cmdline} {RELEASE_URL_PARAM}=${{nullos-release}}\n\
         initrd initrd\n\
         boot\n"
    )
}

/// The direct bundle's files, as (path relative to the output folder, contents):
/// `pxe/boot.ipxe` and what it fetches, `pxe/kernel` and `pxe/initrd`.
pub fn bundle<'a>(script: &'a str, kernel: &'a [u8], initrd: &'a [u8]) -> [(String, &'a [u8]); 3] {
    [
        (format!("{PXE_DIR}/{SCRIPT_FILE}"), script.as_bytes()),
        (format!("{PXE_DIR}/kernel"), kernel),
        (format!("{PXE_DIR}/initrd"), initrd),
    ]
}

/// The release's files in the stage 0 bundle: `pxe/release/<name>` for each (name, bytes).
pub fn release_files<'a>(release: &[(&str, &'a [u8])]) -> Vec<(String, &'a [u8])> {
    release
        .iter()
        .map(|(name, bytes)| (format!("{PXE_DIR}/{RELEASE_DIR}/{name}"), *bytes))
        .collect()
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

    #[test]
    fn stage0_script_passes_the_release_url_and_lets_a_setting_override_it() {
        let s = super::stage0_script("console=ttyS0 quiet", super::DEFAULT_RELEASE_URL);
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains(
            "\nisset ${nullos-release} || set nullos-release http://${next-server}:8080/release\n"
        ));
        assert!(s.contains(
            "\nkernel kernel initrd=initrd console=ttyS0 quiet nullos.release=${nullos-release}\n"
        ));
        assert!(s.contains("\ninitrd initrd\n"));
        assert!(s.trim_end().ends_with("boot"));
    }

    #[test]
    fn release_files_go_under_pxe_release() {
        let files = super::release_files(&[("kernel", b"k"), ("release.manifest", b"m")]);
        assert_eq!(files[0], ("pxe/release/kernel".to_owned(), &b"k"[..]));
        assert_eq!(files[1].0, "pxe/release/release.manifest");
    }
}

//! Where our programs put things for each other: paths inside the node image, the boot image
//! and the guest initramfs, and the file names of a release and of a workload folder.

/// The coldplug module index in every initramfs we build (written by image-builder, read by
/// `init`, `boot` and the guest's `init`; format in `modindex`).
pub const MODULE_INDEX: &str = "/lib/modules/nullos.index";

// The node image.

/// The node description in the node image ([`crate::NodeConfig`]).
pub const NODE_CONFIG: &str = "/etc/nullos/node.toml";
/// The micro-VM monitor in the node image (started by `init`).
pub const VMM: &str = "/bin/vmm";
/// The workload signer policy in the node image (policy text, read by `init`).
pub const WORKLOAD_POLICY: &str = "/etc/nullos/policy";
/// The workloads in the node image: `<this>/<name>/{`[`WORKLOAD_MANIFEST_FILE`]`,`
/// [`WORKLOAD_ROOT_FILE`]`}`.
pub const WORKLOADS_DIR: &str = "/lib/nullos/workloads";
/// The guests' kernel in the node image (the node's own), when the image carries workloads.
pub const GUEST_KERNEL: &str = "/lib/nullos/guest/vmlinuz";

// A workload folder (`image-builder workload` writes it, the node image carries it).

/// The signed workload manifest of a workload folder.
pub const WORKLOAD_MANIFEST_FILE: &str = "workload.manifest";
/// The root filesystem image (squashfs) of a workload folder.
pub const WORKLOAD_ROOT_FILE: &str = "root.img";

// The boot image (stage 0).

/// The release signer policy in the boot image (policy text or one public key, read by `boot`),
/// and in a node image with a release channel (the profile's `[update]`, read by `init`).
pub const RELEASE_POLICY: &str = "/etc/nullos/release-policy";
/// What the boot image was built for (profile, target, lowest release version), written by
/// image-builder, read by `boot` ([`crate::BootImageConfig`]).
pub const BOOT_IMAGE_CONFIG: &str = "/etc/nullos/boot-image";
/// The release URLs baked into the boot image, one a line (`#` comments allowed).
pub const RELEASE_URLS: &str = "/etc/nullos/release-urls";
/// The kernel command-line parameter naming a release URL (`nullos.release=<url>`, written by
/// the PXE script, read by `boot`).
pub const RELEASE_URL_PARAM: &str = "nullos.release";

// A release: the build's output folder, the release partition, and a release URL's folder.

/// The signed release manifest.
pub const RELEASE_MANIFEST_FILE: &str = "release.manifest";
/// The node's kernel.
pub const RELEASE_KERNEL_FILE: &str = "kernel";
/// The node's initramfs.
pub const RELEASE_INITRD_FILE: &str = "initrd";
/// The node's kernel command line.
pub const RELEASE_CMDLINE_FILE: &str = "cmdline";

// The guest initramfs.

/// The workload description in a guest's initramfs ([`crate::GuestConfig`]).
pub const GUEST_CONFIG: &str = "/etc/nullos/guest.toml";

/// `path` without its leading `/`: the name of an archive member (cpio names are relative).
pub const fn relative(path: &'static str) -> &'static str {
    match path.as_bytes().split_first() {
        Some((b'/', rest)) => match core::str::from_utf8(rest) {
            Ok(rest) => rest,
            Err(_) => path,
        },
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_the_paths_without_the_leading_slash() {
        const NAME: &str = relative(GUEST_CONFIG);
        assert_eq!(NAME, "etc/nullos/guest.toml");
        assert_eq!(relative(MODULE_INDEX), "lib/modules/nullos.index");
        assert_eq!(relative("already/relative"), "already/relative");
        assert_eq!(relative("/"), "");
    }

    #[test]
    fn image_paths_are_absolute_and_normalized() {
        for path in [
            MODULE_INDEX,
            NODE_CONFIG,
            VMM,
            WORKLOAD_POLICY,
            WORKLOADS_DIR,
            GUEST_KERNEL,
            RELEASE_POLICY,
            RELEASE_URLS,
            GUEST_CONFIG,
        ] {
            assert_eq!(trust::workload::check_path(path), Ok(()), "{path}");
        }
        for name in [
            WORKLOAD_MANIFEST_FILE,
            WORKLOAD_ROOT_FILE,
            RELEASE_MANIFEST_FILE,
            RELEASE_KERNEL_FILE,
            RELEASE_INITRD_FILE,
            RELEASE_CMDLINE_FILE,
        ] {
            assert!(!name.is_empty() && !name.contains('/'), "{name}");
        }
    }
}

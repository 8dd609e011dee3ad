//! The boot image: the kernel and initramfs stage 0 runs from: `/init` = the `boot` binary,
//! the drivers that reach the release (storage for the USB stick, NICs for HTTP) and ext4 (the
//! data disk's filesystem, where stage 0 keeps the version floor on the machine), the release
//! signer policy at `/etc/nullos/release-policy`, what the image boots (the release's profile
//! and target, the lowest version accepted) at `/etc/nullos/boot-image` and, when `[stage0]
//! release_urls` names any, the release URLs at `/etc/nullos/release-urls`. Written to `boot/kernel`, `boot/initrd`,
//! `boot/cmdline`, into the PXE bundle and, on a USB stick, into the UKI.

use std::path::Path;

use interfaces::labels::DATA_FILESYSTEM_MODULES;
use interfaces::BootImageConfig;

use crate::build::{pid1_tree, BuildError};
use crate::compress::Compression;
use crate::config::{ModulesSection, ReleaseSection, Stage0Section};
use crate::kernel::KernelSource;
use crate::{keys, modules};

// Where the signer policy and the baked release URLs go in the boot initramfs (read by `boot`).
pub use interfaces::paths::{
    BOOT_IMAGE_CONFIG as CONFIG_PATH, RELEASE_POLICY as POLICY_PATH,
    RELEASE_URLS as RELEASE_URLS_PATH,
};
/// The output folder of the boot image, inside the build's output folder.
pub const BOOT_DIR: &str = "boot";

/// The boot image's three parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootImage {
    /// bzImage.
    pub kernel: Vec<u8>,
    /// Compressed initramfs.
    pub initrd: Vec<u8>,
    /// Kernel command line.
    pub cmdline: Vec<u8>,
    /// How many modules went in.
    pub module_count: usize,
}

/// Builds the boot image of `section` for releases of `release`'s profile and target;
/// `node_kernel` is reused when the section names the same kernel as the node's (`[kernel]
/// path`).
pub fn build(
    section: &Stage0Section,
    release: &ReleaseSection,
    node_kernel: (&Path, &KernelSource),
    compression: &Compression,
    mtime: u32,
) -> Result<BootImage, BuildError> {
    let policy = keys::load_trust(&section.policy)?;
    let boot = crate::build::read_init(&section.init)?;
    let opened;
    let kernel = if section.kernel == node_kernel.0 {
        node_kernel.1
    } else {
        opened = KernelSource::open(&section.kernel)?;
        compression.check_kernel_config(&opened.config)?;
        &opened
    };
    let selected = modules::select(
        kernel,
        &ModulesSection {
            names: module_names(section, kernel),
            groups: section.groups.clone(),
            boot: Vec::new(),
        },
    )?;
    let module_count = selected.files.len();
    let mut tree = pid1_tree(boot, &[], selected)?;
    tree.add_file(POLICY_PATH, policy.to_text().into_bytes(), 0o644)?;
    tree.add_file(
        CONFIG_PATH,
        config(section, release).to_text().into_bytes(),
        0o644,
    )?;
    if !section.release_urls.is_empty() {
        tree.add_file(
            RELEASE_URLS_PATH,
            release_urls_text(&section.release_urls).into_bytes(),
            0o644,
        )?;
    }
    let initrd = compression.compress(&tree.to_cpio(mtime)?)?;
    Ok(BootImage {
        kernel: kernel.bzimage.clone(),
        initrd,
        cmdline: section.cmdline.clone().into_bytes(),
        module_count,
    })
}

/// The section's modules, and those of the data disk's filesystem (where stage 0 reads and
/// raises the version floor) that the kernel has as modules.
fn module_names(section: &Stage0Section, kernel: &KernelSource) -> Vec<String> {
    let mut names = section.modules.clone();
    for wanted in DATA_FILESYSTEM_MODULES {
        let file = format!("{wanted}.ko");
        let is_module = kernel
            .modules
            .keys()
            .any(|rel| rel.rsplit('/').next() == Some(file.as_str()));
        if is_module && !names.iter().any(|n| n == wanted) {
            names.push(wanted.to_owned());
        }
    }
    names
}

/// What the boot image boots: `release`'s profile and target, versions from
/// `section.min_version` on.
pub fn config(section: &Stage0Section, release: &ReleaseSection) -> BootImageConfig {
    BootImageConfig {
        profile: release.profile.clone(),
        target: release.target.clone(),
        min_version: section.min_version,
    }
}

/// The release URLs file: a comment, then one URL a line.
pub fn release_urls_text(urls: &[String]) -> String {
    let mut text = String::from("# Written by image-builder; read by boot (stage 0).\n");
    for url in urls {
        text.push_str(url);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn release_urls_file_is_one_url_a_line() {
        let text = super::release_urls_text(&["http://a/r".into(), "http://b/r".into()]);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["http://a/r", "http://b/r"]);
    }

    #[test]
    fn the_boot_image_boots_its_releases_profile_and_target() {
        use std::path::PathBuf;
        let section = crate::config::Stage0Section {
            kernel: PathBuf::from("k"),
            init: PathBuf::from("boot"),
            policy: PathBuf::from("p"),
            modules: Vec::new(),
            groups: Vec::new(),
            cmdline: "q".into(),
            release_urls: Vec::new(),
            pxe_release: crate::pxe::DEFAULT_RELEASE_URL.into(),
            min_version: 5,
        };
        let release = crate::config::ReleaseSection {
            version: 6,
            profile: "metal".into(),
            target: "x86_64".into(),
        };
        let baked = super::config(&section, &release);
        assert_eq!(
            baked.to_text(),
            "# Written by image-builder; read by boot (stage 0).\nprofile = metal\ntarget = x86_64\nmin_version = 5\n"
        );
    }
}

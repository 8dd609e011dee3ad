//! The kernel a build uses: a Debian `linux-image-*.deb` or its unpacked tree.
//!
//! Both give the same [`KernelSource`]: the bzImage, the kernel's `.config`, the release name
//! (`uname -r`), the package name and version (for the release's build inputs) and the module
//! files by their path under `lib/modules/<release>/kernel/`.

mod deb;
mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the kernel could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The path does not exist.
    #[error("kernel {0} does not exist (run `make kernels` or fix kernel.path)")]
    Missing(PathBuf),
    /// A file or folder of the kernel could not be read.
    #[error("cannot read {path}")]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The tree or package does not look like a Debian kernel.
    #[error("{path}: {problem}")]
    Layout {
        /// The kernel tree or package.
        path: PathBuf,
        /// What is missing or ambiguous.
        problem: String,
    },
    /// The `.deb` is malformed.
    #[error("{path} is not a readable Debian package: {problem}")]
    Deb {
        /// The package.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// A module file, read lazily from a tree or held from a package.
#[derive(Debug, Clone)]
pub enum ModuleFile {
    /// In an unpacked tree.
    OnDisk(PathBuf),
    /// Read out of a `.deb`.
    InMemory(Vec<u8>),
}

/// Everything the builder needs from a kernel.
#[derive(Debug)]
pub struct KernelSource {
    /// `uname -r`, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// Debian package name (`unknown` for a tree without `DEBIAN/control`).
    pub package: String,
    /// Debian package version (`unknown` likewise).
    pub version: String,
    /// The bzImage.
    pub bzimage: Vec<u8>,
    /// The kernel's `.config`.
    pub config: String,
    /// Module files by path relative to `lib/modules/<release>/kernel/`, e.g.
    /// `drivers/net/virtio_net.ko`.
    pub modules: BTreeMap<String, ModuleFile>,
}

impl KernelSource {
    /// Opens a `.deb` file or an unpacked tree.
    pub fn open(path: &Path) -> Result<KernelSource, KernelError> {
        if !path.exists() {
            return Err(KernelError::Missing(path.to_owned()));
        }
        if path.is_dir() {
            tree::open(path)
        } else {
            deb::open(path)
        }
    }

    /// Reads one module's bytes.
    pub fn read_module(&self, relative: &str) -> Result<Vec<u8>, KernelError> {
        match self.modules.get(relative) {
            Some(ModuleFile::OnDisk(p)) => std::fs::read(p).map_err(|source| KernelError::Read {
                path: p.clone(),
                source,
            }),
            Some(ModuleFile::InMemory(bytes)) => Ok(bytes.clone()),
            None => Err(KernelError::Layout {
                path: PathBuf::from(relative),
                problem: "no such module file".into(),
            }),
        }
    }
}

/// The release name from a `boot/vmlinuz-<release>` file name.
fn release_from_vmlinuz(name: &str) -> Option<&str> {
    name.strip_prefix("vmlinuz-").filter(|r| !r.is_empty())
}

/// The one kernel release among the names of `boot/`'s files, or what is wrong.
fn single_release<'a>(boot_names: impl Iterator<Item = &'a str>) -> Result<String, String> {
    let mut releases: Vec<&str> = boot_names.filter_map(release_from_vmlinuz).collect();
    releases.sort_unstable();
    match releases.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err("no boot/vmlinuz-* (is this a linux-image package?)".into()),
        many => Err(format!("several kernels in boot/: {}", many.join(", "))),
    }
}

/// `Package:` and `Version:` from a Debian control file.
fn parse_control(text: &str) -> (Option<String>, Option<String>) {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    (field("Package:"), field("Version:"))
}

/// Module file names we accept, and the module path relative to `kernel/` they stand for.
fn is_module_file(name: &str) -> bool {
    name.ends_with(".ko")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_release_names() {
        let (p, v) = parse_control(
            "Package: linux-image-6.1.0-56-cloud-amd64\nSource: x\nVersion: 6.1.192-2\n",
        );
        assert_eq!(p.as_deref(), Some("linux-image-6.1.0-56-cloud-amd64"));
        assert_eq!(v.as_deref(), Some("6.1.192-2"));
        assert_eq!(
            release_from_vmlinuz("vmlinuz-6.1.0-56-cloud-amd64"),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(release_from_vmlinuz("vmlinuz-"), None);
        assert_eq!(
            single_release(["config-x", "vmlinuz-x"].into_iter()),
            Ok("x".into())
        );
        assert!(single_release(["config-x"].into_iter()).is_err());
        let several = single_release(["vmlinuz-b", "vmlinuz-a"].into_iter()).unwrap_err();
        assert_eq!(several, "several kernels in boot/: a, b");
        assert!(is_module_file("virtio_net.ko"));
        assert!(!is_module_file("modules.order"));
    }
}

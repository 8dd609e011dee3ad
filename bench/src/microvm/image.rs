//! The bench node's initramfs and the guest's, as uncompressed cpio newc archives.
//!
//! Node: `/init` = `bench-node-init`, `/dev/console`, `/bin/vmm`, QEMU with its loader and
//! libraries at their host paths (image-builder's [`tools`](image_builder::tools) resolver, the
//! one node images use for host tools) and microvm firmware under
//! `/usr/share/qemu`, the kvm modules under `/lib/kvm`, and the guest kernel and initramfs under
//! `/guest`. Guest: `/init` = `bench-guest-init`, `/dev/console`, and the virtio modules as
//! `/lib/modules/<name>.ko`. This is a benchmark fixture, not a NullOS image.
//!
//! Uncompressed on purpose: nothing is measured on unpacking, and both monitors load the same
//! guest initramfs bytes. Written by the `initramfs` crate's writer in the order below (each
//! parent folder just before its first child), files streamed from disk where they can be.

use std::io;
use std::path::{Path, PathBuf};

use image_builder::tools::{self, ToolsError};
use initramfs::Writer;

use super::{node_paths, GUEST_MODULES, NODE_MODULES};

/// QEMU microvm's firmware files (`bios-microvm.bin` is qboot), copied from the data directory.
pub const QEMU_FIRMWARE: [&str; 2] = ["bios-microvm.bin", "qboot.rom"];

/// How the static binaries are built (for error messages).
pub const BUILD_HINT: &str = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release \
     --target x86_64-unknown-linux-gnu -p bench-inits --bin bench-node-init --bin bench-guest-init \
     && RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release \
     --target x86_64-unknown-linux-gnu -p vmm";

/// An image that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An input file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A binary that must be static is not (or is not an ELF executable).
    #[error("{path} is not a static x86-64 executable; build it with `{BUILD_HINT}`")]
    NotStatic {
        /// The binary.
        path: PathBuf,
    },
    /// QEMU's libraries cannot be resolved.
    #[error("cannot collect QEMU's loader and libraries")]
    Deps(#[from] ToolsError),
    /// Writing the archive failed (a member over 4 GiB, a path twice).
    #[error("cannot write the cpio archive")]
    Write(#[source] initramfs::Error),
}

impl From<initramfs::Error> for ImageError {
    /// A file the writer could not read is named as [`ImageError::Read`], as when it is read here.
    fn from(e: initramfs::Error) -> ImageError {
        match e {
            initramfs::Error::ReadSource { path, source } => ImageError::Read { path, source },
            other => ImageError::Write(other),
        }
    }
}

/// `/dev/console` (5:1): the kernel opens it for PID 1 before devtmpfs exists.
fn console<W: io::Write>(archive: &mut Writer<W>) -> Result<(), initramfs::Error> {
    archive.char_device("dev/console", 5, 1, 0o600)
}

/// The guest initramfs: `init` (static) and `modules` as `(name, .ko bytes)` in load order.
pub fn guest_initrd(init: &[u8], modules: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, initramfs::Error> {
    let mut archive = Writer::new(Vec::new(), 0);
    console(&mut archive)?;
    archive.dir("proc", 0o755)?;
    archive.file("init", 0o755, init)?;
    for (name, bytes) in modules {
        archive.file(&format!("lib/modules/{name}.ko"), 0o644, bytes)?;
    }
    archive.finish()
}

/// What the node image is made of, on the host.
#[derive(Debug, Clone)]
pub struct NodeInputs {
    /// The unpacked kernel package (`boot/vmlinuz-<kver>`, `lib/modules/<kver>/kernel/`).
    pub kernel_dir: PathBuf,
    /// Kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub kver: String,
    /// Static `bench-node-init`.
    pub node_init: PathBuf,
    /// Static `bench-guest-init`.
    pub guest_init: PathBuf,
    /// Static `vmm`.
    pub vmm: PathBuf,
    /// QEMU's binary on this host.
    pub qemu: PathBuf,
    /// QEMU's data directory on this host (microvm firmware).
    pub qemu_data: PathBuf,
}

impl NodeInputs {
    /// The kernel both the node and the guest boot.
    pub fn kernel(&self) -> PathBuf {
        self.kernel_dir
            .join("boot")
            .join(format!("vmlinuz-{}", self.kver))
    }

    fn module(&self, rel: &str) -> PathBuf {
        self.kernel_dir
            .join("lib/modules")
            .join(&self.kver)
            .join("kernel")
            .join(rel)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_static(path: &Path) -> Result<Vec<u8>, ImageError> {
    let bytes = read(path)?;
    if initramfs::check_static_executable(&bytes).is_ok() {
        Ok(bytes)
    } else {
        Err(ImageError::NotStatic {
            path: path.to_path_buf(),
        })
    }
}

/// Builds the node initramfs; returns it and how many host files QEMU brought along (itself,
/// its loader and libraries).
pub fn node_initrd(inputs: &NodeInputs) -> Result<(Vec<u8>, usize), ImageError> {
    let node_init = read_static(&inputs.node_init)?;
    let guest_init = read_static(&inputs.guest_init)?;
    let vmm = read_static(&inputs.vmm)?;
    let mut modules = Vec::new();
    for (name, rel) in GUEST_MODULES {
        modules.push((name, read(&inputs.module(rel))?));
    }
    let guest = guest_initrd(&guest_init, &modules)?;
    let qemu_path = inputs.qemu.to_string_lossy().into_owned();
    let qemu_files = tools::resolve(Path::new("/"), std::slice::from_ref(&qemu_path))?;

    let mut archive = Writer::new(Vec::new(), 0);
    console(&mut archive)?;
    for dir in ["proc", "sys", "tmp"] {
        archive.dir(dir, 0o755)?;
    }
    archive.file("init", 0o755, &node_init)?;
    archive.file(node_paths::VMM, 0o755, &vmm)?;
    archive.file_from_disk(node_paths::GUEST_KERNEL, 0o644, &inputs.kernel())?;
    archive.file(node_paths::GUEST_INITRD, 0o644, &guest)?;
    for (name, rel) in NODE_MODULES {
        let path = format!("{}/{name}.ko", node_paths::KVM_MODULES);
        archive.file_from_disk(&path, 0o644, &inputs.module(rel))?;
    }
    for file in &qemu_files {
        // QEMU itself goes where bench-node-init runs it, whatever its host path.
        let dest = if file.dest == qemu_path {
            node_paths::QEMU
        } else {
            file.dest.as_str()
        };
        archive.file_from_disk(dest, file.mode, &file.source)?;
    }
    for name in QEMU_FIRMWARE {
        let path = format!("{}/{name}", node_paths::QEMU_DATA);
        archive.file_from_disk(&path, 0o644, &inputs.qemu_data.join(name))?;
    }
    Ok((archive.finish()?, qemu_files.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(archive: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        initramfs::Reader::new(archive)
            .map(|e| {
                let e = e.unwrap();
                (e.name.to_string(), e.header.mode, e.data.to_vec())
            })
            .collect()
    }

    #[test]
    fn the_guest_initrd_has_console_init_and_modules_in_order() {
        let modules = vec![("virtio", b"A".to_vec()), ("virtio_net", b"BB".to_vec())];
        let archive = guest_initrd(b"\x7fELF init", &modules).unwrap();
        let got: Vec<(String, u32, Vec<u8>)> = members(&archive);
        let names: Vec<(&str, u32)> = got.iter().map(|(n, m, _)| (n.as_str(), *m)).collect();
        assert_eq!(
            names,
            vec![
                ("dev", 0o040_755),
                ("dev/console", 0o020_600),
                ("proc", 0o040_755),
                ("init", 0o100_755),
                ("lib", 0o040_755),
                ("lib/modules", 0o040_755),
                ("lib/modules/virtio.ko", 0o100_644),
                ("lib/modules/virtio_net.ko", 0o100_644),
            ]
        );
        assert_eq!(got[3].2, b"\x7fELF init");
        assert_eq!(got[7].2, b"BB");
        // Same inputs, same bytes.
        assert_eq!(archive, guest_initrd(b"\x7fELF init", &modules).unwrap());
    }

    #[test]
    fn absolute_paths_get_their_parents_once() {
        let mut archive = Writer::new(Vec::new(), 0);
        archive.file("/usr/bin/a", 0o755, b"a").unwrap();
        archive.file("/usr/lib/b", 0o644, b"b").unwrap();
        archive.dir("/usr/lib/", 0o755).unwrap();
        let names: Vec<String> = members(&archive.finish().unwrap())
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        assert_eq!(
            names,
            ["usr", "usr/bin", "usr/bin/a", "usr/lib", "usr/lib/b"]
        );
    }

    #[test]
    fn a_dynamic_binary_is_refused_with_the_build_hint() {
        let me = std::env::current_exe().unwrap();
        let err = read_static(&me).unwrap_err();
        assert!(err.to_string().contains("crt-static"), "{err}");
    }
}

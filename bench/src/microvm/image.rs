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
//! guest initramfs bytes.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{trailer, Builder};

use image_builder::tools::{self, ToolsError};

use super::{node_paths, GUEST_MODULES, NODE_MODULES};
use crate::baseline::is_static_elf;

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
    /// Writing the archive failed (a member over 4 GiB, or out of memory).
    #[error("cannot write the cpio archive")]
    Write(#[source] io::Error),
}

/// A newc archive being written: parents are added before their children, inode numbers are
/// sequential and every timestamp is 0, so the same inputs give the same bytes.
#[derive(Debug, Default)]
pub struct Archive {
    out: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    fn ino(&mut self) -> u32 {
        self.next_ino += 1;
        self.next_ino
    }

    fn parents(&mut self, path: &str) -> io::Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.dir(&prefix)?;
        }
        Ok(())
    }

    /// Adds directory `path` (and its parents) once, mode 0755.
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        self.parents(path)?;
        self.dirs.insert(path.to_string());
        let ino = self.ino();
        let entry = Builder::new(path).ino(ino).mode(0o040_755).nlink(2);
        self.out = entry.write(std::mem::take(&mut self.out), 0).finish()?;
        Ok(())
    }

    /// Adds a regular file with permission bits `perm` (e.g. 0o755).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        self.parents(path)?;
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "member over 4 GiB"))?;
        let ino = self.ino();
        let entry = Builder::new(path).ino(ino).mode(0o100_000 | perm);
        let mut writer = entry.write(std::mem::take(&mut self.out), size);
        writer.write_all(data)?;
        self.out = writer.finish()?;
        Ok(())
    }

    /// Adds a character device node (mode 0600).
    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        self.parents(path)?;
        let ino = self.ino();
        let entry = Builder::new(path)
            .ino(ino)
            .mode(0o020_600)
            .rdev_major(major)
            .rdev_minor(minor);
        self.out = entry.write(std::mem::take(&mut self.out), 0).finish()?;
        Ok(())
    }

    /// The archive with its trailer.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        trailer(self.out)
    }
}

/// `/dev/console` (5:1): the kernel opens it for PID 1 before devtmpfs exists.
fn console(archive: &mut Archive) -> io::Result<()> {
    archive.char_device("dev/console", 5, 1)
}

/// The guest initramfs: `init` (static) and `modules` as `(name, .ko bytes)` in load order.
pub fn guest_initrd(init: &[u8], modules: &[(&str, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let mut archive = Archive::new();
    console(&mut archive)?;
    archive.dir("proc")?;
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
    if is_static_elf(&bytes).unwrap_or(false) {
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
    let guest = guest_initrd(&guest_init, &modules).map_err(ImageError::Write)?;
    let kernel = read(&inputs.kernel())?;
    let qemu_path = inputs.qemu.to_string_lossy().into_owned();
    let qemu_files = tools::resolve(Path::new("/"), std::slice::from_ref(&qemu_path))?;

    let mut archive = Archive::new();
    let w = ImageError::Write;
    console(&mut archive).map_err(w)?;
    for dir in ["proc", "sys", "tmp"] {
        archive.dir(dir).map_err(w)?;
    }
    archive.file("init", 0o755, &node_init).map_err(w)?;
    archive.file(node_paths::VMM, 0o755, &vmm).map_err(w)?;
    archive
        .file(node_paths::GUEST_KERNEL, 0o644, &kernel)
        .map_err(w)?;
    archive
        .file(node_paths::GUEST_INITRD, 0o644, &guest)
        .map_err(w)?;
    for (name, rel) in NODE_MODULES {
        let path = format!("{}/{name}.ko", node_paths::KVM_MODULES);
        archive
            .file(&path, 0o644, &read(&inputs.module(rel))?)
            .map_err(w)?;
    }
    for file in &qemu_files {
        let bytes = read(&file.source)?;
        // QEMU itself goes where bench-node-init runs it, whatever its host path.
        let dest = if file.dest == qemu_path {
            node_paths::QEMU
        } else {
            file.dest.as_str()
        };
        archive.file(dest, file.mode, &bytes).map_err(w)?;
    }
    for name in QEMU_FIRMWARE {
        let bytes = read(&inputs.qemu_data.join(name))?;
        let path = format!("{}/{name}", node_paths::QEMU_DATA);
        archive.file(&path, 0o644, &bytes).map_err(w)?;
    }
    Ok((archive.finish().map_err(w)?, qemu_files.len()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn members(archive: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut rest = archive;
        let mut out = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                return out;
            }
            let (name, mode) = (reader.entry().name().to_string(), reader.entry().mode());
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            out.push((name, mode, data));
            rest = reader.finish().unwrap();
        }
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
        let mut archive = Archive::new();
        archive.file("/usr/bin/a", 0o755, b"a").unwrap();
        archive.file("/usr/lib/b", 0o644, b"b").unwrap();
        archive.dir("/usr/lib/").unwrap();
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

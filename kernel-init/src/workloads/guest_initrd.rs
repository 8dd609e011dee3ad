//! The guest's initramfs, assembled by the node at run time from what it already runs and
//! trusts: its own `/init` (which runs the guest role when `nullos.role=guest`), the modules a
//! guest needs from the node's module set, and an index for them in the same text format.
//!
//! The base archive is written once per boot ([`BASE_PATH`]); each workload's initramfs is that
//! base followed by a second, small archive holding `/etc/nullos/guest.toml` (the kernel
//! unpacks concatenated cpio archives in order). Archives are uncompressed newc.
//!
//! The writer is our own small loop over the `cpio` crate's newc builder rather than
//! image-builder's `InitrdTree`: PID 1 must not depend on the image builder, and this one
//! streams files from disk into the archive instead of holding a tree in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use interfaces::guest::{GuestConfig, GuestConfigError};
use modindex::{AliasEntry, ModuleEntry, ModuleIndex};
use trust::WorkloadManifest;

/// Where the base archive is cached.
pub const BASE_PATH: &str = "/run/nullos/guest/initrd.base";
/// Where the guest role reads its description (inside the guest).
pub const GUEST_TOML_PATH: &str = interfaces::paths::relative(interfaces::paths::GUEST_CONFIG);
/// The modules a guest loads (the guest role loads them in dependency order).
pub const GUEST_MODULES: [&str; 6] = [
    "pvpanic_mmio",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "squashfs",
    "overlay",
];
/// The index path inside an initramfs (the same as the node's).
const INDEX_PATH: &str = interfaces::paths::relative(interfaces::paths::MODULE_INDEX);

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Why a guest initramfs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GuestInitrdError {
    /// The node's index lacks a module guests need.
    #[error("the node's module index has no {0} (add it to the image's [modules] names)")]
    MissingModule(String),
    /// The subset index does not check out.
    #[error("guest module index")]
    Index(#[source] modindex::IndexError),
    /// A path in the node's index is not one the archive can hold.
    #[error("module path '{0}' is not an absolute path inside the image")]
    BadPath(String),
    /// Reading a file that goes into the archive.
    #[error("read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than newc's size field.
    #[error("{0} is larger than 4 GiB")]
    TooLarge(PathBuf),
    /// Writing the archive.
    #[error("write {path}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The guest's module index: [`GUEST_MODULES`] and their dependencies, from the node's index,
/// with the aliases of those modules and nothing marked for boot-time loading.
pub fn guest_index(node: &ModuleIndex) -> Result<ModuleIndex, GuestInitrdError> {
    let mut chosen: BTreeMap<String, ModuleEntry> = BTreeMap::new();
    for name in GUEST_MODULES {
        let order = node
            .load_order(name)
            .map_err(|_| GuestInitrdError::MissingModule(name.to_owned()))?;
        for entry in order {
            chosen
                .entry(entry.name.clone())
                .or_insert_with(|| ModuleEntry {
                    boot: false,
                    ..entry.clone()
                });
        }
    }
    let aliases: Vec<AliasEntry> = node
        .aliases
        .iter()
        .filter(|a| chosen.contains_key(&a.module))
        .cloned()
        .collect();
    let index = ModuleIndex {
        kernel_release: node.kernel_release.clone(),
        modules: chosen.into_values().collect(),
        aliases,
    };
    // Round trip through the parser: it checks every bound and cross reference.
    ModuleIndex::parse(&index.to_text()).map_err(GuestInitrdError::Index)
}

/// One entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    /// A file read from the node's filesystem.
    File {
        source: PathBuf,
        mode: u32,
    },
    /// A file given as bytes.
    Bytes {
        data: Vec<u8>,
    },
    Console,
}

/// The paths of an archive, parents added, in archive order (sorted: parents first).
#[derive(Debug, Default)]
struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    fn add(&mut self, path: &str, entry: Entry) -> Result<(), GuestInitrdError> {
        let key = path.trim_start_matches('/');
        if key.is_empty()
            || !path.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(GuestInitrdError::BadPath(path.to_owned()));
        }
        let mut parent = String::new();
        let components: Vec<&str> = key.split('/').collect();
        for component in components.iter().take(components.len().saturating_sub(1)) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            self.entries.entry(parent.clone()).or_insert(Entry::Dir);
        }
        self.entries.insert(key.to_owned(), entry);
        Ok(())
    }

    /// Writes the newc archive to `out`.
    fn write(&self, out: &Path) -> Result<(), GuestInitrdError> {
        let write_err = |source| GuestInitrdError::Write {
            path: out.to_owned(),
            source,
        };
        let mut w = BufWriter::new(File::create(out).map_err(write_err)?);
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let builder = cpio::newc::Builder::new(path)
                .ino(ino)
                .uid(0)
                .gid(0)
                .mtime(0);
            match entry {
                Entry::Dir => {
                    let writer = builder.mode(S_IFDIR | 0o755).nlink(2).write(&mut w, 0);
                    writer.finish().map_err(write_err)?;
                }
                Entry::Console => {
                    let builder = builder
                        .mode(S_IFCHR | 0o600)
                        .nlink(1)
                        .rdev_major(5)
                        .rdev_minor(1);
                    builder.write(&mut w, 0).finish().map_err(write_err)?;
                }
                Entry::File { source, mode } => {
                    let data = std::fs::read(source).map_err(|e| GuestInitrdError::Read {
                        path: source.clone(),
                        source: e,
                    })?;
                    write_file(&mut w, builder, *mode, &data).map_err(|e| match e {
                        FileWrite::TooLarge => GuestInitrdError::TooLarge(source.clone()),
                        FileWrite::Io(e) => write_err(e),
                    })?;
                }
                Entry::Bytes { data } => {
                    write_file(&mut w, builder, 0o644, data).map_err(|e| match e {
                        FileWrite::TooLarge => GuestInitrdError::TooLarge(path.into()),
                        FileWrite::Io(e) => write_err(e),
                    })?;
                }
            }
        }
        cpio::newc::trailer(&mut w).map_err(write_err)?;
        w.into_inner()
            .map_err(|e| write_err(e.into_error()))?
            .sync_all()
            .map_err(write_err)
    }
}

enum FileWrite {
    TooLarge,
    Io(std::io::Error),
}

fn write_file(
    w: &mut impl Write,
    builder: cpio::newc::Builder,
    mode: u32,
    data: &[u8],
) -> Result<(), FileWrite> {
    let size = u32::try_from(data.len()).map_err(|_| FileWrite::TooLarge)?;
    let mut writer = builder.mode(S_IFREG | mode).nlink(1).write(w, size);
    writer.write_all(data).map_err(FileWrite::Io)?;
    writer.finish().map_err(FileWrite::Io)?;
    Ok(())
}

/// Writes the base archive to `out`: `/init` (from `init`), `/dev/console`, the mount points,
/// the guest modules (read from the node's filesystem at their index paths) and their index.
pub fn write_base(out: &Path, init: &Path, index: &ModuleIndex) -> Result<(), GuestInitrdError> {
    let mut tree = Tree::default();
    tree.add(
        "/init",
        Entry::File {
            source: init.to_owned(),
            mode: 0o755,
        },
    )?;
    tree.add("/dev/console", Entry::Console)?;
    for dir in ["/proc", "/sys", "/run", "/tmp", "/mnt"] {
        tree.add(dir, Entry::Dir)?;
    }
    tree.add(
        &format!("/{INDEX_PATH}"),
        Entry::Bytes {
            data: index.to_text().into_bytes(),
        },
    )?;
    for module in &index.modules {
        tree.add(
            &module.path,
            Entry::File {
                source: PathBuf::from(&module.path),
                mode: 0o644,
            },
        )?;
    }
    let partial = out.with_extension("partial");
    tree.write(&partial)?;
    std::fs::rename(&partial, out).map_err(|source| GuestInitrdError::Write {
        path: out.to_owned(),
        source,
    })
}

/// Writes a workload's initramfs: the base archive, then one holding `guest.toml`.
pub fn write_workload(out: &Path, base: &Path, guest_toml: &str) -> Result<(), GuestInitrdError> {
    let write_err = |source| GuestInitrdError::Write {
        path: out.to_owned(),
        source,
    };
    let second = out.with_extension("toml.cpio");
    let mut tree = Tree::default();
    tree.add(
        &format!("/{GUEST_TOML_PATH}"),
        Entry::Bytes {
            data: guest_toml.as_bytes().to_vec(),
        },
    )?;
    tree.write(&second)?;
    let partial = out.with_extension("partial");
    std::fs::copy(base, &partial).map_err(|source| GuestInitrdError::Read {
        path: base.to_owned(),
        source,
    })?;
    let tail = std::fs::read(&second).map_err(|source| GuestInitrdError::Read {
        path: second.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(&second);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&partial)
        .map_err(write_err)?;
    file.write_all(&tail).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&partial, out).map_err(write_err)
}

/// `/etc/nullos/guest.toml` for a workload (the guest role's input; volumes in disk order).
pub fn guest_toml(manifest: &WorkloadManifest) -> Result<String, GuestConfigError> {
    GuestConfig::from_manifest(manifest).to_toml()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::verify::tests::manifest;

    fn node_index() -> ModuleIndex {
        ModuleIndex::parse(
            "nullos-module-index v1\n\
             kernel 6.1.0-test\n\
             module failover /lib/modules/k/failover.ko boot=0 depends=-\n\
             module kvm /lib/modules/k/kvm.ko boot=1 depends=-\n\
             module net_failover /lib/modules/k/net_failover.ko boot=0 depends=failover\n\
             module overlay /lib/modules/k/overlay.ko boot=0 depends=-\n\
             module pvpanic_mmio /lib/modules/k/pvpanic-mmio.ko boot=0 depends=-\n\
             module squashfs /lib/modules/k/squashfs.ko boot=0 depends=-\n\
             module virtio_blk /lib/modules/k/virtio_blk.ko boot=0 depends=-\n\
             module virtio_mmio /lib/modules/k/virtio_mmio.ko boot=1 depends=-\n\
             module virtio_net /lib/modules/k/virtio_net.ko boot=0 depends=net_failover\n\
             alias acpi*:LNRO0005:* virtio_mmio\n\
             alias cpu:type:x86* kvm\n\
             alias virtio:d00000001v* virtio_net\n",
        )
        .unwrap()
    }

    #[test]
    fn guest_index_is_the_closure_of_the_guest_modules() {
        let index = guest_index(&node_index()).unwrap();
        let names: Vec<&str> = index.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "failover",
                "net_failover",
                "overlay",
                "pvpanic_mmio",
                "squashfs",
                "virtio_blk",
                "virtio_mmio",
                "virtio_net"
            ]
        );
        assert!(index.modules.iter().all(|m| !m.boot));
        let aliases: Vec<&str> = index.aliases.iter().map(|a| a.module.as_str()).collect();
        assert_eq!(aliases, ["virtio_mmio", "virtio_net"]);
        assert_eq!(index.kernel_release, "6.1.0-test");
    }

    #[test]
    fn a_missing_guest_module_is_named() {
        let text = node_index().to_text().replace(
            "module overlay /lib/modules/k/overlay.ko boot=0 depends=-\n",
            "",
        );
        let err = guest_index(&ModuleIndex::parse(&text).unwrap()).unwrap_err();
        assert!(err.to_string().contains("no overlay"), "{err}");
    }

    #[test]
    fn guest_toml_carries_the_entrypoint_env_and_volumes_in_order() {
        let mut m = manifest("hello", b"root");
        m.volumes.push(trust::VolumeSpec {
            name: "logs".into(),
            mount: "/var/log".into(),
            size_mib: 1,
        });
        let text = guest_toml(&m).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["name"].as_str(), Some("hello"));
        assert_eq!(
            value["entrypoint"],
            toml::Value::try_from(vec!["/bin/hello", "--loud"]).unwrap()
        );
        assert_eq!(
            value["env"],
            toml::Value::try_from(vec![vec!["GREETING", "hi \"there\""]]).unwrap()
        );
        assert_eq!(value["workdir"].as_str(), Some("/"));
        assert_eq!(value["network"].as_bool(), Some(true));
        let volumes = value["volume"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[0]["name"].as_str(), Some("data"));
        assert_eq!(volumes[1]["mount"].as_str(), Some("/var/log"));
        assert!(volumes[0].get("size_mib").is_none());
    }

    #[test]
    fn archives_concatenate_into_one_initramfs() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init");
        std::fs::write(&init, b"\x7fELF-init").unwrap();
        let module = dir.path().join("m/virtio_blk.ko");
        std::fs::create_dir_all(module.parent().unwrap()).unwrap();
        std::fs::write(&module, b"ko bytes").unwrap();
        let index = ModuleIndex::parse(&format!(
            "nullos-module-index v1\nkernel k\nmodule virtio_blk {} boot=0 depends=-\n",
            module.display()
        ))
        .unwrap();
        let base = dir.path().join("initrd.base");
        write_base(&base, &init, &index).unwrap();
        let out = dir.path().join("hello.initrd");
        write_workload(&out, &base, "name = \"hello\"\n").unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let mut names = Vec::new();
        let mut files = BTreeMap::new();
        let mut cursor = std::io::Cursor::new(&bytes[..]);
        loop {
            let mut reader = cpio::NewcReader::new(cursor).unwrap();
            if reader.entry().is_trailer() {
                cursor = reader.finish().unwrap();
                if cursor.position() == bytes.len() as u64 {
                    break;
                }
                continue;
            }
            let name = reader.entry().name().to_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut data).unwrap();
            names.push(name.clone());
            files.insert(name, data);
            cursor = reader.finish().unwrap();
        }
        assert_eq!(files["init"], b"\x7fELF-init");
        assert_eq!(files["etc/nullos/guest.toml"], b"name = \"hello\"\n");
        let module_key = module.to_str().unwrap().trim_start_matches('/');
        assert_eq!(files[module_key], b"ko bytes");
        assert!(String::from_utf8_lossy(&files["lib/modules/nullos.index"])
            .contains("module virtio_blk"));
        assert!(names.contains(&"dev/console".to_owned()));
        // Parents come before their children in both archives.
        let etc = names.iter().position(|n| n == "etc").unwrap();
        assert!(
            etc < names
                .iter()
                .position(|n| n == "etc/nullos/guest.toml")
                .unwrap()
        );
    }
}

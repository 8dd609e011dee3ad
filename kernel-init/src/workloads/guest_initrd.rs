//! The guest's initramfs, assembled by the node at run time from what it already runs and
//! trusts: its own `/init` (which runs the guest role when `nullos.role=guest`), the modules a
//! guest needs from the node's module set, and an index for them in the same text format.
//!
//! The base archive is written once per boot ([`BASE_PATH`]); each workload's initramfs is that
//! base followed by a second, small archive holding `/etc/nullos/guest.toml` (the kernel
//! unpacks concatenated cpio archives in order). Archives are uncompressed newc.
//!
//! The archives are written by the `initramfs` crate (the writer image-builder uses too, kept
//! small for PID 1): the tree holds paths only, and files are streamed from disk into the
//! archive instead of being held in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use initramfs::Tree;
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
/// Modules a guest loads when they are modules of the node's kernel, and finds built in
/// otherwise: ext4 and its crc32c for volumes (built into Debian's cloud kernel, modules of the
/// generic one that metal nodes and their guests run).
pub const GUEST_MODULES_IF_MODULAR: [&str; 2] = ["crc32c_generic", "ext4"];
/// The index path inside an initramfs (the same as the node's).
const INDEX_PATH: &str = interfaces::paths::relative(interfaces::paths::MODULE_INDEX);

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
    /// Anything else the archive writer refuses (a path added twice, a file that shrank).
    #[error("guest initramfs")]
    Archive(#[source] initramfs::Error),
}

/// The guest's module index: [`GUEST_MODULES`] (and those of [`GUEST_MODULES_IF_MODULAR`] the
/// node's index has) and their dependencies, from the node's index,
/// with the aliases of those modules and nothing marked for boot-time loading.
pub fn guest_index(node: &ModuleIndex) -> Result<ModuleIndex, GuestInitrdError> {
    let mut chosen: BTreeMap<String, ModuleEntry> = BTreeMap::new();
    let if_modular = GUEST_MODULES_IF_MODULAR
        .iter()
        .filter(|name| node.modules.iter().any(|m| m.name == **name));
    for name in GUEST_MODULES.iter().chain(if_modular) {
        let order = node
            .load_order(name)
            .map_err(|_| GuestInitrdError::MissingModule((*name).to_owned()))?;
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

/// The archive writer's errors as this module's, for the archive at `out`.
fn archive_err(out: &Path) -> impl Fn(initramfs::Error) -> GuestInitrdError + '_ {
    move |e| match e {
        initramfs::Error::BadPath(path) => GuestInitrdError::BadPath(path),
        initramfs::Error::ReadSource { path, source } => GuestInitrdError::Read { path, source },
        initramfs::Error::TooLarge(path) => GuestInitrdError::TooLarge(path.into()),
        initramfs::Error::Write(source) => GuestInitrdError::Write {
            path: out.to_owned(),
            source,
        },
        other => GuestInitrdError::Archive(other),
    }
}

/// Writes `tree` as a newc archive (mtime 0) to the file `out`, synced.
fn write_tree(tree: &Tree, out: &Path) -> Result<(), GuestInitrdError> {
    let write_err = |source| GuestInitrdError::Write {
        path: out.to_owned(),
        source,
    };
    let file = File::create(out).map_err(write_err)?;
    let w = tree
        .write_to(BufWriter::new(file), 0)
        .map_err(archive_err(out))?;
    w.into_inner()
        .map_err(|e| write_err(e.into_error()))?
        .sync_all()
        .map_err(write_err)
}

/// Writes the base archive to `out`: `/init` (from `init`), `/dev/console`, the mount points,
/// the guest modules (read from the node's filesystem at their index paths) and their index.
pub fn write_base(out: &Path, init: &Path, index: &ModuleIndex) -> Result<(), GuestInitrdError> {
    let partial = out.with_extension("partial");
    let err = archive_err(&partial);
    let mut tree = Tree::new();
    tree.add_file_from_disk("/init", init, 0o755)
        .map_err(&err)?;
    tree.add_char_device("/dev/console", 5, 1, 0o600)
        .map_err(&err)?;
    for dir in ["/proc", "/sys", "/run", "/tmp", "/mnt"] {
        tree.add_dir(dir).map_err(&err)?;
    }
    tree.add_file(
        &format!("/{INDEX_PATH}"),
        index.to_text().into_bytes(),
        0o644,
    )
    .map_err(&err)?;
    for module in &index.modules {
        tree.add_file_from_disk(&module.path, &module.path, 0o644)
            .map_err(&err)?;
    }
    write_tree(&tree, &partial)?;
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
    let mut tree = Tree::new();
    tree.add_file(
        &format!("/{GUEST_TOML_PATH}"),
        guest_toml.as_bytes().to_vec(),
        0o644,
    )
    .map_err(archive_err(out))?;
    // A few hundred bytes: written in memory, then appended.
    let tail = tree.to_cpio(0).map_err(archive_err(out))?;
    let partial = out.with_extension("partial");
    std::fs::copy(base, &partial).map_err(|source| GuestInitrdError::Read {
        path: base.to_owned(),
        source,
    })?;
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

    /// The metal kernel has ext4 as a module: guests with volumes need it in their index.
    #[test]
    fn ext4_joins_the_guest_index_when_the_node_has_it_as_a_module() {
        let text = format!(
            "{}module ext4 /lib/modules/k/ext4.ko boot=0 depends=jbd2\n\
             module jbd2 /lib/modules/k/jbd2.ko boot=0 depends=-\n",
            node_index().to_text()
        );
        let index = guest_index(&ModuleIndex::parse(&text).unwrap()).unwrap();
        let names: Vec<&str> = index.modules.iter().map(|m| m.name.as_str()).collect();
        assert!(
            names.contains(&"ext4") && names.contains(&"jbd2"),
            "{names:?}"
        );
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
    fn the_guest_initramfs_holds_no_shell_and_no_executable_but_init() {
        // The builder's output for a workload, as the node writes it: base + guest.toml.
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init");
        std::fs::write(&init, b"\x7fELF-init").unwrap();
        let mut index_text = "nullos-module-index v1\nkernel k\n".to_owned();
        for name in GUEST_MODULES {
            let module = dir.path().join(format!("m/{name}.ko"));
            std::fs::create_dir_all(module.parent().unwrap()).unwrap();
            std::fs::write(&module, b"ko bytes").unwrap();
            index_text.push_str(&format!(
                "module {name} {} boot=0 depends=-\n",
                module.display()
            ));
        }
        let index = ModuleIndex::parse(&index_text).unwrap();
        let base = dir.path().join("initrd.base");
        write_base(&base, &init, &index).unwrap();
        let out = dir.path().join("hello.initrd");
        write_workload(&out, &base, "name = \"hello\"\n").unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(
            initramfs::audit::shell_problems(&bytes, &["init"]),
            Vec::<String>::new()
        );
        // And the check bites: the same archive with an executable appended fails it.
        let mut tree = Tree::new();
        tree.add_file("/bin/sh", b"\x7fELF".to_vec(), 0o755)
            .unwrap();
        let mut with_shell = bytes.clone();
        with_shell.extend(tree.to_cpio(0).unwrap());
        assert_eq!(
            initramfs::audit::shell_problems(&with_shell, &["init"]).len(),
            2
        );
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
        // Both archives, one after the other, as the kernel reads them.
        for entry in initramfs::Reader::new(&bytes) {
            let entry = entry.unwrap();
            names.push(entry.name.to_owned());
            files.insert(entry.name.to_owned(), entry.data.to_vec());
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

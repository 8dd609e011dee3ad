//! Signed workload images: `image-builder workload <dir> --out <dir2> --key <file>...`.
//!
//! A workload source folder holds `workload.toml` ([`config`]) and optionally a `rootfs/` tree.
//! The build
//! 1. assembles the image's file tree ([`tree`]): `rootfs/`, then the `[files]` entries, then
//!    empty directories for /dev /etc /proc /run /sys /tmp and every volume's mount point;
//! 2. checks that the entrypoint can run inside the image ([`entrypoint`]);
//! 3. writes `root.img`, a reproducible zstd squashfs ([`squashfs`]), and hashes it (BLAKE3);
//! 4. writes `workload.manifest`, the [`trust::WorkloadManifest`] signed by every key given.
//!
//! The output folder then holds exactly those two files; the node verifies the manifest with
//! [`trust::verify_workload`] and the image against `manifest.root` before it boots anything.

pub mod config;
pub mod entrypoint;
pub mod squashfs;
pub mod tree;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use trust::{ArtifactRef, Hasher, PublicKey, SecretKey, WorkloadManifest};

pub use config::{WorkloadConfig, WorkloadConfigError, CONFIG_FILE};
pub use squashfs::SquashfsError;
pub use tree::{RootTree, TreeError, SYSTEM_DIRS};

// The signed manifest's and the root image's file names in a built workload folder.
pub use interfaces::paths::{
    WORKLOAD_MANIFEST_FILE as MANIFEST_FILE, WORKLOAD_ROOT_FILE as ROOT_FILE,
};
/// The optional tree copied into the image, inside the source folder.
pub const ROOTFS_DIR: &str = "rootfs";

/// Why a workload could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// `workload.toml` is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] WorkloadConfigError),
    /// The image's file tree could not be assembled.
    #[error("cannot assemble the root image")]
    Tree(#[from] TreeError),
    /// The entrypoint would not run in the image.
    #[error("refused: {0}")]
    Entrypoint(String),
    /// The squashfs image could not be written.
    #[error("cannot write {path}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: SquashfsError,
    },
    /// The manifest is not valid (a bound the config checks missed).
    #[error("the workload manifest is invalid")]
    Manifest(#[source] trust::DecodeError),
    /// No key was given.
    #[error("no signing key: give at least one --key")]
    NoKey,
    /// Signing failed.
    #[error("cannot sign the workload manifest")]
    Sign(#[source] trust::SignError),
    /// An output file could not be written or read back.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl WorkloadError {
    /// Whether the fault is in the user's input (exit status 2) rather than the operation.
    pub fn is_bad_input(&self) -> bool {
        match self {
            WorkloadError::Config(e) => e.is_bad_input(),
            WorkloadError::NoKey => true,
            _ => false,
        }
    }
}

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct BuiltWorkload {
    /// The signed manifest's contents.
    pub manifest: WorkloadManifest,
    /// `<out>/root.img`.
    pub root_path: PathBuf,
    /// `<out>/workload.manifest`.
    pub manifest_path: PathBuf,
    /// Who signed, in key order.
    pub signers: Vec<PublicKey>,
}

/// Builds the workload described in `dir` into `out` (created if missing), signed by `keys`,
/// with every timestamp set to `mtime`.
pub fn build(
    dir: &Path,
    out: &Path,
    keys: &[SecretKey],
    mtime: u32,
) -> Result<BuiltWorkload, WorkloadError> {
    if keys.is_empty() {
        return Err(WorkloadError::NoKey);
    }
    let cfg = WorkloadConfig::load(dir)?;
    let tree = assemble(dir, &cfg)?;
    if let Some(argv0) = cfg.entrypoint.first() {
        entrypoint::check(&tree, argv0, &|p| std::fs::read(p))
            .map_err(WorkloadError::Entrypoint)?;
    }

    std::fs::create_dir_all(out).map_err(|source| WorkloadError::Write {
        path: out.to_owned(),
        source,
    })?;
    let root_path = out.join(ROOT_FILE);
    let root = write_image(&tree, mtime, &root_path)?;

    let manifest = WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: cfg.name,
        version: cfg.version,
        root,
        kernel: None,
        initrd: None,
        entrypoint: cfg.entrypoint,
        env: cfg.env,
        workdir: cfg.workdir,
        vcpus: cfg.vcpus,
        memory_mib: cfg.memory_mib,
        volumes: cfg.volumes,
        network: cfg.network,
        restart: cfg.restart,
    };
    manifest.validate().map_err(WorkloadError::Manifest)?;
    let mut document = manifest.to_document();
    for key in keys {
        document.sign(key).map_err(WorkloadError::Sign)?;
    }
    let manifest_path = out.join(MANIFEST_FILE);
    write_atomically(&manifest_path, |f| {
        f.write_all(&document.encode())
            .map_err(|source| WorkloadError::Write {
                path: manifest_path.clone(),
                source,
            })
    })?;
    Ok(BuiltWorkload {
        manifest,
        root_path,
        manifest_path,
        signers: keys.iter().map(SecretKey::public).collect(),
    })
}

/// The image's tree: `rootfs/`, `[files]`, then the system directories and mount points.
pub fn assemble(dir: &Path, cfg: &WorkloadConfig) -> Result<RootTree, TreeError> {
    let mut tree = RootTree::new();
    let rootfs = dir.join(ROOTFS_DIR);
    if rootfs.is_dir() {
        tree.add_host_tree(&rootfs)?;
    }
    for (dest, source) in &cfg.files {
        tree.add_host_file(dest, source)?;
    }
    for d in SYSTEM_DIRS {
        tree.add_dir(d)?;
    }
    for v in &cfg.volumes {
        tree.add_dir(&v.mount)?;
    }
    Ok(tree)
}

/// Writes the squashfs to `path` (through a temporary file) and returns its digest and size,
/// hashed from the bytes on disk.
fn write_image(tree: &RootTree, mtime: u32, path: &Path) -> Result<ArtifactRef, WorkloadError> {
    let io_err = |source| WorkloadError::Write {
        path: path.to_owned(),
        source,
    };
    write_atomically(path, |f| {
        let mut out = BufWriter::new(f);
        squashfs::write(tree, mtime, &mut out).map_err(|source| WorkloadError::Image {
            path: path.to_owned(),
            source,
        })?;
        out.flush().map_err(io_err)
    })?;
    let mut file = File::open(path).map_err(io_err)?;
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(ArtifactRef {
        digest: hasher.finalize(),
        size,
    })
}

/// Writes `path` via `<path>.tmp` and a rename, so a failed build never leaves a half file
/// under the final name.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), WorkloadError>,
) -> Result<(), WorkloadError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let io_err = |source| WorkloadError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = File::create(&tmp).map_err(io_err)?;
    let filled = fill(&mut file).and_then(|()| file.sync_all().map_err(io_err));
    drop(file);
    if let Err(e) = filled {
        // Best effort: the build already failed with `e`, which is what the user needs to see.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(io_err)
}

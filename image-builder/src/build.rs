//! `image-builder build`: from a config to the release folder.

use std::path::{Path, PathBuf};

use trust::{BuildInputs, Digest};

use crate::config::BuildConfig;
use crate::initrd::InitrdTree;
use crate::kernel::KernelSource;
use crate::release::{CMDLINE_FILE, INITRD_FILE, KERNEL_FILE, MANIFEST_FILE};
use crate::{compress, initrd, keys, lock, modules, pxe, release, stage0, tools, usb};

// Where things go in the image: the paths `init` reads them from (`interfaces::paths`).
pub use interfaces::paths::{
    GUEST_KERNEL as GUEST_KERNEL_PATH, MODULE_INDEX as MODULE_INDEX_PATH,
    NODE_CONFIG as NODE_CONFIG_PATH, VMM as VMM_PATH, WORKLOADS_DIR,
    WORKLOAD_POLICY as WORKLOAD_POLICY_PATH,
};
/// The files of a built workload folder.
const WORKLOAD_FILES: [&str; 2] = [
    interfaces::paths::WORKLOAD_MANIFEST_FILE,
    interfaces::paths::WORKLOAD_ROOT_FILE,
];

/// Why a build failed. Each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading the kernel.
    #[error("kernel")]
    Kernel(#[from] crate::kernel::KernelError),
    /// The compression is not possible with this kernel.
    #[error("initrd compression")]
    Compression(#[from] compress::CompressError),
    /// A signing key.
    #[error("signing key")]
    Key(#[from] keys::KeyFileError),
    /// The init binary.
    #[error("init binary {path}: {problem}")]
    Init {
        /// The binary.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The vmm binary.
    #[error("vmm binary {path}: {problem}")]
    Vmm {
        /// The binary.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A workload folder.
    #[error("workload {path}: {problem}")]
    Workload {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// `node.toml` could not be written.
    #[error("node configuration")]
    NodeConfig(#[from] interfaces::node::NodeConfigError),
    /// A host tool or one of its libraries.
    #[error("tools")]
    Tools(#[from] tools::ToolsError),
    /// The package list of the tools' sysroot.
    #[error("tools sysroot")]
    Lock(#[from] lock::LockError),
    /// An extra file.
    #[error("cannot read extra file {path}")]
    ExtraFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Choosing modules.
    #[error("modules")]
    Modules(#[from] modules::ModulesError),
    /// Assembling the initramfs.
    #[error("initramfs")]
    Initrd(#[from] initrd::InitrdError),
    /// Signing the release.
    #[error("release")]
    Release(#[from] release::ReleaseError),
    /// Making the USB stick image.
    #[error("usb image")]
    Usb(#[from] usb::UsbError),
    /// Writing an output.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Reports progress of the long steps (the binary shows it on a terminal).
pub trait Progress {
    /// A new step starts.
    fn step(&self, message: &str);
}

/// Progress that goes nowhere.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: &str) {}
}

/// One file the build wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Where.
    pub path: PathBuf,
    /// How many bytes.
    pub size: u64,
    /// BLAKE3 of the bytes.
    pub digest: Digest,
}

/// What a build produced.
#[derive(Debug)]
pub struct BuildReport {
    /// The files written, in order.
    pub written: Vec<Written>,
    /// The kernel release.
    pub kernel_release: String,
    /// How many modules went into the image.
    pub module_count: usize,
    /// Size of the uncompressed initramfs.
    pub initrd_uncompressed: u64,
}

/// Builds the image described by `config` into `out`. `mtime` is the timestamp every archive
/// entry carries (`SOURCE_DATE_EPOCH`, or 0).
pub fn build(
    config: &BuildConfig,
    out: &Path,
    mtime: u32,
    progress: &dyn Progress,
) -> Result<BuildReport, BuildError> {
    // Cheap checks first, so a bad key or init fails before the slow steps.
    let signing_keys = config
        .signing_keys
        .iter()
        .map(|p| keys::load_secret(p))
        .collect::<Result<Vec<_>, _>>()?;
    let init = read_init(&config.init)?;
    let vmm = match &config.vmm {
        Some(path) => Some(read_vmm(path)?),
        None => None,
    };
    let workload_policy = match &config.workload_policy {
        Some(path) => Some(keys::load_trust(path)?),
        None => None,
    };
    // Self-update: the node verifies the releases it downloads against this policy.
    let release_policy = match &config.update {
        Some(update) => Some(keys::load_trust(&update.policy)?),
        None => None,
    };
    let workloads = match &workload_policy {
        Some(policy) => read_workloads(&config.workloads, policy)?,
        None => Vec::new(),
    };
    let (tool_files, packages) = match &config.tools_sysroot {
        Some(sysroot) => (
            tools::resolve(sysroot, &config.tools)?,
            lock::sysroot_packages(sysroot)?,
        ),
        None => (tools::resolve(Path::new("/"), &config.tools)?, Vec::new()),
    };
    let stub = match &config.usb {
        Some(u) => Some(usb::read_stub(&u.stub)?),
        None => None,
    };
    if let Some(key) = config.usb.as_ref().and_then(|u| u.secure_boot.as_ref()) {
        usb::sign::check_files(&key.key, &key.cert).map_err(usb::UsbError::from)?;
    }

    progress.step("reading kernel");
    let mut kernel = KernelSource::open(&config.kernel)?;
    config.compression.check_kernel_config(&kernel.config)?;
    if let Some(key) = config.usb.as_ref().and_then(|u| u.secure_boot.as_ref()) {
        // Under Secure Boot stage 0's kernel is locked down and kexecs only kernels signed by
        // a key it trusts, the firmware's db included: the release kernel carries the same
        // signature as the UKI (replacing Debian's), and the manifest's digest covers it.
        progress.step("signing the release kernel for Secure Boot");
        let time = usb::sign::signing_time(&key.cert).map_err(usb::UsbError::from)?;
        kernel.bzimage = usb::sign::sign(&kernel.bzimage, &key.key, &key.cert, time)
            .map_err(usb::UsbError::from)?;
    }

    progress.step("resolving modules");
    let selected = modules::select(&kernel, &config.modules)?;
    let module_count = selected.files.len();

    progress.step("assembling initramfs");
    let mut tree = pid1_tree(init, &["/root", "/var"], selected)?;
    tree.add_file(NODE_CONFIG_PATH, node_config(config)?.into_bytes(), 0o644)?;
    for file in &config.files {
        let data = std::fs::read(&file.source).map_err(|source| BuildError::ExtraFile {
            path: file.source.clone(),
            source,
        })?;
        tree.add_file(&file.dest, data, file.mode)?;
    }
    if let Some(vmm) = vmm {
        tree.add_file(VMM_PATH, vmm, 0o755)?;
        // The guests boot the node's own kernel. A node with a vmm runs workloads whether they
        // are baked in or arrive later as contracts, so the kernel goes in with the vmm.
        tree.add_file(GUEST_KERNEL_PATH, kernel.bzimage.clone(), 0o644)?;
    }
    if let Some(policy) = &workload_policy {
        tree.add_file(WORKLOAD_POLICY_PATH, policy.to_text().into_bytes(), 0o644)?;
    }
    if let Some(policy) = &release_policy {
        tree.add_file(
            interfaces::paths::RELEASE_POLICY,
            policy.to_text().into_bytes(),
            0o644,
        )?;
    }
    for workload in workloads {
        for (file, bytes) in WORKLOAD_FILES
            .iter()
            .zip([workload.manifest, workload.root])
        {
            tree.add_file(
                &format!("{WORKLOADS_DIR}/{}/{file}", workload.name),
                bytes,
                0o644,
            )?;
        }
    }
    for tool in tool_files {
        let data = std::fs::read(&tool.source).map_err(|source| BuildError::ExtraFile {
            path: tool.source.clone(),
            source,
        })?;
        tree.add_file(&tool.dest, data, tool.mode)?;
    }
    let cpio = tree.to_cpio(mtime)?;

    progress.step(&format!(
        "compressing initramfs ({} KiB, {}{})",
        cpio.len() / 1024,
        config.compression.name(),
        config
            .compression
            .level()
            .map(|l| format!(" -{l}"))
            .unwrap_or_default()
    ));
    let initrd = config.compression.compress(&cpio)?;
    let cmdline = config.cmdline.as_bytes();

    progress.step("signing release");
    let manifest = release::manifest(
        config.release.version,
        &config.release.profile,
        &config.release.target,
        &kernel.bzimage,
        &initrd,
        cmdline,
        BuildInputs {
            kernel_package: kernel.package.clone(),
            kernel_version: kernel.version.clone(),
            packages,
        },
    );
    let signed = release::sign(&manifest, &signing_keys)?;

    let boot_image = match &config.stage0 {
        Some(section) => {
            progress.step("assembling the boot image (stage 0)");
            Some(stage0::build(
                section,
                &config.release,
                (&config.kernel, &kernel),
                &config.compression,
                mtime,
            )?)
        }
        None => None,
    };
    let uki = match &boot_image {
        Some(b) => usb::BootTriple {
            kernel: &b.kernel,
            initrd: &b.initrd,
            cmdline: &b.cmdline,
        },
        None => usb::BootTriple {
            kernel: &kernel.bzimage,
            initrd: &initrd,
            cmdline,
        },
    };
    let usb_image = match &stub {
        Some(stub) => {
            progress.step("writing usb image");
            let contents = usb::UsbContents {
                stub,
                uki,
                manifest: &signed,
                kernel: &kernel.bzimage,
                initrd: &initrd,
                cmdline,
                version: config.release.version,
                profile: &config.release.profile,
            };
            let mut uki = usb::build_uki(&contents)?;
            if let Some(key) = config.usb.as_ref().and_then(|u| u.secure_boot.as_ref()) {
                progress.step("signing the UKI for Secure Boot");
                let time = usb::sign::signing_time(&key.cert).map_err(usb::UsbError::from)?;
                uki = usb::sign::sign(&uki, &key.key, &key.cert, time)
                    .map_err(usb::UsbError::from)?;
            }
            Some(usb::build_image_with_uki(&contents, &uki)?)
        }
        None => None,
    };
    let release_files: [(&str, &[u8]); 4] = [
        (KERNEL_FILE, &kernel.bzimage),
        (INITRD_FILE, &initrd),
        (CMDLINE_FILE, cmdline),
        (MANIFEST_FILE, &signed),
    ];
    let mut outputs: Vec<(String, &[u8])> = release_files
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), *bytes))
        .collect();
    // With a boot image, PXE boots stage 0, which fetches the release over HTTP.
    let script = match (&config.stage0, &boot_image) {
        (Some(section), Some(b)) => {
            let boot_cmdline = String::from_utf8_lossy(&b.cmdline).into_owned();
            pxe::stage0_script(&boot_cmdline, &section.pxe_release)
        }
        _ => pxe::script(&config.cmdline),
    };
    match &boot_image {
        Some(b) => {
            outputs.extend(pxe::bundle(&script, &b.kernel, &b.initrd));
            outputs.extend(pxe::release_files(&release_files));
        }
        None => outputs.extend(pxe::bundle(&script, &kernel.bzimage, &initrd)),
    }
    if let Some(b) = &boot_image {
        let dir = stage0::BOOT_DIR;
        outputs.push((format!("{dir}/{KERNEL_FILE}"), &b.kernel));
        outputs.push((format!("{dir}/{INITRD_FILE}"), &b.initrd));
        outputs.push((format!("{dir}/{CMDLINE_FILE}"), &b.cmdline));
    }
    if let Some(image) = &usb_image {
        outputs.push((usb::USB_FILE.into(), image));
    }
    progress.step("writing outputs");
    let mut written = Vec::with_capacity(outputs.len());
    for (name, bytes) in outputs {
        let path = out.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| BuildError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        write_atomically(&path, bytes)?;
        written.push(Written {
            path,
            size: bytes.len() as u64,
            digest: Digest::of(bytes),
        });
    }
    Ok(BuildReport {
        written,
        kernel_release: kernel.release,
        module_count,
        initrd_uncompressed: cpio.len() as u64,
    })
}

/// The part of an initramfs every NullOS PID 1 needs: `/init`, `/dev/console` (the kernel opens
/// it for PID 1 before devtmpfs is mounted), the mount points, and the chosen modules with their
/// coldplug index. `extra_dirs` are more empty folders.
pub(crate) fn pid1_tree(
    init: Vec<u8>,
    extra_dirs: &[&str],
    modules: modules::SelectedModules,
) -> Result<InitrdTree, initrd::InitrdError> {
    let mut tree = InitrdTree::new();
    tree.add_file("/init", init, 0o755)?;
    tree.add_char_device("/dev/console", 5, 1, 0o600)?;
    for dir in ["/proc", "/sys", "/run", "/tmp"].iter().chain(extra_dirs) {
        tree.add_dir(dir)?;
    }
    tree.add_file(
        MODULE_INDEX_PATH,
        modules.index.to_text().into_bytes(),
        0o644,
    )?;
    for (path, bytes) in modules.files {
        tree.add_file(&path, bytes, 0o644)?;
    }
    Ok(tree)
}

/// `/etc/nullos/node.toml`: what `init` knows about the release it belongs to.
fn node_config(config: &BuildConfig) -> Result<String, interfaces::node::NodeConfigError> {
    let key_line = |path: &Path| {
        let text = std::fs::read_to_string(path).map_err(|e| {
            interfaces::node::NodeConfigError::Invalid(format!("read {}: {e}", path.display()))
        })?;
        let key = trust::PublicKey::from_text(text.trim()).map_err(|e| {
            interfaces::node::NodeConfigError::Invalid(format!(
                "{} is not a public key file: {e}",
                path.display()
            ))
        })?;
        Ok::<String, interfaces::node::NodeConfigError>(key.to_text())
    };
    let (notary, notary_key, farm) = match &config.grid {
        Some(grid) => (
            Some(grid.notary.clone()),
            Some(key_line(&grid.notary_key)?),
            grid.farm.as_deref().map(key_line).transpose()?,
        ),
        None => (None, None, None),
    };
    interfaces::NodeConfig {
        version: config.release.version,
        profile: config.release.profile.clone(),
        control: config.control.clone(),
        egress_allow: config.egress_allow.clone(),
        notary,
        notary_key,
        farm,
        release_channel: config.update.as_ref().map(|u| u.channel.clone()),
        release_poll_seconds: config.update.as_ref().map(|u| u.poll_seconds),
    }
    .to_toml()
}

/// Reads the init binary and refuses one that cannot run in an initramfs without libc.
pub(crate) fn read_init(path: &Path) -> Result<Vec<u8>, BuildError> {
    let problem = |problem: String| BuildError::Init {
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        problem(format!(
            "cannot read it ({e}); build it with `make init` (static, for x86_64-unknown-linux-gnu)"
        ))
    })?;
    match initramfs::check_static_executable(&bytes) {
        Ok(()) => Ok(bytes),
        Err(why) => Err(problem(why.to_string())),
    }
}

/// Reads the vmm binary: static, like init (the initramfs has no libc for it).
fn read_vmm(path: &Path) -> Result<Vec<u8>, BuildError> {
    let problem = |problem: String| BuildError::Vmm {
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        problem(format!(
            "cannot read it ({e}); build it static: RUSTFLAGS=\"-C target-feature=+crt-static\" \
             cargo build --release --target x86_64-unknown-linux-gnu -p vmm"
        ))
    })?;
    initramfs::check_static_executable(&bytes).map_err(|why| problem(why.to_string()))?;
    Ok(bytes)
}

/// A verified workload, ready for the image.
#[derive(Debug)]
struct Workload {
    name: String,
    manifest: Vec<u8>,
    root: Vec<u8>,
}

/// Reads each built workload folder and refuses any the node would refuse: a manifest the
/// policy does not accept, a root image that does not match it, two workloads with one name.
fn read_workloads(
    dirs: &[PathBuf],
    policy: &trust::SignerPolicy,
) -> Result<Vec<Workload>, BuildError> {
    let mut out: Vec<Workload> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let problem = |problem: String| BuildError::Workload {
            path: dir.clone(),
            problem,
        };
        let read = |file: &str| {
            std::fs::read(dir.join(file)).map_err(|e| {
                problem(format!(
                    "cannot read {file} ({e}); build the folder with `image-builder workload`"
                ))
            })
        };
        let [manifest_file, root_file] = WORKLOAD_FILES;
        let manifest = read(manifest_file)?;
        let verified = trust::verify_workload(&manifest, policy)
            .map_err(|e| problem(format!("{manifest_file} refused: {}", chain(&e))))?;
        let root = read(root_file)?;
        verified
            .root
            .check(root_file, &root)
            .map_err(|e| problem(e.to_string()))?;
        if out.iter().any(|w| w.name == verified.name) {
            return Err(problem(format!(
                "a workload named '{}' is in the image already",
                verified.name
            )));
        }
        out.push(Workload {
            name: verified.name,
            manifest,
            root,
        });
    }
    Ok(out)
}

/// An error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Writes through a temporary file and a rename, so an interrupted build never leaves a
/// half-written artifact under the final name.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| BuildError::Write {
            path: path.to_owned(),
            source,
        })
}

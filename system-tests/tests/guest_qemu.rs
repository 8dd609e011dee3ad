//! The guest role of `init` for real: the Debian cloud kernel under QEMU's `microvm` machine,
//! whose virtio-mmio devices are announced through ACPI (`LNRO0005`) exactly like our VMM's,
//! with the exit-code port 0x3c1 backed by QEMU's `isa-debug-exit` (QEMU then exits with
//! status `(code << 1) | 1`, so the code the guest reports is checked end to end).
//!
//! The test builds every input itself: the initramfs (the static `init`, the virtio, squashfs
//! and overlay modules with their index, `/etc/nullos/guest.toml`) as an uncompressed newc
//! cpio; the root image, a zstd squashfs holding `probe` (tests/guest_qemu/probe.rs, compiled
//! static with rustc); the volume, an ext4 image from the host's `mke2fs`.
//!
//! Needs: the static init (`make init`, or `RUSTFLAGS="-C target-feature=+crt-static" cargo
//! build --release --target x86_64-unknown-linux-gnu -p kernel-init` into the same target
//! dir, or `NULLOS_INIT=<path>`), the unpacked cloud kernel under build/kernels/cloud (`make
//! kernel`), qemu-system-x86_64 and mke2fs. A missing input is a failure that says how to get
//! it, never a skip.
//!
//! Disk order: checked, not assumed (QEMU's microvm could hand virtio-mmio slots out in either
//! order). With QEMU 7.2 and the Debian 6.1 kernel, the first `virtio-blk-device` on the QEMU
//! command line becomes `/dev/vda`: the same order as our VMM's `--disk` flags. The first boot
//! of [`guest_runs_the_entrypoint_with_volume_network_and_exit_code`] pins it: the 16 MiB
//! volume is passed second and must be mounted from `/dev/vdb`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use backhand::v4::compressor::Compressor;
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};
use image_builder::config::ModulesSection;
use image_builder::initrd::InitrdTree;
use image_builder::kernel::KernelSource;
use qemu::{Accel, Boot, Vm, VmConfig};
use system_tests::repo_root;

/// The guest network of the contract (docs/CONSOLE.md, issue 3). QEMU's user network plays the
/// VMM's: the gateway 10.200.0.1 is the host (its 127.0.0.1); QEMU insists that its DNS
/// forwarder have another address, but nothing here resolves names.
const IP_PARAM: &str = "ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off:10.200.0.1";
/// QEMU exits with this status when the guest writes `code` to the isa-debug-exit port.
fn debug_exit_status(code: u8) -> i32 {
    (i32::from(code) << 1) | 1
}
/// A whole boot, power-off included, under TCG on a shared two-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// The modules the guest initramfs carries (their dependencies are added).
const MODULES: [&str; 6] = [
    "pvpanic_mmio",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "squashfs",
    "overlay",
];

/// The target dir this test binary was built into (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_owned()))
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Inputs shared by every boot.
struct Fixture {
    kernel: PathBuf,
    init: Vec<u8>,
    index: String,
    modules: Vec<(String, Vec<u8>)>,
    root_img: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest_qemu");
        std::fs::create_dir_all(&dir).unwrap();
        let kernel_tree = repo_root().join("build/kernels/cloud");
        let source = KernelSource::open(&kernel_tree).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (fetch it with `make kernel`)",
                kernel_tree.display()
            )
        });
        let kernel = kernel_tree.join(format!("boot/vmlinuz-{}", source.release));
        let wanted = ModulesSection {
            names: MODULES.iter().map(|m| (*m).to_owned()).collect(),
            groups: Vec::new(),
            boot: Vec::new(),
        };
        let selected = image_builder::modules::select(&source, &wanted).unwrap();
        let probe = compile_probe(&dir);
        let root_img = dir.join("root.img");
        write_root_image(&probe, &root_img);
        Fixture {
            kernel,
            init: static_init(),
            index: selected.index.to_text(),
            modules: selected.files,
            root_img,
        }
    })
}

/// Where init's sources are: a static init older than any of them would test stale code.
const INIT_SOURCES: [&str; 2] = ["kernel-init/src", "pid1/src"];

/// The static init, refusing one older than its sources (it would test stale code).
fn static_init() -> Vec<u8> {
    let path = std::env::var_os("NULLOS_INIT").map_or_else(
        || target_dir().join("x86_64-unknown-linux-gnu/release/init"),
        PathBuf::from,
    );
    let build = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release \
                 --target x86_64-unknown-linux-gnu -p kernel-init (or `make init`)";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("static init {}: {e}; build it: {build}", path.display()));
    for sources in INIT_SOURCES {
        let newest_source = newest_mtime(&repo_root().join(sources));
        assert!(
            built >= newest_source,
            "static init {} is older than {sources}; rebuild it: {build}",
            path.display()
        );
    }
    std::fs::read(&path).unwrap()
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let mtime = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap()
        };
        newest = newest.max(mtime);
    }
    newest
}

/// Compiles tests/guest_qemu/probe.rs into a static executable.
fn compile_probe(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest_qemu/probe.rs");
    let out = dir.join("probe");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "rustc {} failed", source.display());
    out
}

/// A zstd squashfs with `/bin/probe` and `/etc` (no `/data`: init must create the volume's
/// mount point in the overlay).
fn write_root_image(probe: &Path, out: &Path) {
    let mut fs = FilesystemWriter::default();
    fs.set_compressor(FilesystemCompressor::new(Compressor::Zstd, None).unwrap());
    fs.set_time(0);
    let dir = NodeHeader::new(0o755, 0, 0, 0);
    fs.push_dir("bin", dir).unwrap();
    fs.push_dir("etc", dir).unwrap();
    let bytes = std::fs::read(probe).unwrap();
    fs.push_file(
        std::io::Cursor::new(bytes),
        "bin/probe",
        NodeHeader::new(0o755, 0, 0, 0),
    )
    .unwrap();
    let mut file = std::fs::File::create(out).unwrap();
    fs.write(&mut file).unwrap();
}

/// The guest initramfs: what the node builds (init, modules, index) plus `guest.toml`.
fn initrd(dir: &Path, guest_toml: Option<&str>) -> PathBuf {
    let f = fixture();
    let mut tree = InitrdTree::new();
    tree.add_file("/init", f.init.clone(), 0o755).unwrap();
    tree.add_char_device("/dev/console", 5, 1, 0o600).unwrap();
    for d in ["/proc", "/sys", "/run", "/tmp"] {
        tree.add_dir(d).unwrap();
    }
    tree.add_file(
        "/lib/modules/nullos.index",
        f.index.clone().into_bytes(),
        0o644,
    )
    .unwrap();
    for (path, bytes) in &f.modules {
        tree.add_file(path, bytes.clone(), 0o644).unwrap();
    }
    if let Some(text) = guest_toml {
        tree.add_file("/etc/nullos/guest.toml", text.as_bytes().to_vec(), 0o644)
            .unwrap();
    }
    let path = dir.join("initrd");
    std::fs::write(&path, tree.to_cpio(0).unwrap()).unwrap();
    path
}

/// A fresh 16 MiB ext4 volume.
fn volume(dir: &Path) -> PathBuf {
    let path = dir.join("vol.img");
    let status = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-F"])
        .arg(&path)
        .arg("16M")
        .status()
        .unwrap_or_else(|e| panic!("mke2fs: {e} (install e2fsprogs)"));
    assert!(status.success(), "mke2fs failed");
    path
}

/// One virtio disk: image path and whether it is read-only.
type Disk<'a> = (&'a Path, bool);

/// Boots the guest on microvm and waits for QEMU to exit; returns the console and status.
fn boot(initrd: &Path, disks: &[Disk<'_>], network: bool) -> (String, Option<i32>) {
    let f = fixture();
    let accel = Accel::detect().unwrap();
    // tsc_early_khz: microvm has no HPET, ACPI PM timer or speaker port, so under TCG the
    // kernel cannot calibrate the TSC and hangs in early boot; a stated frequency skips that.
    let mut cmdline =
        String::from("console=ttyS0 panic=-1 tsc_early_khz=2000000 nullos.role=guest");
    if network {
        cmdline.push(' ');
        cmdline.push_str(IP_PARAM);
    }
    let mut config = VmConfig::new(
        Boot::Direct {
            kernel: f.kernel.clone(),
            initrd: initrd.to_owned(),
            cmdline,
        },
        accel,
    );
    config.memory_mib = 256;
    config.cpus = 1;
    config.nic = None;
    // A second -machine overrides the profile's `pc` (QEMU merges the options).
    let mut args: Vec<String> = vec![
        "-machine".into(),
        "microvm,acpi=on,pit=on,pic=on,rtc=on,auto-kernel-cmdline=off,x-option-roms=off".into(),
        "-device".into(),
        "isa-debug-exit,iobase=0x3c1,iosize=1".into(),
    ];
    // In order: the first virtio-mmio device on the command line becomes vda (module docs).
    for (i, (image, read_only)) in disks.iter().enumerate() {
        let ro = if *read_only { ",readonly=on" } else { "" };
        args.push("-drive".into());
        args.push(format!(
            "id=disk{i},file={},format=raw,if=none{ro}",
            image.display()
        ));
        args.push("-device".into());
        args.push(format!("virtio-blk-device,drive=disk{i}"));
    }
    if network {
        args.push("-netdev".into());
        args.push("user,id=g,net=10.200.0.0/24,host=10.200.0.1,dns=10.200.0.3".into());
        args.push("-device".into());
        args.push("virtio-net-device,netdev=g,mac=52:54:00:12:34:56".into());
    }
    config.extra_args = args.into_iter().map(Into::into).collect();
    let vm = Vm::start(config).unwrap_or_else(|e| panic!("starting QEMU: {e}"));
    let status = vm.wait_exit(BOOT_TIMEOUT);
    let console = vm.serial_text().unwrap_or_default();
    let status = status.unwrap_or_else(|e| panic!("{e}\n--- console ---\n{console}"));
    (console, status.code())
}

/// The console lines that contain `needle`.
fn lines_with<'a>(console: &'a str, needle: &str) -> Vec<&'a str> {
    console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.contains(needle))
        .collect()
}

fn assert_line(console: &str, needle: &str) {
    assert!(
        !lines_with(console, needle).is_empty(),
        "no console line contains {needle:?}\n--- console ---\n{console}"
    );
}

/// A host TCP server the guest reaches through the gateway: answers each line with `pong`.
fn pong_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                let _ = (&stream).write_all(format!("pong {}\n", line.trim()).as_bytes());
            }
        }
    });
    port
}

fn guest_toml(entrypoint: &str, extra: &str) -> String {
    format!(
        "name = \"probe\"\nentrypoint = {entrypoint}\nenv = [[\"GREETING\", \"hi there\"]]\n\
         workdir = \"/data\"\nnetwork = true\n{extra}[[volume]]\nname = \"data\"\nmount = \"/data\"\n"
    )
}

#[test]
fn guest_runs_the_entrypoint_with_volume_network_and_exit_code() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let vol = volume(dir.path());
    let port = pong_server();
    let f = fixture();
    let disks: [Disk<'_>; 2] = [(&f.root_img, true), (&vol, false)];

    for (run, code) in [(1, 3u8), (2, 0u8)] {
        let entrypoint = format!("[\"/bin/probe\", \"{code}\", \"10.200.0.1:{port}\"]");
        let initrd = initrd(dir.path(), Some(&guest_toml(&entrypoint, "")));
        let (console, status) = boot(&initrd, &disks, true);
        println!("--- boot {run} ---\n{console}");
        assert_line(&console, "init: info: module loaded: virtio_mmio");
        assert_line(
            &console,
            "init: info: guest: root image /dev/vda on /run/guest/lower (squashfs, read-only)",
        );
        assert_line(
            &console,
            "init: info: guest: volume data /dev/vdb on /newroot/data (ext4)",
        );
        assert_line(
            &console,
            "init: info: network: eth0 10.200.0.2/24 via 10.200.0.1 dns 10.200.0.1",
        );
        assert_line(&console, "probe: hello from the guest");
        assert_line(
            &console,
            "probe: env GREETING=hi there PATH=/usr/local/bin:/usr/bin:/bin",
        );
        assert_line(&console, "probe: cwd /data");
        assert_line(&console, "probe: hostname probe");
        assert_line(&console, "probe: resolv nameserver 10.200.0.1");
        assert_line(&console, "probe: stdin /dev/null");
        assert_line(&console, "probe: root writable");
        assert_line(&console, &format!("probe: count={run}"));
        assert_line(&console, "probe: tcp reply pong hello from the guest");
        assert_line(
            &console,
            &format!("init: info: workload probe exited code={code}"),
        );
        assert_line(&console, "nullos: poweroff");
        assert!(lines_with(&console, "init: error:").is_empty(), "{console}");
        assert_eq!(status, Some(debug_exit_status(code)), "{console}");
    }
}

#[test]
fn guest_without_root_disk_reports_setup_failure() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let initrd = initrd(dir.path(), Some(&guest_toml("[\"/bin/probe\"]", "")));
    let (console, status) = boot(&initrd, &[], true);
    println!("{console}");
    let errors = lines_with(&console, "init: error:");
    assert_eq!(errors.len(), 1, "{console}");
    assert!(
        errors[0].ends_with("init: error: guest: root disk /dev/vda did not appear within 10 s"),
        "{}",
        errors[0]
    );
    assert!(lines_with(&console, "probe: hello").is_empty(), "{console}");
    assert_eq!(status, Some(debug_exit_status(127)), "{console}");
}

#[test]
fn guest_with_bad_config_or_entrypoint_reports_setup_failure() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let f = fixture();
    let vol = volume(dir.path());
    let disks: [Disk<'_>; 2] = [(&f.root_img, true), (&vol, false)];
    let cases = [
        (
            Some(guest_toml("[\"/bin/no-such-program\"]", "")),
            "init: error: guest: start /bin/no-such-program (workdir /data): No such file or directory",
        ),
        (
            Some(guest_toml("[\"/bin/probe\"]", "shell = \"/bin/sh\"\n")),
            "init: error: guest: workload config: parse /etc/nullos/guest.toml: ",
        ),
        (
            None,
            "init: error: guest: workload config: read /etc/nullos/guest.toml: No such file or directory",
        ),
    ];
    for (toml, expected) in cases {
        let initrd = initrd(dir.path(), toml.as_deref());
        let (console, status) = boot(&initrd, &disks, true);
        println!("{console}");
        let errors = lines_with(&console, "init: error:");
        assert_eq!(errors.len(), 1, "{console}");
        assert!(
            errors[0].contains(expected),
            "{} lacks {expected:?}",
            errors[0]
        );
        assert!(lines_with(&console, "probe: hello").is_empty(), "{console}");
        assert_eq!(status, Some(debug_exit_status(127)), "{console}");
    }
}

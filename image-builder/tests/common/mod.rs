//! Test fixtures: a small fake Debian kernel tree with real ELF modules, a static "init", keys,
//! and a helper to run the real `image-builder` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use object::write::Object;
use object::{Architecture, BinaryFormat, Endianness, SectionKind};

/// A module ELF object whose `.modinfo` holds `entries`.
pub fn module_elf(entries: &[&str]) -> Vec<u8> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let section = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
    let mut data = Vec::new();
    for e in entries {
        data.extend_from_slice(e.as_bytes());
        data.push(0);
    }
    obj.append_section_data(section, &data, 1);
    obj.write().expect("write module ELF")
}

/// A minimal static x86-64 ELF executable (one PT_LOAD, no PT_INTERP).
pub fn static_executable() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0x40_0078u64.to_le_bytes()); // entry
    b.extend_from_slice(&64u64.to_le_bytes()); // phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // shoff
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&64u16.to_le_bytes());
    b.extend_from_slice(&56u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // phnum
    b.extend_from_slice(&64u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    // PT_LOAD, R+X, whole file at 0x400000.
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&5u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0x40_0000u64.to_le_bytes());
    b.extend_from_slice(&0x40_0000u64.to_le_bytes());
    b.extend_from_slice(&0x80u64.to_le_bytes());
    b.extend_from_slice(&0x80u64.to_le_bytes());
    b.extend_from_slice(&0x1000u64.to_le_bytes());
    b.extend_from_slice(&[0xeb, 0xfe]); // jmp .
    b.resize(0x80, 0);
    b
}

pub const RELEASE: &str = "6.1.0-99-test-amd64";

/// A fake unpacked kernel package under `root`.
pub fn kernel_tree(root: &Path, kernel_config: &str) {
    let boot = root.join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join(format!("vmlinuz-{RELEASE}")), b"MZ fake bzImage").unwrap();
    std::fs::write(boot.join(format!("config-{RELEASE}")), kernel_config).unwrap();
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: linux-image-{RELEASE}\nVersion: 6.1.999-1\n"),
    )
    .unwrap();
    let kernel = root.join(format!("lib/modules/{RELEASE}/kernel"));
    let modules: &[(&str, &[&str])] = &[
        (
            "drivers/net/virtio_net.ko",
            &[
                "name=virtio_net",
                "depends=net_failover,virtio",
                "alias=virtio:d00000001v*",
            ],
        ),
        (
            "drivers/net/net_failover.ko",
            &["name=net_failover", "depends=failover"],
        ),
        ("net/core/failover.ko", &["name=failover", "depends="]),
        ("drivers/virtio/virtio.ko", &["name=virtio", "depends="]),
        (
            "drivers/net/ethernet/intel/e1000e.ko",
            &[
                "name=e1000e",
                "depends=ptp",
                "alias=pci:v00008086d000010D3sv*sd*bc*sc*i*",
            ],
        ),
        (
            "drivers/net/ethernet/realtek/r8169.ko",
            &[
                "name=r8169",
                "depends=",
                "alias=pci:v000010ECd00008168sv*sd*bc*sc*i*",
            ],
        ),
        ("drivers/ptp/ptp.ko", &["name=ptp", "depends=pps_core"]),
        ("drivers/pps/pps_core.ko", &["name=pps_core", "depends="]),
        (
            "drivers/broken/needs_missing.ko",
            &["name=needs_missing", "depends=not_shipped"],
        ),
    ];
    for (path, entries) in modules {
        let p = kernel.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, module_elf(entries)).unwrap();
    }
}

/// A workspace for one test: kernel tree, init, key, config.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        kernel_tree(
            &dir.path().join("kernel"),
            "CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\nCONFIG_RD_XZ=y\n",
        );
        std::fs::write(dir.path().join("init"), static_executable()).unwrap();
        std::fs::write(dir.path().join("motd"), "hello\n").unwrap();
        let f = Fixture { dir };
        let out = f.builder(&["keygen", "--out", "keys/dev.key"]);
        assert!(out.status.success(), "keygen: {}", stderr(&out));
        f.write_config(&f.config_text());
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_text(&self) -> String {
        r#"
[release]
version = 7
profile = "test"

[kernel]
path = "kernel"

[modules]
names = ["virtio-net"]
groups = ["drivers/net/ethernet"]

[init]
path = "init"

[[file]]
source = "motd"
dest = "/etc/motd"

[boot]
cmdline = "console=ttyS0 quiet"

[initrd]
compression = "zstd"
level = 3

[signing]
keys = ["keys/dev.key"]

[node]
control = "10.0.2.2:7878"
"#
        .to_owned()
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.path("image.toml"), text).unwrap();
    }

    /// Runs `image-builder` in the fixture folder.
    pub fn builder(&self, args: &[&str]) -> Output {
        builder_in(self.dir.path(), args, &[])
    }
}

pub fn builder_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    builder_with_umask(cwd, args, env, None)
}

/// Runs `image-builder`, optionally under another umask (set by `sh` before it execs the builder).
pub fn builder_with_umask(
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    umask: Option<&str>,
) -> Output {
    let exe = env!("CARGO_BIN_EXE_image-builder");
    let mut cmd = match umask {
        None => Command::new(exe),
        Some(mask) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("umask {mask} && exec \"$0\" \"$@\""), exe]);
            c
        }
    };
    cmd.args(args).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run image-builder")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failed run with exactly one error line on stderr containing every `needles`.
pub fn assert_one_error_line(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure, got {:?}; stderr: {}",
        out.status,
        stderr(out)
    );
    let err = stderr(out);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one error line, got: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "error line {err:?} does not name {n:?}");
    }
}

/// Packs an unpacked kernel tree into a Debian package (`ar`: debian-binary, control.tar.xz,
/// data.tar.xz), as `dpkg-deb -b` would.
pub fn pack_deb(tree: &Path, deb: &Path) {
    fn tar_xz(root: &Path, skip_debian: bool, only: Option<&str>) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        match only {
            Some(file) => builder
                .append_path_with_name(root.join(file), format!("./{file}"))
                .unwrap(),
            None => {
                for entry in std::fs::read_dir(root).unwrap() {
                    let name = entry.unwrap().file_name().into_string().unwrap();
                    if skip_debian && name == "DEBIAN" {
                        continue;
                    }
                    builder
                        .append_dir_all(format!("./{name}"), root.join(&name))
                        .unwrap();
                }
            }
        }
        let tar = builder.into_inner().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut xz, &tar).unwrap();
        xz.finish().unwrap()
    }
    let control = tar_xz(&tree.join("DEBIAN"), false, Some("control"));
    let data = tar_xz(tree, true, None);
    let mut ar = ar::Builder::new(std::fs::File::create(deb).unwrap());
    for (name, bytes) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar.xz", &control),
        ("data.tar.xz", &data),
    ] {
        let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        ar.append(&header, bytes).unwrap();
    }
}

/// The environment variable that lets tests needing a host tool (unsquashfs, mke2fs) pass
/// without it. CI never sets it: there a missing tool fails the test.
pub const SKIP_HOST_TOOL_TESTS: &str = "NULLOS_SKIP_HOST_TOOL_TESTS";

/// Whether the host tool `what` (`present` says) is there. If not, the test fails naming the
/// Debian package, unless [`SKIP_HOST_TOOL_TESTS`] is `1`, which skips it (printing so).
pub fn host_tool(what: &str, package: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let why = format!("{what} is not installed (apt-get install {package})");
    if std::env::var(SKIP_HOST_TOOL_TESTS).as_deref() == Ok("1") {
        println!("skipped ({SKIP_HOST_TOOL_TESTS}=1): {why}");
        false
    } else {
        panic!("{why}; set {SKIP_HOST_TOOL_TESTS}=1 to skip the tests that need it");
    }
}

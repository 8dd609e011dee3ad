//! Test harness: assemble a guest from `tests/guests/<name>.S` (GNU as + ld, at test time),
//! wrap it in a minimal bzImage, run the `vmm` binary on it and collect exit code, console and
//! log.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where `startup_64` lands: bzImage protected-mode code at 0x100000, 64-bit entry at +0x200.
pub const ENTRY: u64 = 0x10_0200;

/// The environment variable that lets the KVM tests pass without running, on a machine without
/// `/dev/kvm`. CI never sets it: there a missing `/dev/kvm` fails every KVM test.
pub const SKIP_KVM_TESTS: &str = "NULLOS_SKIP_KVM_TESTS";

/// True if the KVM tests can run. Without a usable `/dev/kvm` the test fails with the reason,
/// unless [`SKIP_KVM_TESTS`] is `1`, which skips it (printing so) instead.
pub fn kvm_available() -> bool {
    let why = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => return true,
        Err(e) => format!("/dev/kvm cannot be opened: {e}"),
    };
    if std::env::var(SKIP_KVM_TESTS).as_deref() == Ok("1") {
        println!("skipped ({SKIP_KVM_TESTS}=1): {why}");
        false
    } else {
        panic!("{why}; this test needs KVM (set {SKIP_KVM_TESTS}=1 to skip the KVM tests)");
    }
}

/// Assembles `tests/guests/<name>.S` into flat machine code linked at [`ENTRY`].
pub fn assemble(name: &str, dir: &Path) -> Vec<u8> {
    let bin = dir.join(format!("{name}.bin"));
    link(
        name,
        dir,
        &bin,
        &["--oformat=binary", &format!("-Ttext={ENTRY:#x}")],
    );
    std::fs::read(bin).expect("read guest binary")
}

/// Assembles `tests/guests/<name>.S` into a one-segment ELF executable at 16 MiB (where a
/// vmlinux's `startup_64` sits), as a stand-in for an ELF vmlinux.
pub fn assemble_elf(name: &str, dir: &Path) -> PathBuf {
    let elf = dir.join(format!("{name}.elf"));
    link(
        name,
        dir,
        &elf,
        &["-N", "-Ttext=0x1000000", "--no-warn-rwx-segments"],
    );
    elf
}

fn link(name: &str, dir: &Path, out: &Path, ld_args: &[&str]) {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests");
    let obj = dir.join(format!("{name}.o"));
    let status = Command::new("as")
        .arg("--64")
        .arg("-I")
        .arg(&guests)
        .arg("-o")
        .arg(&obj)
        .arg(guests.join(format!("{name}.S")))
        .status()
        .expect("run as");
    assert!(status.success(), "assembling {name}.S failed");
    let status = Command::new("ld")
        .args(["-nostdlib", "--build-id=none", "-e", "_start"])
        .args(ld_args)
        .arg("-o")
        .arg(out)
        .arg(&obj)
        .status()
        .expect("run ld");
    assert!(status.success(), "linking {name} failed");
}

/// A minimal bzImage (boot protocol 2.15, 64-bit entry) whose protected-mode part is 0x200
/// bytes of padding (where `startup_32` would be) followed by `code` at `startup_64`.
pub fn bzimage(code: &[u8]) -> Vec<u8> {
    let setup_sects = 1u8;
    let setup_len = (usize::from(setup_sects) + 1) * 512;
    let mut img = vec![0u8; setup_len + 0x200];
    img[0x1f1] = setup_sects;
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // version
    img[0x211] = 0x01; // loadflags: LOADED_HIGH
    img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    img[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // xloadflags: XLF_KERNEL_64
    img[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes()); // cmdline_size
    img.extend_from_slice(code);
    img
}

/// What one `vmm` run produced.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub serial: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// A temporary folder holding the guest, its console file and the VMM.
pub struct Vmm {
    pub dir: tempfile::TempDir,
}

impl Vmm {
    pub fn new() -> Self {
        Vmm {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes the bzImage for guest `name` and returns its path.
    pub fn guest(&self, name: &str) -> PathBuf {
        let code = assemble(name, self.dir.path());
        let path = self.dir.path().join(format!("{name}.bzImage"));
        std::fs::write(&path, bzimage(&code)).expect("write bzImage");
        path
    }

    /// Runs `vmm --kernel kernel --serial <file> args...` with a deadline.
    pub fn run(&self, kernel: &Path, args: &[&str]) -> Run {
        let serial = self.dir.path().join("serial.log");
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmm"))
            .arg("--kernel")
            .arg(kernel)
            .arg("--serial")
            .arg(&serial)
            .args(["--log-level", "info"])
            .args(if args.contains(&"--memory-mib") {
                &[][..]
            } else {
                &["--memory-mib", "32"][..]
            })
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn vmm");
        // A hung VMM must fail the test, not hang it.
        while child.try_wait().expect("wait vmm").is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("vmm did not exit within 20 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().expect("collect vmm output");
        Run {
            code: out.status.code(),
            serial: std::fs::read_to_string(&serial).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }
}

//! The stock Debian cloud kernel, as the ELF vmlinux inside its bzImage, entered through PVH on
//! `/dev/kvm`: it must print its banner, our command line, the memory map from the PVH start
//! info and our ACPI RSDP.
//!
//! This machine's `/dev/kvm` is nested in software and runs a guest at about a million
//! instructions a second, so the kernel does not finish booting here (and, without PVH, a bzImage
//! is still decompressing itself when the test would give up); the early console lines are what
//! proves the entry path. The full boot on our VMM is the system test inside a QEMU node.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kvm_available;

/// Magic of the LZ4 "legacy" frame the kernel's build uses for `CONFIG_KERNEL_LZ4`.
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// Each legacy-frame block decompresses to at most 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

fn cloud_kernel() -> PathBuf {
    let boot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/kernels/cloud/boot");
    let found = std::fs::read_dir(&boot).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
    });
    found.unwrap_or_else(|| panic!("no kernel in {}: run `make kernel`", boot.display()))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The ELF vmlinux inside a bzImage: the payload named by `payload_offset`/`payload_length`
/// in the setup header, decompressed from its LZ4 legacy frame.
fn vmlinux_from_bzimage(bz: &[u8]) -> Vec<u8> {
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let protected_mode = (setup_sects + 1) * 512;
    let start = protected_mode + le32(bz, 0x248) as usize;
    let payload = &bz[start..start + le32(bz, 0x24c) as usize];
    assert_eq!(
        le32(payload, 0),
        LZ4_LEGACY_MAGIC,
        "the Debian cloud kernel's payload is LZ4 (CONFIG_KERNEL_LZ4)"
    );
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut at = 4;
    // Blocks: a 4-byte compressed size, then the data; the kernel's build appends the
    // uncompressed size, which is shorter than any block header plus block.
    while at + 4 <= payload.len() {
        let n = le32(payload, at) as usize;
        if n == LZ4_LEGACY_MAGIC as usize {
            at += 4;
            continue;
        }
        if at + 4 + n > payload.len() {
            break;
        }
        let len = lz4_flex::block::decompress_into(&payload[at + 4..at + 4 + n], &mut block)
            .expect("LZ4 block");
        out.extend_from_slice(&block[..len]);
        at += 4 + n;
    }
    assert_eq!(&out[..4], b"\x7fELF", "the payload is an ELF vmlinux");
    out
}

#[test]
fn debian_vmlinux_is_entered_through_pvh_and_prints_its_early_console() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vmlinux = dir.path().join("vmlinux");
    std::fs::write(
        &vmlinux,
        vmlinux_from_bzimage(&std::fs::read(cloud_kernel()).unwrap()),
    )
    .unwrap();
    let serial = dir.path().join("serial.log");
    let cmdline = "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 nullos.test=pvh";
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmm"))
        .arg("--kernel")
        .arg(&vmlinux)
        .args(["--cmdline", cmdline, "--memory-mib", "128"])
        .arg("--serial")
        .arg(&serial)
        .args(["--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmm");

    let expected = [
        "Linux version 6.1.".to_string(),
        format!("Command line: {cmdline}"),
        // The PVH memory map: RAM from 1 MiB to the end of the 128 MiB.
        "BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable".to_string(),
        "ACPI: RSDP 0x00000000000E0000 000024 (v02 NULLOS)".to_string(),
    ];
    // Generous: a shared machine can be several times slower than the ~20 s seen alone.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut console = String::new();
    while Instant::now() < deadline {
        console = std::fs::read_to_string(&serial).unwrap_or_default();
        if expected.iter().all(|line| console.contains(line.as_str())) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vmm: info: kernel PVH entry 0x"),
        "entered through PVH:\n{stderr}"
    );
    for line in &expected {
        assert!(
            console.contains(line.as_str()),
            "missing {line:?} on the console:\n{console}\n{stderr}"
        );
    }
}

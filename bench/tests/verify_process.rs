//! The verify benchmark's stage 0 side as it is timed: `nullos-bench verify-files` as a process
//! of its own, reading a signed release from disk (no timings asserted).

use std::path::Path;

use bench::verify::{Release, VerifyBenchError};
use boot::verify::{CMDLINE_FILE, INITRD_FILE, KERNEL_FILE, MANIFEST_FILE};

const PROGRAM: &str = env!("CARGO_BIN_EXE_nullos-bench");

/// Writes a release signed by a test key into `dir`, with an initramfs large enough to be hashed
/// on several threads; returns the policy file (the public key).
fn write_release(dir: &Path, initrd: &[u8]) -> std::path::PathBuf {
    let key = trust::SecretKey::from_seed([9; 32]);
    let (kernel, cmdline) = (vec![7u8; 300_000], b"console=ttyS0".to_vec());
    let manifest = trust::ReleaseManifest {
        format: trust::ReleaseManifest::FORMAT,
        version: 2,
        profile: "dev".into(),
        target: "x86_64-qemu".into(),
        kernel: trust::ArtifactRef::of(&kernel),
        initrd: trust::ArtifactRef::of(initrd),
        cmdline: trust::ArtifactRef::of(&cmdline),
        build: trust::BuildInputs {
            kernel_package: "k".into(),
            kernel_version: "v".into(),
            packages: Vec::new(),
        },
    };
    let mut document = manifest.to_document();
    document.sign(&key).unwrap();
    for (name, bytes) in [
        (MANIFEST_FILE, document.encode()),
        (KERNEL_FILE, kernel),
        (INITRD_FILE, initrd.to_vec()),
        (CMDLINE_FILE, cmdline),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let policy = dir.join("dev.pub");
    std::fs::write(&policy, key.public().to_string()).unwrap();
    policy
}

#[test]
fn the_timed_process_verifies_the_files_b3sum_hashes_and_refuses_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let initrd: Vec<u8> = (0..3 * 1024 * 1024 + 5)
        .map(|i: usize| u8::try_from(i % 241).unwrap())
        .collect();
    let policy = write_release(dir.path(), &initrd);
    let release = Release::load(dir.path(), &policy).unwrap();

    let line = release.stage0_process_once(Path::new(PROGRAM)).unwrap();
    assert!(
        line.starts_with("nullos: verified release version=2 profile=dev signers="),
        "{line}"
    );
    assert!(
        line.contains(&format!("initrd={}", trust::Digest::of(&initrd))),
        "{line}"
    );

    // The whole benchmark for one round: b3sum (needed: Debian package b3sum) agrees.
    let report = bench::verify::run(&release, 1, Path::new(PROGRAM)).unwrap();
    assert_eq!(
        (
            report.stage0.len(),
            report.b3sum.len(),
            report.b3sum_one_thread.len(),
            report.b3sum_no_mmap.len()
        ),
        (1, 1, 1, 1)
    );
    let summary = report.summary();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert!(summary[0].contains(" vs b3sum "), "{summary:?}");
    assert!(summary[2].contains(" vs b3sum --no-mmap "), "{summary:?}");

    let mut flipped = initrd;
    flipped[2 * 1024 * 1024 + 3] ^= 0x10;
    std::fs::write(dir.path().join(INITRD_FILE), &flipped).unwrap();
    match release.stage0_process_once(Path::new(PROGRAM)) {
        Err(VerifyBenchError::Stage0Failed { stderr, .. }) => {
            assert!(
                stderr.contains("nullos: refused initrd: expected "),
                "{stderr}"
            )
        }
        other => panic!("expected the process to refuse the initrd, got {other:?}"),
    }
}

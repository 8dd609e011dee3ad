//! PXE through stage 0 with a release server that lies: stage 0 refuses what it fetched, names
//! the URL and the digests, and never boots it.

use std::time::{Duration, Instant};

use system_tests::*;

#[test]
fn a_tampered_initrd_over_http_is_refused_and_never_boots() {
    let image = dev_image();
    let release = image.join("pxe/release");
    let server = ReleaseServer::start(&release);
    let original = std::fs::read(release.join("initrd")).unwrap_or_else(|e| panic!("{e}"));
    let mut tampered = original.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    server.replace("initrd", tampered.clone());

    let boot = qemu::image::pxe_boot(&image).unwrap_or_else(|e| panic!("{e}"));
    let vm = start_vm(boot);
    let line = vm
        .wait_for_line("nullos: refused", READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let size = original.len();
    assert_eq!(
        line,
        format!(
            "nullos: refused initrd: {GUEST_RELEASE_URL}/initrd: expected {size} bytes, blake3 {}, found {size} bytes, blake3 {}",
            trust::Digest::of(&original),
            trust::Digest::of(&tampered)
        )
    );
    // Stage 0 tries again after its retry delay and refuses again; nothing ever boots.
    let deadline = Instant::now() + Duration::from_secs(120);
    let console = loop {
        let console = vm.serial_text().unwrap_or_default();
        if console.matches("nullos: refused initrd: ").count() >= 2 || Instant::now() > deadline {
            break console;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        console.matches("nullos: refused initrd: ").count() >= 2,
        "no second try:\n{console}"
    );
    for never in ["nullos: verified", "nullos: booting", "nullos: ready"] {
        assert!(
            !console.contains(never),
            "'{never}' after a refusal:\n{console}"
        );
    }
    vm.kill().unwrap_or_else(|e| panic!("{e}"));
}

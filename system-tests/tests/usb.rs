//! The dev image's USB stick boots on UEFI firmware (OVMF) to a ready node: firmware finds
//! `EFI/BOOT/BOOTX64.EFI` on the stick's EFI System Partition, the UKI's stub starts the kernel
//! with the initramfs and command line from its own sections.

use std::time::Duration;

use system_tests::*;

#[test]
fn dev_usb_stick_boots_on_uefi_to_a_ready_node() {
    let boot = qemu::image::usb_boot(&dev_image()).unwrap_or_else(|e| panic!("{e}"));
    let vm = start_vm(boot);
    // OVMF's boot manager names the device it boots from: the stick, not a kernel QEMU loaded.
    let started = vm
        .wait_for_line("BdsDxe: starting", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        started.contains("USB"),
        "firmware booted something else: {started}"
    );
    assert_dev_node_lifecycle(&vm);
}

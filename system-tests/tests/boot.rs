//! The dev image boots in QEMU to a ready node, directly and over PXE.

use system_tests::*;

#[test]
fn dev_image_boots_directly_to_a_ready_node() {
    let boot = qemu::image::direct_boot(&dev_image()).unwrap_or_else(|e| panic!("{e}"));
    let vm = start_vm(boot);
    assert_dev_node_lifecycle(&vm);
}

#[test]
fn dev_image_boots_over_pxe_to_a_ready_node() {
    // iPXE in the NIC's option ROM: DHCP from QEMU, boot.ipxe over TFTP, then kernel and initrd.
    let boot = qemu::image::pxe_boot(&dev_image()).unwrap_or_else(|e| panic!("{e}"));
    let vm = start_vm(boot);
    assert_dev_node_lifecycle(&vm);
}

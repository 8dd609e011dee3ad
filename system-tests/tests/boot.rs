//! The dev image boots in QEMU to a ready node, directly and over PXE (through stage 0).

use system_tests::*;

#[test]
fn dev_image_boots_directly_to_a_ready_node() {
    let boot = qemu::image::direct_boot(&dev_image()).unwrap_or_else(|e| panic!("{e}"));
    let vm = start_vm(boot);
    assert_dev_node_lifecycle(&vm);
}

#[test]
fn dev_image_boots_over_pxe_through_stage_0_to_a_ready_node() {
    // iPXE in the NIC's option ROM: DHCP from QEMU, boot.ipxe, stage 0's kernel and initrd over
    // TFTP; stage 0 then fetches the release over HTTP from this test (the bundle's release/).
    let image = dev_image();
    let server = ReleaseServer::start(&image.join("pxe/release"));
    let boot = qemu::image::pxe_boot(&image).unwrap_or_else(|e| panic!("{e}"));
    let vm = start_vm(boot);
    vm.wait_for_line(
        "nullos: verified release version=1 profile=dev",
        READY_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let fetched = vm
        .wait_for_line("boot: info: release fetched from ", READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fetched.contains(&format!(
            "release fetched from {GUEST_RELEASE_URL} and verified in "
        )),
        "{fetched}"
    );
    assert_dev_node_lifecycle(&vm);
    let console = vm.serial_text().unwrap_or_default();
    assert!(!console.contains("nullos: refused"), "{console}");
    // The release came over HTTP, the manifest first.
    let requests = server.requests();
    assert_eq!(
        requests.first().map(String::as_str),
        Some("GET /release/release.manifest HTTP/1.1"),
        "{requests:?}"
    );
    for name in ["kernel", "initrd", "cmdline"] {
        let line = format!("GET /release/{name} HTTP/1.1");
        assert!(requests.contains(&line), "{line} missing: {requests:?}");
    }
}

//! The bare-metal image (`make image PROFILE=metal`): Debian's generic kernel with whole driver
//! groups (`drivers/net/ethernet`, NVMe, SATA, USB hosts). Booted on an Intel e1000 NIC, which
//! only the group-selected `e1000` driver can run, it must reach ready with a DHCP address.

use std::time::Duration;

use qemu::{Accel, NicModel, Vm, VmConfig};
use system_tests::*;

#[test]
fn metal_image_drives_an_e1000_nic_from_its_ethernet_group_to_ready() {
    let dir = build_dir().join("metal");
    assert!(
        dir.join("release.manifest").is_file(),
        "{} has no built image: run `make image PROFILE=metal` (make test does it first)",
        dir.display()
    );
    let boot = qemu::image::direct_boot(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut config = VmConfig::new(boot, Accel::detect().unwrap_or_else(|e| panic!("{e}")));
    config.nic = Some(NicModel::E1000);
    let vm = Vm::start(config).unwrap_or_else(|e| panic!("{e:?}"));

    let ready = wait_ready(&vm);
    let console = vm.serial_text().unwrap_or_default();
    assert_eq!(
        ready.get("profile").map(String::as_str),
        Some("metal"),
        "{ready:?}"
    );
    assert_eq!(
        ready.get("address").map(String::as_str),
        Some("10.0.2.15/24"),
        "{ready:?}\n{console}"
    );
    // The metal profile names no control endpoint.
    assert_eq!(
        ready.get("control").map(String::as_str),
        Some("none"),
        "{ready:?}"
    );
    assert_eq!(
        ready.get("listening").map(String::as_str),
        Some("0"),
        "{ready:?}"
    );
    assert!(
        console.contains("init: info: module loaded: e1000\n")
            || console.contains("init: info: module loaded: e1000\r"),
        "e1000 not loaded:\n{console}"
    );
    assert_kvm_module(vm.config().accel, &console);
    // No virtio hardware on this machine: coldplug must not load virtio drivers for nothing.
    assert!(!console.contains("module loaded: virtio_net"), "{console}");

    vm.powerdown().unwrap_or_else(|e| panic!("{e:?}"));
    vm.wait_for_line("nullos: poweroff", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
}

//! The bare-metal image (`make image PROFILE=metal`), the product farmers run: Debian's generic
//! kernel with whole driver groups (`drivers/net/ethernet`, NVMe, SATA, USB hosts), stage 0 on
//! the USB stick and over PXE, the vmm and its guests' kernel and modules, its own release key.
//!
//! The farmer's machine, as QEMU models it: q35, an Intel e1000e NIC (which only the
//! group-selected `e1000e` driver runs), an empty NVMe disk for data, 2 vCPUs.
//! - on OVMF from `usb.img`, and on OVMF over PXE (iPXE → stage 0 → the release over HTTP): stage 0
//!   verifies the metal release, the node is ready with an address, claims the NVMe disk, has
//!   its KVM module loaded;
//! - DHCP leases kept: the USB boot's NIC is on a tap interface where dnsmasq grants 2-minute
//!   leases (QEMU's user network grants 24 hours): the node renews at T1; with dnsmasq stopped
//!   it rebinds at T2, removes its address at expiry, and takes a new lease once dnsmasq is
//!   back. The PXE boot needs QEMU's TFTP server, so it stays on the user network.
//! - running a workload: the metal image bakes none (work arrives as contracts), so the USB
//!   boot uses a stick built here from `profiles/metal.toml` itself with one change, the signed
//!   example workload (`build/workloads/hello`, `make workloads`) and the policy it is signed
//!   to added (and a faster zstd level). Everything else, stage 0, key, kernel, modules, vmm,
//!   tools, is the profile's, so the workload runs on exactly what a farmer gets. The PXE boot
//!   uses the real `build/metal` bundle unchanged.
//! - joining the grid: the image pins the grid's notary key (`build/keys/notary.pub`) and names
//!   no farm; the USB boot's stick carries the farmer's `nullos-node` file (written as
//!   `image-builder farm-stick` writes it: the farm `build/keys/farmer.pub`, the notary on the
//!   host), stage 0 passes it to the node as `nullos.farm=`/`nullos.notary=`, and the node
//!   registers with a real `nullos-notary` on the host that signs with the pinned key.
//! - the direct boot of `build/metal` on the older e1000 (the `e1000` driver of the same group).
//!
//! TCG boots are slow, so each boot checks everything it can show, and the VMs run one at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use image_builder::compress::Compression;
use image_builder::config::BuildConfig;
use interfaces::farmer::FarmerSettings;
use notary::test_support::TestNotary;
use qemu::{Accel, Boot, Firmware, Machine, NicModel, Vm, VmConfig};
use system_tests::*;

/// Stage 0 over OVMF, then the node, then a micro-VM under emulated SVM: generous under TCG.
const STEP_TIMEOUT: Duration = Duration::from_secs(360);

/// One TCG VM at a time: the machines are shared and two at once starve each other.
static ONE_VM: Mutex<()> = Mutex::new(());

fn metal_image() -> PathBuf {
    let dir = build_dir().join("metal");
    assert!(
        dir.join("release.manifest").is_file() && dir.join("usb.img").is_file(),
        "{} has no built image: run `make image PROFILE=metal` (make test does it first)",
        dir.display()
    );
    dir
}

/// `build/metal`'s profile plus the signed example workload: built into `out`.
fn metal_with_a_workload(out: &Path) {
    let repo = repo_root();
    let hello = build_dir().join("workloads/hello");
    assert!(
        hello.join("workload.manifest").is_file(),
        "{} is missing: run `make workloads` (make test does it first)",
        hello.display()
    );
    let mut config = BuildConfig::load(&repo.join("profiles/metal.toml"))
        .unwrap_or_else(|e| panic!("profiles/metal.toml: {e}"));
    assert!(
        config.workloads.is_empty() && config.workload_policy.is_none(),
        "the metal profile bakes no workload: work arrives as contracts"
    );
    assert!(config.vmm.is_some(), "the metal profile carries the vmm");
    config.workload_policy = Some(build_dir().join("keys/dev.pub"));
    config.workloads = vec![hello];
    config.compression = Compression::Zstd { level: 3 };
    image_builder::build::build(&config, out, 0, &image_builder::build::Quiet)
        .unwrap_or_else(|e| panic!("building metal with hello: {e}"));
}

/// The farmer's machine around `boot`: q35, e1000e, an empty NVMe disk, 2 vCPUs, 2 GiB. The
/// NIC is on QEMU's user network, or on `tap`'s network.
fn farmer_machine(boot: Boot, data_disk: &Path, tap: Option<&dhcp::TapDhcp>) -> VmConfig {
    std::fs::File::create(data_disk)
        .and_then(|f| f.set_len(256 << 20))
        .unwrap_or_else(|e| panic!("{}: {e}", data_disk.display()));
    let mut config = VmConfig::new(boot, Accel::detect().unwrap_or_else(|e| panic!("{e}")));
    config.machine = Machine::Q35;
    config.nic = Some(NicModel::E1000e);
    if let Some(tap) = tap {
        config.nic = None;
        config
            .extra_args
            .extend(tap.qemu_args(NicModel::E1000e.device()));
    }
    config.cpus = 2;
    config.memory_mib = 2048;
    config.extra_args.extend(
        [
            "-drive".to_owned(),
            format!("file={},if=none,id=data,format=raw", data_disk.display()),
            "-device".to_owned(),
            "nvme,serial=nullos-data,drive=data".to_owned(),
        ]
        .map(Into::into),
    );
    config
}

fn wait(vm: &Vm, needle: &str) -> String {
    vm.wait_for_line(needle, STEP_TIMEOUT).unwrap_or_else(|e| {
        let console = vm.serial_text().unwrap_or_default();
        panic!("waiting for {needle:?}: {e}\n--- whole console ---\n{console}")
    })
}

/// What every metal boot through stage 0 shows, in order: the verified metal release, the
/// node ready with a DHCP address starting with `address` and no listening socket, e1000e and
/// a KVM module loaded, the empty NVMe disk formatted and claimed. Returns the address.
fn assert_metal_node(vm: &Vm, address: &str) -> String {
    let verified = fields(&wait(vm, "nullos: verified release"));
    assert_eq!(
        verified.get("profile").map(String::as_str),
        Some("metal"),
        "{verified:?}"
    );
    assert_eq!(
        verified.get("signers").map(String::as_str),
        Some("signer"),
        "{verified:?}"
    );
    wait(vm, "nullos: booting release version=1");
    let ready = fields(&wait(vm, "nullos: ready"));
    let console = vm.serial_text().unwrap_or_default();
    let field = |k: &str| ready.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(field("profile"), "metal", "{ready:?}");
    assert_eq!(field("version"), "1", "{ready:?}");
    assert!(
        field("address").starts_with(address) && field("address").ends_with("/24"),
        "{ready:?}\n{console}"
    );
    assert_eq!(field("listening"), "0", "{ready:?}");
    assert!(
        console.contains("init: info: module loaded: e1000e"),
        "e1000e not loaded by the node:\n{console}"
    );
    assert_kvm_module(vm.config().accel, &console);
    wait(
        vm,
        "init: info: disk /dev/nvme0n1 is empty; making an ext4 filesystem",
    );
    wait(
        vm,
        "init: info: data disk /dev/nvme0n1 mounted at /var/lib/nullos",
    );
    field("address").trim_end_matches("/24").to_owned()
}

fn power_off(vm: &Vm) {
    vm.powerdown().unwrap_or_else(|e| panic!("{e:?}"));
    vm.wait_for_line("nullos: poweroff", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn metal_usb_stick_on_ovmf_verifies_claims_nvme_runs_a_workload_and_keeps_its_lease() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    metal_image();
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = scratch.path().join("metal+hello");
    metal_with_a_workload(&image);
    let mut dhcp = dhcp::TapDhcp::start("nullos-metal0");
    // The grid's notary on the host's side of the tap, signing with the key the image pins.
    let notary_data = scratch.path().join("notary");
    std::fs::create_dir_all(&notary_data).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        build_dir().join("keys/notary.key"),
        notary_data.join("notary.key"),
    )
    .unwrap_or_else(|e| panic!("build/keys/notary.key (make keys): {e}"));
    let notary = TestNotary::start(&notary_data, &format!("{}:0", dhcp::HOST));
    let pinned = std::fs::read_to_string(build_dir().join("keys/notary.pub"))
        .unwrap_or_else(|e| panic!("build/keys/notary.pub: {e}"));
    assert_eq!(
        notary.key.to_text(),
        pinned.trim(),
        "the notary signs with the pinned key"
    );
    // The farmer's settings on the stick, as `image-builder farm-stick` writes them.
    let farmer = std::fs::read_to_string(build_dir().join("keys/farmer.pub"))
        .unwrap_or_else(|e| panic!("build/keys/farmer.pub (make keys): {e}"));
    let farmer = trust::PublicKey::from_text(farmer.trim()).unwrap_or_else(|e| panic!("{e}"));
    let farm_hex = farmer.to_text().split_off("nullos-ed25519 ".len());
    let notary_url = format!("http://{}:{}", dhcp::HOST, notary.port());
    // The farmer's release channel replaces the image's `[update]` one (this boot only shows the
    // node watching it; tests/update.rs follows a whole update).
    let channel = format!("http://{}:8099/metal/release", dhcp::HOST);
    let settings = FarmerSettings::parse(
        format!(
            "farm = {}\nnotary = {notary_url}\nchannel = {channel}\n",
            farmer.to_text()
        )
        .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    image_builder::usb::farmer::write(&image.join("usb.img"), &settings)
        .unwrap_or_else(|e| panic!("writing the farmer's file: {e}"));
    let boot = qemu::image::usb_boot(&image).unwrap_or_else(|e| panic!("{e}"));
    let config = farmer_machine(boot, &scratch.path().join("nvme.img"), Some(&dhcp));
    let vm = Vm::start(config).unwrap_or_else(|e| panic!("starting QEMU: {e}"));

    let started = wait(&vm, "BdsDxe: starting");
    assert!(
        started.contains("USB"),
        "firmware booted something else: {started}"
    );
    let booting = wait(&vm, "nullos: booting release version=1");
    assert!(
        booting.contains(&format!(
            "nullos.farm={farm_hex} nullos.notary={notary_url} nullos.channel={channel}"
        )),
        "stage 0 did not pass the stick's farmer settings: {booting}"
    );
    let address = assert_metal_node(&vm, dhcp::LEASED_PREFIX);
    let host = dhcp::HOST;
    // The node joins the farmer's farm at the farmer's notary.
    let registered = fields(&wait(&vm, "nullos: registered node="));
    assert_eq!(
        registered.get("farm").map(String::as_str),
        Some(farm_hex.as_str()),
        "{registered:?}"
    );
    assert_eq!(
        registered.get("notary").map(String::as_str),
        Some(notary_url.as_str()),
        "{registered:?}"
    );
    wait(
        &vm,
        &format!("init: info: dhcp: eth0 leased {address}/24 via {host}"),
    );
    // Self-update watches the farmer's channel, with the metal image's own release policy.
    wait(
        &vm,
        &format!("init: info: release: watching {channel} every 1800 s for a version above 1"),
    );
    // The workload: verified against its policy, jailed vmm, the metal kernel as the guest's,
    // its volume on the NVMe data disk.
    wait(&vm, "nullos: workload hello verified");
    wait(&vm, "[hello] hello from a micro-VM");
    wait(&vm, "[hello] hello: counter=1");
    wait(&vm, "nullos: workload hello exited code=0");

    // Renewal at T1 (60 s into each 120 s lease), answered by dnsmasq.
    wait(
        &vm,
        &format!("init: info: dhcp: eth0 renewing {address} with {host} (T1)"),
    );
    let renewed = format!(
        "init: info: dhcp: eth0 renewed {address} for {} s from {host}",
        dhcp::LEASE_SECS
    );
    vm.wait_for_line(&renewed, STEP_TIMEOUT)
        .unwrap_or_else(|e| {
            let console = vm.serial_text().unwrap_or_default();
            panic!(
                "no {renewed:?}: {e}\n{console}\n--- dnsmasq ---\n{}",
                dhcp.log()
            )
        });
    // No server: rebinding at T2, the address removed at expiry, a new lease once it is back.
    dhcp.stop_server();
    wait(
        &vm,
        &format!("init: warn: dhcp: eth0 rebinding {address}: {host} did not renew it by T2"),
    );
    wait(
        &vm,
        &format!("init: warn: dhcp: eth0 lease on {address} expired; address removed"),
    );
    dhcp.start_server();
    let leased = "init: info: dhcp: eth0 leased ";
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    let console = loop {
        let console = vm.serial_text().unwrap_or_default();
        if console.matches(leased).count() >= 2 || std::time::Instant::now() > deadline {
            break console;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        console.matches(leased).count() >= 2,
        "no new lease after the loss:\n{console}\n--- dnsmasq ---\n{}",
        dhcp.log()
    );
    power_off(&vm);
}

#[test]
fn metal_over_pxe_verifies_the_release_over_http_and_claims_nvme() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let image = metal_image();
    let _server = ReleaseServer::start(&image.join("pxe/release"));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let boot = qemu::image::pxe_boot(&image).unwrap_or_else(|e| panic!("{e}"));
    let mut config = farmer_machine(boot, &scratch.path().join("nvme.img"), None);
    // A UEFI server: OVMF runs the e1000e's iPXE EFI driver, which chains boot.ipxe.
    config.firmware = Firmware::Uefi;
    let vm = Vm::start(config).unwrap_or_else(|e| panic!("starting QEMU: {e}"));

    // iPXE's EFI build (its BIOS build lists PXE and bzImage instead) runs the bundle's script.
    let features = wait(&vm, "Features: ");
    assert!(
        features.contains(" EFI"),
        "not iPXE's EFI build: {features}"
    );
    wait(&vm, "NullOS: loading stage 0");
    let fetched = wait(&vm, "boot: info: release fetched from");
    assert!(fetched.contains(GUEST_RELEASE_URL), "{fetched}");
    // QEMU's user network hands out 10.0.2.15.
    assert_eq!(assert_metal_node(&vm, "10.0.2.15/"), "10.0.2.15");
    power_off(&vm);
    let console = vm.serial_text().unwrap_or_default();
    assert!(
        !console.contains("nullos: workload "),
        "the metal image must bake no workload:\n{console}"
    );
    assert!(!console.contains("Kernel panic"), "{console}");
}

#[test]
fn metal_image_drives_an_e1000_nic_from_its_ethernet_group_to_ready() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = metal_image();
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

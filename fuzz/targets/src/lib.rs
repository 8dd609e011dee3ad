//! NullOS fuzz targets as plain functions, and the stable driver that runs them.
//!
//! Every target is `targets::<name>::fuzz_one(&[u8])`: it must return for any input, and panics
//! (a failed assertion, an index out of bounds, an overflow under `make fuzz`'s overflow checks)
//! are the bugs found. Two front ends call them: the cargo-fuzz binaries in `../fuzz_targets/`
//! (libFuzzer, nightly) and `fuzz-run` ([`driver`], stable), which is what `make fuzz` and
//! `make test` run on this project's toolchain.

pub mod driver;
pub mod targets;

/// A fuzz target: its name (also its corpus folder, `fuzz/corpus/<name>/`) and its function.
#[derive(Clone, Copy)]
pub struct Target {
    /// The target's name, as in `fuzz_targets/<name>.rs`.
    pub name: &'static str,
    /// Runs one input; returns for every input unless it found a bug.
    pub run: fn(&[u8]),
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        /// Every target, in the order `fuzz-run --all` runs them.
        pub const TARGETS: &[Target] = &[
            $(Target { name: stringify!($name), run: targets::$name::fuzz_one },)*
        ];
    };
}

targets!(
    signed_document_decode,
    release_manifest_decode,
    signer_policy_text,
    signer_policy_decode,
    key_text,
    grid_documents,
    checkpoint_note,
    module_index_parse,
    modinfo_elf,
    uevent_parse,
    dhcp_reply,
    proc_net_table,
    workload_manifest,
    initramfs_reader,
    contract_file,
    contract_template,
    virtio_mmio_registers,
    virtio_descriptor_chain,
    usernet_frames,
    vmm_port_devices,
    stage0_medium,
    nullos_state,
    farmer_file,
    boot_state,
    guest_config,
    ip_param,
    disk_probe,
    kernel_cmdline,
);

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

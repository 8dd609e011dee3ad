//! One module per fuzz target; each exposes `fuzz_one(data: &[u8])`.

pub mod checkpoint_note;
pub mod contract_file;
pub mod contract_template;
pub mod dhcp_reply;
pub mod disk_probe;
pub mod grid_documents;
pub mod guest_config;
pub mod initramfs_reader;
pub mod ip_param;
pub mod kernel_cmdline;
pub mod key_text;
pub mod modinfo_elf;
pub mod module_index_parse;
pub mod nullos_state;
pub mod proc_net_table;
pub mod release_manifest_decode;
pub mod signed_document_decode;
pub mod signer_policy_decode;
pub mod signer_policy_text;
pub mod stage0_medium;
pub mod uevent_parse;
pub mod usernet_frames;
pub mod virtio_descriptor_chain;
pub mod virtio_mmio_registers;
pub mod vmm_port_devices;
pub mod workload_manifest;

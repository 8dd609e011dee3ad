//! The caps on the control plane's document bodies (see `docs/TRUST-FORMATS.md`, "Control-plane
//! documents"). Every count and length is checked against its cap before anything is allocated,
//! and every body against its kind's size cap first.

use crate::limits::MAX_BODY_BYTES;

/// Largest encoded farm body, in bytes.
pub const MAX_FARM_BYTES: usize = 512;
/// Largest encoded node registration body, in bytes.
pub const MAX_NODE_REGISTRATION_BYTES: usize = 4 * 1024;
/// Largest encoded contract body, in bytes: the whole document body cap, which bounds the sum of
/// the per-field caps below (many workloads with long environments do not fit).
pub const MAX_CONTRACT_BYTES: usize = MAX_BODY_BYTES;
/// Largest encoded approval body, in bytes.
pub const MAX_APPROVAL_BYTES: usize = 256;
/// Largest encoded placement body, in bytes.
pub const MAX_PLACEMENT_BYTES: usize = 1024;
/// Largest encoded cancellation body, in bytes.
pub const MAX_CANCELLATION_BYTES: usize = 1024;
/// Largest encoded status report body, in bytes: 16 KiB for the states (16 workloads with
/// 64-byte names and 256-byte reasons take about 6 KiB) plus a sealed console tail per workload
/// (its bytes, a 2-byte length and an option tag): 49,984 bytes, under the 64 KiB body cap.
pub const MAX_STATUS_REPORT_BYTES: usize =
    16 * 1024 + MAX_CONTRACT_WORKLOADS * (super::sealed::MAX_SEALED_TAIL_BYTES + 4);
/// Largest encoded lease body, in bytes.
pub const MAX_LEASE_BYTES: usize = 128;
/// Largest encoded enrollment body, in bytes.
pub const MAX_ENROLLMENT_BYTES: usize = 128;

/// Longest farm name, in bytes.
pub const MAX_FARM_NAME_BYTES: usize = 64;
/// Most disks a node registers.
pub const MAX_NODE_DISKS: usize = 16;
/// Most network interfaces a node registers.
pub const MAX_NODE_NICS: usize = 16;
/// Longest disk or interface name, in bytes (Linux's interface name limit).
pub const MAX_DEVICE_NAME_BYTES: usize = 15;
/// Most CPUs a node may register.
pub const MAX_NODE_CPUS: u32 = 4096;
/// Most workloads in one contract (and so in one status report).
pub const MAX_CONTRACT_WORKLOADS: usize = 16;
/// Most allowed egress endpoints of one contract workload.
pub const MAX_EGRESS_ENDPOINTS: usize = 32;
/// Longest egress host name or address, in bytes (a DNS name's limit).
pub const MAX_HOST_BYTES: usize = 253;
/// Most farms a contract's placement may be limited to.
pub const MAX_ALLOWED_FARMS: usize = 32;
/// Longest reason (placement, cancellation, workload status), in bytes: one line.
pub const MAX_REASON_BYTES: usize = 256;

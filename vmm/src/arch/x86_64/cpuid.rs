//! The guest's CPUID: what KVM supports on this host, adjusted per vCPU.
//!
//! KVM's supported list is already "what can be virtualized"; on top of it we give each vCPU its
//! APIC id and the vCPU count, set the hypervisor bit, and hide what a workload must not use or
//! what would disturb a micro-VM: nested virtualization (VMX/SVM) and the performance-monitoring
//! unit (its NMI watchdog would also wake halted vCPUs).

use kvm_bindings::kvm_cpuid_entry2;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
const LEAF_EXT_ADDRESS_SIZES: u32 = 0x8000_0008;

const ECX_VMX: u32 = 1 << 5;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const EXT_ECX_SVM: u32 = 1 << 2;
/// CLFLUSH line size in 8-byte units (64-byte cache lines), leaf 1 EBX[15:8].
const CLFLUSH_LINE_SIZE: u32 = 8;
/// Topology level types in leaf 0xB/0x1F ECX[15:8].
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Adjusts KVM's supported CPUID entries for vCPU `vcpu_id` of `vcpu_count`: one socket,
/// one thread per core, `vcpu_count` cores.
pub fn filter_cpuid(entries: &mut [kvm_cpuid_entry2], vcpu_id: u8, vcpu_count: u8) {
    let id = u32::from(vcpu_id);
    let count = u32::from(vcpu_count);
    // Bits of the APIC id that number the cores of the package.
    let core_shift = u32::BITS - count.saturating_sub(1).leading_zeros();
    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                e.ebx = (id << 24) | (count << 16) | (CLFLUSH_LINE_SIZE << 8);
                e.ecx = (e.ecx | ECX_HYPERVISOR) & !ECX_VMX;
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_PMU => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                e.edx = id;
                let (eax, ebx, ecx) = match e.index {
                    0 => (0, 1, LEVEL_TYPE_SMT << 8),
                    1 => (core_shift, count, (LEVEL_TYPE_CORE << 8) | 1),
                    n => (0, 0, n & 0xff),
                };
                e.eax = eax;
                e.ebx = ebx;
                e.ecx = ecx;
            }
            LEAF_EXT_FEATURES => e.ecx &= !EXT_ECX_SVM,
            LEAF_EXT_ADDRESS_SIZES => {
                // ECX[7:0]: number of cores minus one (AMD).
                e.ecx = (e.ecx & !0xff) | count.saturating_sub(1);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0xffff_ffff,
            edx: 0xffff_ffff,
            ..Default::default()
        }
    }

    fn host() -> Vec<kvm_cpuid_entry2> {
        vec![
            leaf(0x1, 0),
            leaf(0xa, 0),
            leaf(0xb, 0),
            leaf(0xb, 1),
            leaf(0xb, 2),
            leaf(0x8000_0001, 0),
            leaf(0x8000_0008, 0),
            leaf(0x7, 0),
        ]
    }

    #[test]
    fn leaf_1_carries_apic_id_count_and_hypervisor_bit_without_vmx() {
        let mut e = host();
        filter_cpuid(&mut e, 3, 4);
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_eq!(e[0].ecx & ECX_VMX, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
    }

    #[test]
    fn single_vcpu_has_no_htt_and_no_pmu() {
        let mut e = host();
        filter_cpuid(&mut e, 0, 1);
        assert_eq!(e[0].edx & EDX_HTT, 0);
        assert_eq!((e[1].eax, e[1].ebx, e[1].ecx, e[1].edx), (0, 0, 0, 0));
    }

    #[test]
    fn topology_leaf_describes_cores_and_x2apic_id() {
        let mut e = host();
        filter_cpuid(&mut e, 2, 3);
        assert_eq!((e[2].eax, e[2].ebx, e[2].ecx, e[2].edx), (0, 1, 0x100, 2));
        assert_eq!((e[3].eax, e[3].ebx, e[3].ecx, e[3].edx), (2, 3, 0x201, 2));
        assert_eq!(
            (e[4].eax, e[4].ebx, e[4].ecx),
            (0, 0, 2),
            "level 2 is invalid"
        );
    }

    #[test]
    fn svm_hidden_core_count_on_amd_leaf_and_other_leaves_untouched() {
        let mut e = host();
        filter_cpuid(&mut e, 0, 2);
        assert_eq!(e[5].ecx & EXT_ECX_SVM, 0);
        assert_eq!(e[6].ecx & 0xff, 1);
        assert_eq!(e[7].ebx, 0xffff_ffff);
    }
}

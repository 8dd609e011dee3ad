//! The KVM VM: guest memory slots, in-kernel interrupt controllers (PIC, IOAPIC, LAPICs) and
//! PIT, and the Intel real-mode helper regions.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::Path;

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::layout::{KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS};

/// Errors creating or configuring the VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The KVM device (/dev/kvm or an inherited descriptor) could not be opened.
    #[error("open {}", .0.display())]
    OpenKvm(std::path::PathBuf, #[source] std::io::Error),
    /// `KVM_CREATE_VM` failed.
    #[error("create VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// `KVM_SET_TSS_ADDR` failed.
    #[error("set TSS address")]
    SetTssAddress(#[source] kvm_ioctls::Error),
    /// `KVM_SET_IDENTITY_MAP_ADDR` failed.
    #[error("set identity map address")]
    SetIdentityMap(#[source] kvm_ioctls::Error),
    /// `KVM_CREATE_IRQCHIP` failed.
    #[error("create in-kernel irqchip")]
    CreateIrqchip(#[source] kvm_ioctls::Error),
    /// `KVM_CREATE_PIT2` failed.
    #[error("create in-kernel PIT")]
    CreatePit(#[source] kvm_ioctls::Error),
    /// `KVM_SET_USER_MEMORY_REGION` failed.
    #[error("register guest memory slot {0}")]
    SetMemoryRegion(u32, #[source] kvm_ioctls::Error),
    /// `KVM_GET_SUPPORTED_CPUID` failed.
    #[error("get supported CPUID")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    /// `KVM_CREATE_VCPU` failed.
    #[error("create vCPU {0}")]
    CreateVcpu(u8, #[source] kvm_ioctls::Error),
    /// `KVM_IRQFD` failed.
    #[error("register irqfd for GSI {0}")]
    RegisterIrqfd(u32, #[source] kvm_ioctls::Error),
}

/// A KVM VM with its interrupt controllers and memory.
#[derive(Debug)]
pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
}

impl Vm {
    /// Creates the VM on the KVM device `kvm` (a path or an inherited descriptor, see
    /// [`crate::files`]), its irqchip and PIT, and maps `mem` into it.
    pub fn new(mem: &GuestMemoryMmap, kvm: &Path) -> Result<Self, Error> {
        let device =
            crate::files::open(kvm, true).map_err(|e| Error::OpenKvm(kvm.to_path_buf(), e))?;
        // SAFETY: the descriptor is ours (just opened or duplicated) and is handed over whole.
        let kvm = unsafe { Kvm::from_raw_fd(device.into_raw_fd()) };
        let fd = kvm.create_vm().map_err(Error::CreateVm)?;
        // Both regions sit in the MMIO gap, so they never shadow RAM.
        fd.set_tss_address(usize::try_from(KVM_TSS_ADDRESS).unwrap_or(usize::MAX))
            .map_err(Error::SetTssAddress)?;
        fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
            .map_err(Error::SetIdentityMap)?;
        fd.create_irq_chip().map_err(Error::CreateIrqchip)?;
        // Port 0x61 (PC speaker / PIT gate) is emulated in the kernel too.
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(Error::CreatePit)?;

        for (slot, region) in (0u32..).zip(mem.iter()) {
            let region_desc = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the region is a live mapping of `memory_size` bytes owned by `mem`, which
            // the caller keeps alive (in `VmResources`) for as long as the VM exists; slots are
            // distinct and the regions do not overlap (vm-memory checks that).
            unsafe { fd.set_user_memory_region(region_desc) }
                .map_err(|e| Error::SetMemoryRegion(slot, e))?;
        }
        Ok(Vm { kvm, fd })
    }

    /// What CPUID KVM can give a guest on this host.
    pub fn supported_cpuid(&self) -> Result<CpuId, Error> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::SupportedCpuid)
    }

    /// Creates vCPU `id` (its APIC id too).
    pub fn create_vcpu(&self, id: u8) -> Result<VcpuFd, Error> {
        self.fd
            .create_vcpu(u64::from(id))
            .map_err(|e| Error::CreateVcpu(id, e))
    }

    /// Raises GSI `gsi` whenever `evt` is written.
    pub fn register_irqfd(&self, evt: &EventFd, gsi: u32) -> Result<(), Error> {
        self.fd
            .register_irqfd(evt, gsi)
            .map_err(|e| Error::RegisterIrqfd(gsi, e))
    }
}

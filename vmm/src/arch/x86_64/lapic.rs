//! Local APIC: LINT0 as ExtINT (the legacy PIC's output) and LINT1 as NMI, as on a PC. Linux
//! expects this "virtual wire" setup from firmware.

use kvm_bindings::kvm_lapic_state;
use kvm_ioctls::VcpuFd;

/// Errors while setting up the local APIC.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `KVM_GET_LAPIC` failed.
    #[error("get local APIC state")]
    GetLapic(#[source] kvm_ioctls::Error),
    /// `KVM_SET_LAPIC` failed.
    #[error("set local APIC state")]
    SetLapic(#[source] kvm_ioctls::Error),
}

/// Offset of the LVT LINT0 register in the APIC page.
pub const APIC_LVT0: usize = 0x350;
/// Offset of the LVT LINT1 register.
pub const APIC_LVT1: usize = 0x360;
/// Delivery mode ExtINT.
pub const APIC_MODE_EXTINT: u32 = 0x7;
/// Delivery mode NMI.
pub const APIC_MODE_NMI: u32 = 0x4;

fn get_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let b = &state.regs[offset..offset + 4];
    // The registers are declared as c_char: reinterpret each byte.
    u32::from_le_bytes(std::array::from_fn(|i| b[i].to_ne_bytes()[0]))
}

fn set_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in state.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *dst = std::os::raw::c_char::from_ne_bytes([src]);
    }
}

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// Sets LINT0 to ExtINT and LINT1 to NMI in an APIC register image.
pub fn virtual_wire(state: &mut kvm_lapic_state) {
    let lvt0 = get_reg(state, APIC_LVT0);
    set_reg(state, APIC_LVT0, with_delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = get_reg(state, APIC_LVT1);
    set_reg(state, APIC_LVT1, with_delivery_mode(lvt1, APIC_MODE_NMI));
}

/// Applies [`virtual_wire`] to `vcpu`'s in-kernel local APIC.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), Error> {
    let mut state = vcpu.get_lapic().map_err(Error::GetLapic)?;
    virtual_wire(&mut state);
    vcpu.set_lapic(&state).map_err(Error::SetLapic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint0_is_extint_and_lint1_is_nmi_other_bits_kept() {
        let mut s = kvm_lapic_state::default();
        set_reg(&mut s, APIC_LVT0, 0x0001_0000); // masked, fixed
        set_reg(&mut s, APIC_LVT1, 0x0001_0400);
        virtual_wire(&mut s);
        assert_eq!(get_reg(&s, APIC_LVT0), 0x0001_0700);
        assert_eq!(get_reg(&s, APIC_LVT1), 0x0001_0400);
    }
}

//! ACPI tables: how a stock distribution kernel learns the machine without PCI or a BIOS.
//!
//! Hardware-reduced ACPI (no PM timer, no GPEs, no SCI): an RSDP pointing at an XSDT that lists a
//! FADT, a MADT and (through the FADT) a DSDT. The FADT's sleep control register is the VMM's
//! power-off port and its reset register the i8042 command port, so `poweroff` and `reboot` in
//! the guest end the VM through ACPI. The MADT lists one local APIC per vCPU and the in-kernel
//! IOAPIC. The DSDT describes COM1 (`PNP0501`), the pvpanic port (`QEMU0001`, Linux's
//! `pvpanic-mmio`) and one `LNRO0005` device per virtio-mmio window, with its register range and
//! edge-triggered interrupt, which is exactly what Linux's `virtio_mmio` module binds to
//! (`drivers/virtio/virtio_mmio.c`, its ACPI match table).
//!
//! Pure: [`build`] returns the tables as byte blobs with their guest addresses; `boot.rs` writes
//! them. The table encodings come from rust-vmm's `acpi_tables` crate.

use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

use super::layout::{ACPI_END, ACPI_START, IOAPIC_ADDRESS, LAPIC_ADDRESS};
use crate::devices::power::PVPANIC_PORT;

/// OEM id in every table header.
pub const OEM_ID: [u8; 6] = *b"NULLOS";
/// OEM table id in every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"NULLOSVM";
const OEM_REVISION: u32 = 1;

/// The I/O port of the ACPI sleep control register (and sleep status register).
pub const SLEEP_CONTROL_PORT: u16 = 0x3c0;
/// `SLP_TYPx` for S5 given in the DSDT's `\_S5` package.
pub const S5_SLP_TYP: u8 = 5;
/// The reset register: the i8042 command port, reset value 0xFE (pulse the reset line).
pub const RESET_PORT: u16 = 0x64;
/// Value written to [`RESET_PORT`] to reset.
pub const RESET_VALUE: u8 = 0xfe;
/// COM1's legacy interrupt.
pub const COM1_GSI: u32 = 4;

/// One virtio-mmio device as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioSlot {
    /// Guest-physical base of its register window.
    pub base: u64,
    /// Window length in bytes.
    pub len: u32,
    /// IOAPIC pin (GSI) of its interrupt.
    pub gsi: u32,
}

/// What the tables describe.
#[derive(Debug, Clone)]
pub struct AcpiConfig<'a> {
    /// Number of vCPUs (APIC ids 0..n).
    pub vcpus: u8,
    /// The virtio-mmio devices, in the order the guest should number them.
    pub virtio: &'a [VirtioMmioSlot],
}

/// The tables to write into guest memory.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    /// Guest address of the RSDP (also given to the kernel in `boot_params.acpi_rsdp_addr`).
    pub rsdp_addr: u64,
    /// `(guest address, bytes)` of every table, RSDP first.
    pub blobs: Vec<(u64, Vec<u8>)>,
}

/// Errors building the tables.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The tables do not fit the ACPI region below 1 MiB.
    #[error("ACPI tables need {needed} bytes, the region holds {available}")]
    TooLarge {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// A device base address does not fit the 32-bit `Memory32Fixed` descriptor.
    #[error("virtio-mmio window at {0:#x} is above 4 GiB")]
    WindowAbove4G(u64),
}

/// Builds RSDP, XSDT, FADT, MADT and DSDT, placed one after another from [`ACPI_START`].
pub fn build(cfg: &AcpiConfig<'_>) -> Result<AcpiTables, Error> {
    let dsdt = dsdt(cfg.virtio)?;
    let madt = madt(cfg.vcpus);

    // Layout: RSDP, then each table 16-byte aligned.
    let rsdp_addr = ACPI_START;
    let xsdt_addr = align(rsdp_addr + bytes_len(Rsdp::len()));
    let xsdt_len = 36 + 8 * 2;
    let fadt_addr = align(xsdt_addr + xsdt_len);
    let madt_addr = align(fadt_addr + bytes_len(acpi_tables::fadt::FADT::len()));
    let dsdt_addr = align(madt_addr + bytes_len(madt.len()));
    let end = dsdt_addr + bytes_len(dsdt.len());
    if end > ACPI_END {
        return Err(Error::TooLarge {
            needed: end - ACPI_START,
            available: ACPI_END - ACPI_START,
        });
    }

    let fadt = fadt(dsdt_addr);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let rsdp = Rsdp::new(OEM_ID, xsdt_addr);

    let blobs = vec![
        (rsdp_addr, to_bytes(&rsdp)),
        (xsdt_addr, to_bytes(&xsdt)),
        (fadt_addr, to_bytes(&fadt)),
        (madt_addr, madt),
        (dsdt_addr, dsdt),
    ];
    debug_assert_eq!(blobs[1].1.len() as u64, xsdt_len);
    Ok(AcpiTables { rsdp_addr, blobs })
}

fn bytes_len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn align(addr: u64) -> u64 {
    (addr + 15) & !15
}

fn to_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

fn io_gas(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

fn fadt(dsdt_addr: u64) -> acpi_tables::fadt::FADT {
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // No fixed-feature power or sleep button: the power button is a control-plane matter.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    b.sleep_control_reg = io_gas(SLEEP_CONTROL_PORT);
    b.sleep_status_reg = io_gas(SLEEP_CONTROL_PORT);
    b.reset_reg = io_gas(RESET_PORT);
    b.reset_value = RESET_VALUE;
    // IA-PC boot architecture: no VGA (bit 2), no MSI (bit 3), no CMOS RTC (bit 5).
    b.iapc_boot_arch = ((1u16 << 2) | (1 << 3) | (1 << 5)).into();
    b.hypervisor_vendor_identity = u64::from_le_bytes(*b"NULLOSVM").into();
    b.finalize()
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDRESS),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    // The IOAPIC's id follows the local APICs'.
    madt.add_structure(IoApic::new(vcpus, IOAPIC_ADDRESS, 0));
    to_bytes(&madt)
}

fn dsdt(virtio: &[VirtioMmioSlot]) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();

    // COM1, so the 8250 driver binds it through PNP with the right interrupt.
    let (com1_io, com1_irq) = (
        aml::IO::new(0x3f8, 0x3f8, 0, 8),
        aml::Interrupt::new(true, true, false, false, COM1_GSI),
    );
    let com1_crs = aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    let (hid, uid, crs) = (
        aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501")),
        aml::Name::new("_UID".into(), &aml::Zero {}),
        aml::Name::new("_CRS".into(), &com1_crs),
    );
    aml::Device::new("_SB_.COM1".into(), vec![&hid, &uid, &crs]).to_aml_bytes(&mut body);

    // pvpanic, as QEMU describes its ISA one: Linux's pvpanic-mmio driver binds `QEMU0001`.
    let pvpanic_io = aml::IO::new(PVPANIC_PORT, PVPANIC_PORT, 1, 1);
    let pvpanic_crs = aml::ResourceTemplate::new(vec![&pvpanic_io]);
    let (hid, crs) = (
        aml::Name::new("_HID".into(), &"QEMU0001"),
        aml::Name::new("_CRS".into(), &pvpanic_crs),
    );
    aml::Device::new("_SB_.PEVT".into(), vec![&hid, &crs]).to_aml_bytes(&mut body);

    for (i, slot) in virtio.iter().enumerate() {
        let base = u32::try_from(slot.base).map_err(|_| Error::WindowAbove4G(slot.base))?;
        let window = aml::Memory32Fixed::new(true, base, slot.len);
        let irq = aml::Interrupt::new(true, true, false, false, slot.gsi);
        let resources = aml::ResourceTemplate::new(vec![&window, &irq]);
        let uid_value = u32::try_from(i).unwrap_or(u32::MAX);
        let (hid, uid, crs) = (
            aml::Name::new("_HID".into(), &"LNRO0005"),
            aml::Name::new("_UID".into(), &uid_value),
            aml::Name::new("_CRS".into(), &resources),
        );
        aml::Device::new(
            aml::Path::new(&format!("_SB_.V{i:03X}")),
            vec![&hid, &uid, &crs],
        )
        .to_aml_bytes(&mut body);
    }

    // S5 (soft off): the SLP_TYP value the kernel writes to the sleep control register.
    let s5_package = aml::Package::new(vec![&S5_SLP_TYP]);
    aml::Name::new("_S5_".into(), &s5_package).to_aml_bytes(&mut body);

    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&body);
    Ok(dsdt.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    fn table<'a>(t: &'a AcpiTables, sig: &[u8]) -> &'a (u64, Vec<u8>) {
        t.blobs
            .iter()
            .find(|(_, b)| b.starts_with(sig))
            .unwrap_or_else(|| panic!("no {:?} table", String::from_utf8_lossy(sig)))
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    fn slots(n: u32) -> Vec<VirtioMmioSlot> {
        (0..n)
            .map(|i| VirtioMmioSlot {
                base: 0xd000_0000 + u64::from(i) * 0x1000,
                len: 0x1000,
                gsi: 5 + i,
            })
            .collect()
    }

    #[test]
    fn every_table_checksums_to_zero_and_states_its_length() {
        let virtio = slots(3);
        let t = build(&AcpiConfig {
            vcpus: 2,
            virtio: &virtio,
        })
        .unwrap();
        let (rsdp_addr, rsdp) = &t.blobs[0];
        assert_eq!(*rsdp_addr, t.rsdp_addr);
        assert!(rsdp.starts_with(b"RSD PTR "));
        assert_eq!(sum(&rsdp[..20]), 0, "RSDP v1 checksum");
        assert_eq!(sum(rsdp), 0, "RSDP extended checksum");
        for (_, b) in &t.blobs[1..] {
            assert_eq!(u32_at(b, 4) as usize, b.len(), "{:?}", &b[..4]);
            assert_eq!(sum(b), 0, "{:?} checksum", String::from_utf8_lossy(&b[..4]));
        }
        for w in t.blobs.windows(2) {
            assert!(w[0].0 + w[0].1.len() as u64 <= w[1].0, "tables overlap");
        }
        let last = t.blobs.last().unwrap();
        assert!(last.0 + last.1.len() as u64 <= ACPI_END);
    }

    #[test]
    fn pointers_chain_rsdp_to_xsdt_to_fadt_madt_and_fadt_to_dsdt() {
        let t = build(&AcpiConfig {
            vcpus: 1,
            virtio: &slots(1),
        })
        .unwrap();
        let xsdt_addr = u64_at(&t.blobs[0].1, 24);
        let (addr, xsdt) = table(&t, b"XSDT");
        assert_eq!(*addr, xsdt_addr);
        let entries: Vec<u64> = (36..xsdt.len())
            .step_by(8)
            .map(|o| u64_at(xsdt, o))
            .collect();
        assert_eq!(entries, vec![table(&t, b"FACP").0, table(&t, b"APIC").0]);
        let (_, fadt) = table(&t, b"FACP");
        assert_eq!(u64_at(fadt, 140), table(&t, b"DSDT").0, "X_DSDT");
        assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
        // SLEEP_CONTROL_REG (offset 244): system I/O, 8 bits, port 0x3c0.
        assert_eq!(fadt[244], 1);
        assert_eq!(u64_at(fadt, 248), 0x3c0);
        // RESET_REG (116) and RESET_VALUE (128).
        assert_eq!(u64_at(fadt, 120), 0x64);
        assert_eq!(fadt[128], 0xfe);
    }

    #[test]
    fn madt_lists_each_vcpu_and_the_ioapic() {
        let t = build(&AcpiConfig {
            vcpus: 3,
            virtio: &[],
        })
        .unwrap();
        let (_, madt) = table(&t, b"APIC");
        assert_eq!(u32_at(madt, 36), LAPIC_ADDRESS);
        let mut off = 44;
        let (mut lapics, mut ioapics) = (vec![], vec![]);
        while off < madt.len() {
            let (kind, len) = (madt[off], usize::from(madt[off + 1]));
            match kind {
                0 => lapics.push(madt[off + 3]),
                1 => ioapics.push(u32_at(madt, off + 4)),
                k => panic!("unexpected MADT entry {k}"),
            }
            off += len;
        }
        assert_eq!(lapics, vec![0, 1, 2]);
        assert_eq!(ioapics, vec![IOAPIC_ADDRESS]);
    }

    #[test]
    fn dsdt_describes_each_virtio_window_as_lnro0005_with_its_range_and_irq() {
        let virtio = slots(2);
        let t = build(&AcpiConfig {
            vcpus: 1,
            virtio: &virtio,
        })
        .unwrap();
        let (_, dsdt) = table(&t, b"DSDT");
        let hid = b"LNRO0005\0";
        let count = dsdt.windows(hid.len()).filter(|w| w == hid).count();
        assert_eq!(count, 2);
        for s in &virtio {
            // Memory32Fixed: 0x86, len 9, rw, base, length.
            let mut m = vec![0x86, 9, 0, 1];
            m.extend_from_slice(&u32::try_from(s.base).unwrap().to_le_bytes());
            m.extend_from_slice(&s.len.to_le_bytes());
            assert!(
                dsdt.windows(m.len()).any(|w| w == m),
                "window {:#x}",
                s.base
            );
            // Extended interrupt: consumer, edge, active high, exclusive, one GSI.
            let mut i = vec![0x89, 6, 0, 0b0011, 1];
            i.extend_from_slice(&s.gsi.to_le_bytes());
            assert!(dsdt.windows(i.len()).any(|w| w == i), "gsi {}", s.gsi);
        }
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
    }

    #[test]
    fn dsdt_describes_the_pvpanic_port_as_qemu0001() {
        let t = build(&AcpiConfig {
            vcpus: 1,
            virtio: &[],
        })
        .unwrap();
        let (_, dsdt) = table(&t, b"DSDT");
        assert!(dsdt.windows(9).any(|w| w == b"QEMU0001\0"));
        // I/O port descriptor: 0x47, 16-bit decode, min 0x505, max 0x505, alignment 1, length 1.
        let io = [0x47, 1, 0x05, 0x05, 0x05, 0x05, 1, 1];
        assert!(dsdt.windows(io.len()).any(|w| w == io), "{dsdt:02x?}");
    }

    #[test]
    fn a_window_above_4g_is_refused() {
        let bad = [VirtioMmioSlot {
            base: 1 << 32,
            len: 0x1000,
            gsi: 5,
        }];
        let e = build(&AcpiConfig {
            vcpus: 1,
            virtio: &bad,
        })
        .unwrap_err();
        assert_eq!(e, Error::WindowAbove4G(1 << 32));
    }
}

//! How the guest ends itself.
//!
//! - **Reboot**: the i8042 keyboard controller's reset line: command 0xFE written to port 0x64
//!   (Linux's `reboot=k`, and its fallback after ACPI). Ports 0x60-0x64 otherwise read as an
//!   idle controller with nothing attached.
//! - **Power-off**: an ACPI sleep control register (hardware-reduced ACPI, FADT
//!   `SLEEP_CONTROL_REG`) at I/O port [`SLEEP_CONTROL_PORT`], one byte: `SLP_EN` (bit 5) with
//!   `SLP_TYPx` (bits 2-4) = [`S5_SLP_TYP`] powers off. The FADT and the DSDT's `\_S5` object
//!   that describe it to Linux are in the ACPI tables (`arch::x86_64::acpi`).
//! - **Panic**: a pvpanic device at I/O port [`PVPANIC_PORT`] (the DSDT names it `QEMU0001`, which
//!   Linux's `pvpanic-mmio` driver binds, I/O or memory). Reading it tells the guest which events
//!   it may report ([`PVPANIC_PANICKED`] only: with a crash kernel loaded the guest goes on to
//!   kdump); writing `PANICKED` ends the VM as a panic, before Linux's own `panic=` reboot.
//! - **Exit code**: NullOS's guest `init` writes the workload's exit status (one byte) to
//!   [`EXIT_CODE_PORT`] before powering off; the VMM reports it on stderr as
//!   `vmm: guest exit code=<n>` (see `docs/VMM.md`).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use virtio_devices::{LogLimit, GUEST_LOG_LIMIT};

use crate::devices::bus::BusDevice;
use crate::exit::GuestExit;

/// Warnings the guest can cause at will on these ports, through the shared limiter.
static WARNINGS: LogLimit = LogLimit::new(
    GUEST_LOG_LIMIT,
    log::Level::Warn,
    "power: further warnings are not logged",
);

/// First i8042 port (data); the command/status port is base + 4.
pub const I8042_BASE: u64 = 0x60;
/// Ports covered by the i8042 (0x60..=0x64).
pub const I8042_LEN: u64 = 5;
/// i8042 command: pulse the CPU reset line.
pub const I8042_CMD_RESET: u8 = 0xfe;
/// I/O port of the ACPI sleep control register.
pub const SLEEP_CONTROL_PORT: u64 = 0x3c0;
/// `SLP_TYPx` value for S5 (soft off); the DSDT's `\_S5` must give this value.
pub const S5_SLP_TYP: u8 = 5;
const SLP_EN: u8 = 1 << 5;

/// The i8042 controller, reduced to its reset line.
#[derive(Debug, Default)]
pub struct I8042;

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty, no device answering.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<GuestExit> {
        (offset == 4 && data.first() == Some(&I8042_CMD_RESET)).then_some(GuestExit::Reboot)
    }
}

/// The ACPI sleep control register.
#[derive(Debug, Default)]
pub struct SleepControl;

impl BusDevice for SleepControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<GuestExit> {
        let v = *data.first()?;
        let slp_typ = (v >> 2) & 0x7;
        if v & SLP_EN == 0 {
            return None;
        }
        if slp_typ == S5_SLP_TYP {
            Some(GuestExit::Poweroff)
        } else {
            WARNINGS.log(
                log::Level::Warn,
                format_args!("guest asked for unsupported sleep state SLP_TYP={slp_typ}"),
            );
            None
        }
    }
}

/// I/O port of the pvpanic device (QEMU's ISA pvpanic uses the same; 16 bits, as the DSDT
/// gives it).
pub const PVPANIC_PORT: u16 = 0x505;
/// pvpanic event: the guest kernel panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;

/// The pvpanic device.
#[derive(Debug, Default)]
pub struct PvPanic;

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = PVPANIC_PANICKED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<GuestExit> {
        let v = *data.first()?;
        if v & PVPANIC_PANICKED != 0 {
            Some(GuestExit::Panic)
        } else {
            WARNINGS.log(
                log::Level::Warn,
                format_args!("guest wrote unsupported pvpanic event {v:#x}"),
            );
            None
        }
    }
}

/// I/O port where the guest reports its workload's exit code (next to the sleep control port).
pub const EXIT_CODE_PORT: u64 = interfaces::vm::EXIT_CODE_PORT as u64;

/// The last exit code the guest reported, -1 for none.
#[derive(Debug, Clone, Default)]
pub struct ExitCodeRegister {
    code: Arc<AtomicI32>,
}

impl ExitCodeRegister {
    /// A register with no code reported.
    pub fn new() -> Self {
        Self {
            code: Arc::new(AtomicI32::new(-1)),
        }
    }

    /// The reported code, if any.
    pub fn code(&self) -> Option<u8> {
        u8::try_from(self.code.load(Ordering::Acquire)).ok()
    }
}

impl BusDevice for ExitCodeRegister {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Option<GuestExit> {
        if let Some(&v) = data.first() {
            self.code.store(i32::from(v), Ordering::Release);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i8042_reset_command_reboots_and_nothing_else_does() {
        let mut k = I8042;
        assert_eq!(k.write(4, &[0xfe]), Some(GuestExit::Reboot));
        assert_eq!(k.write(0, &[0xfe]), None, "data port");
        assert_eq!(k.write(4, &[0xd1]), None);
        let mut status = [0xffu8];
        k.read(4, &mut status);
        assert_eq!(status, [0]);
    }

    #[test]
    fn exit_code_register_keeps_the_last_byte_written() {
        let reg = ExitCodeRegister::new();
        let mut dev = reg.clone();
        assert_eq!(reg.code(), None);
        assert_eq!(
            dev.write(0, &[3]),
            None,
            "reporting a code does not end the VM"
        );
        assert_eq!(reg.code(), Some(3));
        dev.write(0, &[255, 1]);
        assert_eq!(reg.code(), Some(255));
        dev.write(0, &[]);
        assert_eq!(reg.code(), Some(255));
    }

    #[test]
    fn pvpanic_offers_panicked_and_a_panic_event_ends_the_vm() {
        let mut p = PvPanic;
        let mut caps = [0xffu8];
        p.read(0, &mut caps);
        assert_eq!(caps, [PVPANIC_PANICKED]);
        assert_eq!(p.write(0, &[PVPANIC_PANICKED]), Some(GuestExit::Panic));
        assert_eq!(p.write(0, &[2]), None, "crash kernel loaded is not offered");
        assert_eq!(p.write(0, &[]), None);
    }

    #[test]
    fn s5_with_slp_en_powers_off() {
        let mut s = SleepControl;
        assert_eq!(s.write(0, &[(5 << 2) | 0x20]), Some(GuestExit::Poweroff));
        assert_eq!(s.write(0, &[5 << 2]), None, "without SLP_EN");
        assert_eq!(s.write(0, &[(3 << 2) | 0x20]), None, "S3 is not supported");
        assert_eq!(s.write(0, &[]), None);
    }
}

//! vCPUs: boot-time configuration and the run loop, one thread each.
//!
//! The boot vCPU (id 0) starts at the kernel's entry (long mode, or 32-bit mode for PVH); the
//! others wait, as on real hardware, for the guest's INIT/SIPI (the in-kernel LAPIC handles that).
//!
//! With an in-kernel LAPIC, `hlt` never exits to user space, so a guest that halts with
//! interrupts off would hang the VMM for ever. The VMM's main thread therefore kicks every vCPU
//! thread with [`kick_signal`] on a fixed tick; a kicked vCPU records whether it is *stuck*
//! (halted with `IF` clear, or never started) in that tick's round. When every vCPU was stuck in
//! the same round, nothing can wake the guest again: that is a crash.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Once;
use virtio_devices::{LogLimit, GUEST_LOG_LIMIT};

use kvm_bindings::{
    CpuId, KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_UNINITIALIZED,
    KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::arch::x86_64::{cpuid, lapic, msr, regs};
use crate::boot::EntryPoint;
use crate::devices::bus::{Bus, WriteOutcome};
use crate::exit::{CrashReason, GuestExit};

/// Errors configuring or running a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `KVM_SET_CPUID2` failed.
    #[error("set CPUID")]
    SetCpuid(#[source] kvm_ioctls::Error),
    /// MSR setup failed.
    #[error("set up MSRs")]
    Msrs(#[source] msr::Error),
    /// LAPIC setup failed.
    #[error("set up the local APIC")]
    Lapic(#[source] lapic::Error),
    /// Register setup failed.
    #[error("set up boot registers")]
    Regs(#[source] regs::Error),
    /// `KVM_RUN` failed.
    #[error("run vCPU {0}")]
    Run(u8, #[source] kvm_ioctls::Error),
    /// An exit the VMM does not handle.
    #[error("vCPU {0}: unexpected exit {1}")]
    UnexpectedExit(u8, String),
    /// The kick signal handler could not be installed.
    #[error("install the vCPU kick signal handler")]
    KickSignal(#[source] vmm_sys_util::errno::Error),
}

/// What a vCPU thread reports to the VMM's main thread.
#[derive(Debug)]
pub enum VcpuEvent {
    /// The guest ended (poweroff, reboot, crash) as seen by this vCPU.
    Exit(u8, GuestExit),
    /// The vCPU failed.
    Failed(u8, Error),
}

/// State shared between the main thread and the vCPU threads.
#[derive(Debug)]
pub struct Shared {
    /// Set when the VM is ending: vCPU threads return at their next exit.
    pub stop: AtomicBool,
    /// The watchdog round (starts at 1).
    pub round: AtomicU64,
    /// Per vCPU: the last round in which it was found stuck (0: not stuck).
    pub stuck_round: Vec<AtomicU64>,
    /// Guest accesses to addresses no device claims: counted, the first logged.
    pub unhandled_accesses: LogLimit,
}

impl Shared {
    /// State for `vcpus` vCPUs.
    pub fn new(vcpus: u8) -> Self {
        Shared {
            stop: AtomicBool::new(false),
            round: AtomicU64::new(1),
            stuck_round: (0..vcpus).map(|_| AtomicU64::new(0)).collect(),
            unhandled_accesses: LogLimit::new(
                GUEST_LOG_LIMIT,
                log::Level::Debug,
                "further unhandled accesses are not logged",
            ),
        }
    }

    /// Whether every vCPU was stuck in the current round.
    pub fn all_stuck(&self) -> bool {
        let round = self.round.load(Ordering::Acquire);
        self.stuck_round
            .iter()
            .all(|r| r.load(Ordering::Acquire) == round)
    }
}

/// The real-time signal that interrupts `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: the signal's only job is to make KVM_RUN return EINTR.
}

/// Installs the (empty) handler for [`kick_signal`], once per process.
pub fn install_kick_handler() -> Result<(), Error> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(Error::KickSignal);
    });
    result
}

/// Configures vCPU `id` of `count`: CPUID, MSRs, LAPIC, and for the boot vCPU the entry state
/// (long mode or PVH).
pub fn configure(
    fd: &VcpuFd,
    id: u8,
    count: u8,
    supported: &CpuId,
    entry: Option<EntryPoint>,
) -> Result<(), Error> {
    let mut cpuid = supported.clone();
    cpuid::filter_cpuid(cpuid.as_mut_slice(), id, count);
    fd.set_cpuid2(&cpuid).map_err(Error::SetCpuid)?;
    msr::setup_msrs(fd).map_err(Error::Msrs)?;
    lapic::setup_lapic(fd).map_err(Error::Lapic)?;
    match entry {
        Some(EntryPoint::LongMode { entry, zero_page }) => {
            regs::setup_long_mode(fd, entry, zero_page).map_err(Error::Regs)?;
        }
        Some(EntryPoint::Pvh { entry, start_info }) => {
            regs::setup_pvh(fd, entry, start_info).map_err(Error::Regs)?;
        }
        None => {}
    }
    Ok(())
}

/// A configured vCPU with its view of the buses.
#[derive(Debug)]
pub struct Vcpu {
    /// vCPU (and APIC) id.
    pub id: u8,
    /// The KVM vCPU.
    pub fd: VcpuFd,
    /// Port I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
}

impl Vcpu {
    /// Runs until the guest ends or the VMM stops it; reports how on `events`.
    pub fn run(mut self, shared: &Shared, events: &Sender<VcpuEvent>) {
        let id = self.id;
        loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let result = match self.fd.run() {
                Ok(exit) => handle_exit(id, exit, &self.pio, &self.mmio, shared),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    record_stuck(id, &self.fd, shared);
                    None
                }
                Err(e) => Some(Err(Error::Run(id, e))),
            };
            match result {
                None => {}
                Some(Ok(exit)) => {
                    if exit == GuestExit::Crash(CrashReason::InternalError) {
                        log::info!("vCPU {id}: {}", internal_error_detail(&mut self.fd));
                    }
                    // The receiver is gone only when the VM is already ending.
                    let _ = events.send(VcpuEvent::Exit(id, exit));
                    return;
                }
                Some(Err(e)) => {
                    let _ = events.send(VcpuEvent::Failed(id, e));
                    return;
                }
            }
        }
    }
}

fn record_stuck(id: u8, fd: &VcpuFd, shared: &Shared) {
    let round = shared.round.load(Ordering::Acquire);
    let stuck = match fd.get_mp_state() {
        Ok(s) if s.mp_state == KVM_MP_STATE_HALTED => {
            const RFLAGS_IF: u64 = 1 << 9;
            fd.get_regs().is_ok_and(|r| r.rflags & RFLAGS_IF == 0)
        }
        Ok(s) => matches!(
            s.mp_state,
            KVM_MP_STATE_UNINITIALIZED | KVM_MP_STATE_INIT_RECEIVED
        ),
        Err(_) => false,
    };
    if let Some(slot) = shared.stuck_round.get(usize::from(id)) {
        slot.store(if stuck { round } else { 0 }, Ordering::Release);
    }
}

fn log_unhandled(shared: &Shared, what: std::fmt::Arguments<'_>, mmio: bool) {
    // Legacy port probing is routine for Linux; an MMIO access to nothing is worth a warning.
    let level = if mmio {
        log::Level::Warn
    } else {
        log::Level::Debug
    };
    shared.unhandled_accesses.log(level, what);
}

/// `None`: keep running. `Some(Ok)`: the guest ended. `Some(Err)`: the vCPU failed.
fn handle_exit(
    id: u8,
    exit: VcpuExit<'_>,
    pio: &Bus,
    mmio: &Bus,
    shared: &Shared,
) -> Option<Result<GuestExit, Error>> {
    match exit {
        VcpuExit::IoOut(port, data) => match pio.write(u64::from(port), data) {
            WriteOutcome::Handled(end) => end.map(Ok),
            WriteOutcome::Unmapped => {
                log_unhandled(
                    shared,
                    format_args!("unhandled pio write port={port:#x} data={data:02x?}"),
                    false,
                );
                None
            }
        },
        VcpuExit::IoIn(port, data) => {
            if !pio.read(u64::from(port), data) {
                data.fill(0xff);
                log_unhandled(
                    shared,
                    format_args!("unhandled pio read port={port:#x} len={}", data.len()),
                    false,
                );
            }
            None
        }
        VcpuExit::MmioWrite(addr, data) => match mmio.write(addr, data) {
            WriteOutcome::Handled(end) => end.map(Ok),
            WriteOutcome::Unmapped => {
                log_unhandled(
                    shared,
                    format_args!("unhandled mmio write addr={addr:#x} data={data:02x?}"),
                    true,
                );
                None
            }
        },
        VcpuExit::MmioRead(addr, data) => {
            if !mmio.read(addr, data) {
                data.fill(0xff);
                log_unhandled(
                    shared,
                    format_args!("unhandled mmio read addr={addr:#x} len={}", data.len()),
                    true,
                );
            }
            None
        }
        // Only without an in-kernel LAPIC; kept so a halt can never be mistaken for progress.
        VcpuExit::Hlt => Some(Ok(GuestExit::Crash(CrashReason::HaltedForever))),
        VcpuExit::Shutdown => Some(Ok(GuestExit::Crash(CrashReason::TripleFault))),
        VcpuExit::FailEntry(reason, _) => {
            Some(Ok(GuestExit::Crash(CrashReason::FailEntry(reason))))
        }
        VcpuExit::InternalError => Some(Ok(GuestExit::Crash(CrashReason::InternalError))),
        VcpuExit::SystemEvent(kind, _) => Some(Ok(match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => GuestExit::Poweroff,
            KVM_SYSTEM_EVENT_RESET => GuestExit::Reboot,
            KVM_SYSTEM_EVENT_CRASH => GuestExit::Crash(CrashReason::SystemEvent),
            other => {
                return Some(Err(Error::UnexpectedExit(
                    id,
                    format!("system event {other}"),
                )))
            }
        })),
        VcpuExit::Intr => None,
        other => Some(Err(Error::UnexpectedExit(id, format!("{other:?}")))),
    }
}

/// What KVM says about the `KVM_EXIT_INTERNAL_ERROR` just taken: its suberror (1 is an
/// instruction it could not emulate), the data words and the guest's `rip`.
fn internal_error_detail(fd: &mut VcpuFd) -> String {
    let rip = fd.get_regs().map(|r| r.rip).unwrap_or_default();
    let run = fd.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, for which KVM fills the `internal`
    // member of the exit union; every bit pattern is a valid value of its integer fields.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let n = usize::try_from(internal.ndata)
        .unwrap_or(usize::MAX)
        .min(internal.data.len());
    format!(
        "internal error suberror {} at rip {rip:#x}, data {:x?}",
        internal.suberror,
        &internal.data[..n]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_stuck_needs_every_vcpu_in_the_current_round() {
        let s = Shared::new(2);
        assert!(!s.all_stuck());
        s.stuck_round[0].store(1, Ordering::Release);
        assert!(!s.all_stuck());
        s.stuck_round[1].store(1, Ordering::Release);
        assert!(s.all_stuck());
        s.round.store(2, Ordering::Release);
        assert!(!s.all_stuck(), "stale rounds do not count");
    }
}

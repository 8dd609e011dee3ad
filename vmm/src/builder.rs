//! Builds a VM from a [`VmConfig`], runs it to the end and says how it ended.
//!
//! [`build`]: guest memory → kernel, initrd and boot data → KVM VM (irqchip, PIT, memory slots) →
//! devices on the buses → vCPUs (configured here) → the threads' seccomp filters compiled.
//! [`Vm::run`]: the network thread and one thread per vCPU, each installing its own filter before
//! anything else, then the main thread's filter (`seccomp::StartGate`); the main thread waits for a vCPU to report the guest's end, running the
//! halt watchdog (see `vstate::vcpu`) between reports. [`Vm::teardown`] (also on drop): stop
//! flag, kick until every vCPU thread has returned, stop the network thread, flush the console.
//! [`run_vm`] is the three in a row.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use usernet::{UserNet, UserNetConfig};
use virtio_devices::{InterruptLine, MmioTransport, VirtioBlock, VirtioNet};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use crate::arch::x86_64::acpi::{self, AcpiConfig, VirtioMmioSlot};
use crate::arch::x86_64::layout::{VIRTIO_GSI_BASE, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use crate::boot::{self, BootConfig};
use crate::config::{SerialOutput, VmConfig};
use crate::devices::bus::{self, Bus};
use crate::devices::power::{
    ExitCodeRegister, PvPanic, SleepControl, EXIT_CODE_PORT, I8042, I8042_BASE, I8042_LEN,
    PVPANIC_PORT, SLEEP_CONTROL_PORT,
};
use crate::devices::serial::{EventFdTrigger, SerialDevice, COM1_BASE, COM1_IRQ, COM1_LEN};
use crate::devices::virtio::{IrqfdLine, NetThread, SharedNet, UserNetBackend};
use crate::exit::{CrashReason, GuestExit};
use crate::seccomp::{self, StartGate, ThreadFilters, ThreadRole};
use crate::vstate::vcpu::{self, Shared, Vcpu, VcpuEvent};
use crate::vstate::{memory, vm};

/// How often the main thread checks for a guest that halted for good.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(100);
/// How long teardown waits for vCPU threads to return.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(2);

/// Errors building or running the VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Guest memory could not be mapped.
    #[error("create guest memory")]
    Memory(#[source] memory::Error),
    /// KVM VM setup failed.
    #[error("set up the VM")]
    Vm(#[source] vm::Error),
    /// The serial output file could not be created.
    #[error("create serial output {}", .0.display())]
    SerialOutput(PathBuf, #[source] std::io::Error),
    /// An eventfd could not be created.
    #[error("create eventfd")]
    EventFd(#[source] std::io::Error),
    /// A device could not be placed on a bus.
    #[error("register device")]
    Bus(#[source] bus::Error),
    /// Loading the kernel and boot data failed.
    #[error("boot")]
    Boot(#[source] boot::Error),
    /// Configuring or running a vCPU failed.
    #[error("vCPU")]
    Vcpu(#[source] vcpu::Error),
    /// A vCPU thread could not be started.
    #[error("spawn vCPU thread")]
    SpawnVcpu(#[source] std::io::Error),
    /// The ACPI tables could not be built.
    #[error("build the ACPI tables")]
    Acpi(#[source] acpi::Error),
    /// The seccomp filter could not be installed.
    #[error("seccomp")]
    Seccomp(#[source] seccomp::Error),
    /// A disk image could not be opened.
    #[error("disk")]
    Disk(#[source] virtio_devices::block::BlockError),
    /// A virtio transport could not be created.
    #[error("virtio device")]
    Virtio(#[source] virtio_devices::MmioError),
    /// The resolver for the guest's DNS could not be read.
    #[error("user-mode network configuration")]
    NetConfig(#[source] usernet::ConfigError),
    /// The user-mode network could not be created.
    #[error("user-mode network")]
    Net(#[source] usernet::Error),
    /// The network thread could not be started.
    #[error("spawn the network thread")]
    SpawnNet(#[source] std::io::Error),
    /// More devices than windows (`config` bounds this).
    #[error("no virtio-mmio window left")]
    NoSlot,
    /// Every vCPU thread ended without reporting.
    #[error("all vCPU threads ended without reporting how the guest ended")]
    VcpusGone,
}

impl Error {
    /// Whether the error is the caller's input (exit code 2) rather than the VMM failing (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Boot(e) => e.is_bad_input(),
            Error::SerialOutput(..) | Error::Disk(..) => true,
            _ => false,
        }
    }
}

/// How a VM run ended: the guest's exit and the workload exit code its init reported, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmOutcome {
    /// How the guest ended.
    pub exit: GuestExit,
    /// The byte the guest wrote to the exit-code port before ending, if any.
    pub guest_code: Option<u8>,
}

/// The virtio-mmio windows and interrupt pins for `n` devices (checked against the pin count by
/// `config`).
pub fn virtio_slots(n: usize) -> Vec<VirtioMmioSlot> {
    (0u32..)
        .zip(0..n)
        .map(|(i, _)| VirtioMmioSlot {
            base: VIRTIO_MMIO_BASE + u64::from(i) * VIRTIO_MMIO_SIZE,
            len: u32::try_from(VIRTIO_MMIO_SIZE).unwrap_or(u32::MAX),
            gsi: VIRTIO_GSI_BASE + i,
        })
        .collect()
}

/// Runs the VM described by `cfg` until the guest ends: [`build`], [`Vm::run`], then
/// [`Vm::teardown`].
pub fn run_vm(cfg: &VmConfig) -> Result<VmOutcome, Error> {
    let mut vm = build(cfg)?;
    let result = vm.run();
    vm.teardown();
    result.map(|exit| VmOutcome {
        exit,
        guest_code: vm.guest_code(),
    })
}

/// A VM built from a [`VmConfig`]: guest memory loaded, devices on their buses, vCPUs configured
/// and the threads' seccomp filters compiled; no guest code has run yet.
///
/// [`Vm::run`] starts the vCPU and network threads and waits for the guest's end;
/// [`Vm::teardown`] (or dropping the `Vm`) stops them and flushes the console.
pub struct Vm {
    /// vCPUs configured and waiting for [`Vm::run`] to give each a thread.
    vcpus: Vec<Vcpu>,
    /// The `--net` device and its wake-up eventfd, until `run` starts its thread.
    net: Option<(SharedNet, EventFd)>,
    shared: Arc<Shared>,
    serial: Arc<Mutex<SerialDevice<EventFdTrigger>>>,
    exit_code: ExitCodeRegister,
    /// Each thread's seccomp filter, installed by the thread itself in `run`.
    filters: Arc<ThreadFilters>,
    /// The threads `run` started, until teardown.
    threads: Vec<JoinHandle<()>>,
    net_thread: Option<NetThread>,
    /// Whether teardown ran (it runs once: from [`Vm::teardown`] or from `Drop`).
    torn_down: bool,
    // Fields drop in order: the KVM VM before the memory mapped into it.
    vm: vm::Vm,
    /// Outlives the VM's use of it: the vCPU threads have returned (or are stopped) by drop.
    mem: GuestMemoryMmap,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("vcpus", &self.vcpus.len())
            .field("net", &self.net.is_some())
            .field("threads", &self.threads.len())
            .field("net_thread", &self.net_thread.is_some())
            .field("torn_down", &self.torn_down)
            .field("vm", &self.vm)
            .field("mem", &self.mem)
            .finish_non_exhaustive()
    }
}

/// Builds the VM described by `cfg`: everything is opened, mapped and configured, then the
/// process is put under its seccomp allow-list.
pub fn build(cfg: &VmConfig) -> Result<Vm, Error> {
    let mem = memory::create_guest_memory(cfg.memory_bytes).map_err(Error::Memory)?;
    let slots = virtio_slots(cfg.disks.len() + usize::from(cfg.net));
    let acpi = acpi::build(&AcpiConfig {
        vcpus: cfg.vcpus,
        virtio: &slots,
    })
    .map_err(Error::Acpi)?;
    // Kernel first: bad input is reported before /dev/kvm is touched.
    let entry = boot::load_linux(
        &mem,
        cfg.memory_bytes,
        &BootConfig {
            kernel: &cfg.kernel,
            initrd: cfg.initrd.as_deref(),
            cmdline: &cfg.cmdline,
            acpi: Some(&acpi),
        },
    )
    .map_err(Error::Boot)?;
    log::info!(
        "kernel {entry}, {} MiB, {} vCPU(s)",
        cfg.memory_bytes >> 20,
        cfg.vcpus
    );

    let vm = vm::Vm::new(&mem, &cfg.kvm).map_err(Error::Vm)?;

    let out: Box<dyn Write + Send> = match &cfg.serial {
        SerialOutput::Stdout => Box::new(std::io::stdout()),
        SerialOutput::File(path) => {
            Box::new(File::create(path).map_err(|e| Error::SerialOutput(path.clone(), e))?)
        }
    };
    let serial_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)?;
    vm.register_irqfd(&serial_evt, COM1_IRQ)
        .map_err(Error::Vm)?;
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        EventFdTrigger(serial_evt),
        out,
    )));
    let mut pio = Bus::new();
    pio.insert(COM1_BASE, COM1_LEN, serial.clone())
        .map_err(Error::Bus)?;
    pio.insert(I8042_BASE, I8042_LEN, Arc::new(Mutex::new(I8042)))
        .map_err(Error::Bus)?;
    pio.insert(SLEEP_CONTROL_PORT, 1, Arc::new(Mutex::new(SleepControl)))
        .map_err(Error::Bus)?;
    pio.insert(u64::from(PVPANIC_PORT), 1, Arc::new(Mutex::new(PvPanic)))
        .map_err(Error::Bus)?;
    let exit_code = ExitCodeRegister::new();
    pio.insert(EXIT_CODE_PORT, 1, Arc::new(Mutex::new(exit_code.clone())))
        .map_err(Error::Bus)?;
    let mut mmio = Bus::new();
    let mut slot_iter = slots.iter();
    for (i, disk) in cfg.disks.iter().enumerate() {
        // A path or an inherited descriptor (`crate::files`).
        let file = crate::files::open(&disk.path, !disk.read_only).map_err(|source| {
            Error::Disk(virtio_devices::block::BlockError::Open {
                path: disk.path.clone(),
                source,
            })
        })?;
        let block =
            VirtioBlock::new(file, disk.read_only, &format!("disk{i}")).map_err(Error::Disk)?;
        let slot = slot_iter.next().ok_or(Error::NoSlot)?;
        let transport = MmioTransport::new(block, mem.clone(), irq_line(&vm, slot.gsi)?)
            .map_err(Error::Virtio)?;
        mmio.insert(
            slot.base,
            u64::from(slot.len),
            Arc::new(Mutex::new(transport)),
        )
        .map_err(Error::Bus)?;
    }
    let mut net = None;
    if cfg.net {
        let slot = slot_iter.next().ok_or(Error::NoSlot)?;
        let net_cfg = UserNetConfig {
            allow: cfg.net_allow.clone(),
            deny: cfg.net_deny.clone(),
            ..UserNetConfig::system().map_err(Error::NetConfig)?
        };
        let stack = UserNet::new(net_cfg).map_err(Error::Net)?;
        let wake = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)?;
        let backend = UserNetBackend::new(stack, wake.try_clone().map_err(Error::EventFd)?);
        let device = VirtioNet::new(backend, usernet::config::GUEST_MAC);
        let transport: SharedNet = Arc::new(Mutex::new(
            MmioTransport::new(device, mem.clone(), irq_line(&vm, slot.gsi)?)
                .map_err(Error::Virtio)?,
        ));
        mmio.insert(slot.base, u64::from(slot.len), transport.clone())
            .map_err(Error::Bus)?;
        net = Some((transport, wake));
    }

    let supported = vm.supported_cpuid().map_err(Error::Vm)?;
    let mut vcpus = Vec::with_capacity(usize::from(cfg.vcpus));
    for id in 0..cfg.vcpus {
        let fd = vm.create_vcpu(id).map_err(Error::Vm)?;
        let boot_entry = (id == 0).then_some(entry);
        vcpu::configure(&fd, id, cfg.vcpus, &supported, boot_entry).map_err(Error::Vcpu)?;
        vcpus.push(Vcpu {
            id,
            fd,
            pio: pio.clone(),
            mmio: mmio.clone(),
        });
    }

    vcpu::install_kick_handler().map_err(Error::Vcpu)?;
    // Everything is open and mapped: each thread `run` starts installs its allow-list first.
    let filters = Arc::new(ThreadFilters::compile(cfg.seccomp).map_err(Error::Seccomp)?);
    let shared = Arc::new(Shared::new(cfg.vcpus));
    Ok(Vm {
        vcpus,
        net,
        shared,
        serial,
        exit_code,
        filters,
        threads: Vec::new(),
        net_thread: None,
        torn_down: false,
        vm,
        mem,
    })
}

impl Vm {
    /// Starts the network thread and one thread per vCPU, then waits for the guest's end (or
    /// a vCPU's failure), running the halt watchdog between reports. The threads keep running
    /// until [`Vm::teardown`]. The vCPUs run once: a second call finds none and returns
    /// [`Error::VcpusGone`].
    pub fn run(&mut self) -> Result<GuestExit, Error> {
        if self.vcpus.is_empty() {
            return Err(Error::VcpusGone);
        }
        let (gate, reports) = StartGate::new(self.filters.clone());
        let mut started = 0;
        if let Some((transport, wake)) = self.net.take() {
            match NetThread::spawn(transport, wake, gate.clone()) {
                Ok(thread) => {
                    self.net_thread = Some(thread);
                    started += 1;
                }
                Err(e) => {
                    gate.release(false);
                    return Err(Error::SpawnNet(e));
                }
            }
        }
        let vcpus = std::mem::take(&mut self.vcpus);
        let shared = &self.shared;
        let threads = &mut self.threads;
        let (tx, rx) = mpsc::channel();
        threads.reserve(vcpus.len());
        for v in vcpus {
            let (shared, tx, entry) = (shared.clone(), tx.clone(), gate.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{}", v.id))
                .spawn(move || {
                    if entry.enter(ThreadRole::Vcpu) {
                        v.run(&shared, &tx);
                    }
                });
            match spawned {
                Ok(handle) => {
                    threads.push(handle);
                    started += 1;
                }
                Err(e) => {
                    gate.release(false);
                    return Err(Error::SpawnVcpu(e));
                }
            }
        }
        drop(tx);
        // Every thread has its filter before any vCPU runs; then the main thread takes its own.
        gate.open(&reports, started).map_err(Error::Seccomp)?;
        wait_for_exit(&rx, shared, threads, &self.serial)
    }

    /// The byte the guest wrote to the exit-code port, if any (final once torn down).
    pub fn guest_code(&self) -> Option<u8> {
        self.exit_code.code()
    }

    /// Stops the vCPU threads (stop flag, kick until every one has returned) and the network
    /// thread, then flushes the console. Runs once; dropping the `Vm` runs it if not yet done.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        stop_vcpus(&self.shared, std::mem::take(&mut self.threads));
        if let Some(t) = self.net_thread.take() {
            t.stop();
        }
        if let Err(e) = self
            .serial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flush()
        {
            log::warn!("flush serial output: {e}");
        }
        let unhandled = self.shared.unhandled_accesses.count();
        if unhandled > 0 {
            log::info!("{unhandled} guest accesses to unmapped addresses");
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// An irqfd-backed interrupt line on `gsi`.
fn irq_line(vm: &vm::Vm, gsi: u32) -> Result<Arc<dyn InterruptLine>, Error> {
    let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)?;
    vm.register_irqfd(&evt, gsi).map_err(Error::Vm)?;
    Ok(Arc::new(IrqfdLine(evt)))
}

fn wait_for_exit(
    rx: &mpsc::Receiver<VcpuEvent>,
    shared: &Shared,
    threads: &[JoinHandle<()>],
    serial: &Mutex<SerialDevice<EventFdTrigger>>,
) -> Result<GuestExit, Error> {
    loop {
        match rx.recv_timeout(WATCHDOG_TICK) {
            Ok(VcpuEvent::Exit(id, exit)) => {
                log::info!("vCPU {id}: guest {exit}");
                return Ok(exit);
            }
            Ok(VcpuEvent::Failed(_, e)) => return Err(Error::Vcpu(e)),
            Err(RecvTimeoutError::Disconnected) => return Err(Error::VcpusGone),
            Err(RecvTimeoutError::Timeout) => {
                if shared.all_stuck() {
                    return Ok(GuestExit::Crash(CrashReason::HaltedForever));
                }
                shared.round.fetch_add(1, Ordering::AcqRel);
                kick(threads);
                // A partial console line (a prompt, a line being written) is not held longer.
                if let Err(e) = serial
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .flush()
                {
                    log::debug!("flush serial output: {e}");
                }
            }
        }
    }
}

fn kick(threads: &[JoinHandle<()>]) {
    for t in threads.iter().filter(|t| !t.is_finished()) {
        if let Err(e) = t.kill(vcpu::kick_signal()) {
            log::debug!("kick vCPU thread: {e}");
        }
    }
}

/// Sets the stop flag and kicks the vCPU threads until every one has returned (or the limit).
fn stop_vcpus(shared: &Shared, threads: Vec<JoinHandle<()>>) {
    shared.stop.store(true, Ordering::Release);
    let started = Instant::now();
    // A thread may be between its stop check and KVM_RUN when kicked: kick until it is out.
    while threads.iter().any(|t| !t.is_finished()) {
        if started.elapsed() > TEARDOWN_LIMIT {
            log::warn!("vCPU threads did not stop within {TEARDOWN_LIMIT:?}");
            return;
        }
        kick(&threads);
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in threads {
        let _ = t.join();
    }
}

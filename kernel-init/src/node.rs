//! The node role: boot the node OS to `ready`, then serve as PID 1 until power-off.
//!
//! Boot sequence (each step bounded in time, none fatal): node.toml, kernel modules (boot
//! modules, then coldplug), power button, network (DHCP), control endpoint check, open socket
//! count, the grid identity (when a notary is configured), the ready line. Pending power-off
//! signals are honoured between steps. Then the workloads of the image, the grid's pull loop,
//! and the main loop: signals (reap children, power off) and power-button events.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modindex::ModuleIndex;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use pid1::cmdline::Cmdline;

use crate::input::PowerButtons;
use crate::modules::{self, Loader, SysKmod};
use crate::node_config::{self, NodeConfig};
use crate::ready::{ControlStatus, Ready};
use crate::signals::{self, Action, Signals};
use crate::{coldplug, control, net, power, sockets, InitError};

/// How often the main loop looks for new input devices.
const INPUT_RESCAN: Duration = Duration::from_secs(5);

/// Boots the node and never returns except with an error for the fatal-reboot path.
pub fn run(cmdline: &Cmdline, signals: &Signals) -> Result<Infallible, InitError> {
    let node = match NodeConfig::load() {
        Ok(node) => {
            crate::info!("node: version {} profile {}", node.version, node.profile);
            // The farmer's settings (`nullos.farm=`, `nullos.notary=`) from the command line.
            Some(node_config::with_farmer_settings(node, cmdline))
        }
        Err(e) => {
            crate::error!("node config: {}", crate::error_chain(&e));
            None
        }
    };
    handle_signals(signals);

    // CPU-feature modules (kvm, kvm_amd: the slowest to load by far) load on their own thread
    // while device drivers, the network and the control check go ahead; they are joined before
    // the ready line, so `ready` still means the node can run micro-VMs.
    let cpu_modules = load_modules();
    handle_signals(signals);
    phase_done("device modules");

    let mut buttons = PowerButtons::new();
    buttons.rescan();

    let configured = match net::bring_up() {
        Ok(configured) => configured,
        Err(e) => {
            crate::error!("network: {}", crate::error_chain(&e));
            Vec::new()
        }
    };
    handle_signals(signals);
    phase_done("network");

    let control = match node_config::control_endpoint(cmdline, node.as_ref()) {
        Some(endpoint) => control::check(endpoint),
        None => {
            crate::info!("control: no endpoint configured");
            ControlStatus::None
        }
    };
    handle_signals(signals);
    phase_done("control check");

    // The node's grid identity (on the data disk) and its outbox, before the ready line that
    // names the node; nothing here waits for the notary.
    // Claiming an empty data disk runs mke2fs, whose exit the reaper delivers: the boot thread
    // reaps while the grid is prepared on a thread of its own.
    let grid_config = node.clone();
    let grid = while_reaping(signals, move || crate::grid::prepare(grid_config.as_ref()));
    phase_done("grid identity");

    let listening = match sockets::open_sockets() {
        Ok(open) => {
            for socket in &open {
                crate::warn!("socket open to inbound traffic: {socket}");
            }
            open.len()
        }
        Err(e) => {
            crate::error!("count listening sockets: {}", crate::error_chain(&e));
            0
        }
    };

    if let Some(cpu) = cpu_modules {
        if cpu.join().is_err() {
            crate::error!("modules: the CPU-feature module thread panicked");
        }
        phase_done("cpu modules");
    }
    buttons.rescan();
    let ready = Ready {
        version: node.as_ref().map(|n| n.version),
        profile: node.map(|n| n.profile),
        address: configured
            .first()
            .map(|c| (c.lease.address, c.lease.prefix_len, c.iface.clone())),
        uptime_ms: crate::ready::uptime_ms(),
        control,
        listening,
        node: grid
            .as_ref()
            .map(|joined| hex::encode(joined.node.as_bytes())),
    };
    crate::log::interface_line(&ready.to_string());
    // Workloads verify, set up and run on threads of their own; the main loop reaps for them.
    crate::workloads::start();
    if let Some(joined) = grid {
        crate::grid::start(joined);
    }
    main_loop(signals, buttons)
}

/// Loads the boot modules and coldplugs device drivers from the index, and starts a thread that
/// loads the CPU-feature modules (returned, to be joined). Never fatal.
fn load_modules() -> Option<std::thread::JoinHandle<()>> {
    let index = modules::read_index()?;
    let index = std::sync::Arc::new(index);
    let cpu_index = index.clone();
    let cpu_thread = std::thread::Builder::new()
        .name("cpu-modules".into())
        .spawn(move || load_cpu_modules(&cpu_index));
    let cpu_thread = match cpu_thread {
        Ok(handle) => Some(handle),
        Err(e) => {
            crate::warn!("modules: cannot start a thread for CPU modules ({e}); loading them now");
            load_cpu_modules(&index);
            None
        }
    };
    let start = Instant::now();
    let mut loader = Loader::new();
    let report = coldplug::run_system(&index, &mut loader, true);
    if report.unfinished {
        crate::warn!(
            "coldplug: devices still appearing after {} rounds; stopped",
            report.rounds
        );
    }
    crate::info!(
        "coldplug: {} modules loaded in {} rounds ({} ms)",
        loader.loaded().count(),
        report.rounds,
        start.elapsed().as_millis()
    );
    cpu_thread
}

/// Loads the modules the CPU's own modalias matches (kvm_amd or kvm_intel with kvm).
fn load_cpu_modules(index: &ModuleIndex) {
    let start = Instant::now();
    let cpu: Vec<String> = std::fs::read_to_string(coldplug::CPU_MODALIAS)
        .map(|alias| vec![alias.trim().to_owned()])
        .unwrap_or_default();
    let mut loader = Loader::new();
    for name in coldplug::plan(index, &cpu, &loader) {
        for event in loader.load(index, &mut SysKmod, &name) {
            modules::log_event(&event);
        }
    }
    crate::info!(
        "coldplug: {} CPU-feature modules loaded ({} ms)",
        loader.loaded().count(),
        start.elapsed().as_millis()
    );
}

/// Runs `work` on a thread of its own while this thread handles signals (reaping the children
/// `work` waits for); returns its result (`None` when the thread could not start or panicked).
fn while_reaping<T: Send + 'static>(
    signals: &Signals,
    work: impl FnOnce() -> Option<T> + Send + 'static,
) -> Option<T> {
    let handle = match std::thread::Builder::new()
        .name("grid-prepare".into())
        .spawn(work)
    {
        Ok(handle) => handle,
        Err(e) => {
            crate::error!("grid: cannot start a thread: {e}");
            return None;
        }
    };
    while !handle.is_finished() {
        let mut fds = [PollFd::new(signals.fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u8));
        handle_signals(signals);
    }
    handle.join().ok().flatten()
}

/// A debug line with the boot clock, for timing the boot.
fn phase_done(phase: &str) {
    crate::debug!("{phase} done at uptime {} ms", crate::ready::uptime_ms());
}

/// Acts on pending signals: reaps, or powers off (does not return then).
fn handle_signals(signals: &Signals) {
    for signo in signals.drain() {
        match signals::classify(signo) {
            Action::Reap => {
                signals::reap_zombies();
            }
            Action::PowerOff(reason) => power::power_off(reason),
            Action::Ignore => crate::info!("ignoring signal {signo}"),
        }
    }
}

/// Waits for signals and power-button presses forever.
fn main_loop(signals: &Signals, mut buttons: PowerButtons) -> Result<Infallible, InitError> {
    let mut last_rescan = Instant::now();
    loop {
        let devices: Vec<PathBuf>;
        let (signal_ready, device_ready) = {
            let button_fds = buttons.fds();
            devices = button_fds.iter().map(|(p, _)| p.clone()).collect();
            let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
            fds.extend(
                button_fds
                    .iter()
                    .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN)),
            );
            let timeout = PollTimeout::try_from(INPUT_RESCAN).unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(InitError::Poll(e)),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            let signal_ready = ready.first().copied().unwrap_or(false);
            (
                signal_ready,
                ready.into_iter().skip(1).collect::<Vec<bool>>(),
            )
        };
        if signal_ready {
            handle_signals(signals);
        }
        for (path, ready) in devices.iter().zip(device_ready) {
            if ready && buttons.read(Path::new(path)) {
                power::power_off("power button");
            }
        }
        if last_rescan.elapsed() >= INPUT_RESCAN {
            buttons.rescan();
            last_rescan = Instant::now();
        }
    }
}

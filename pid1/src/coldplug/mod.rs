//! Driver coldplug: match every device's modalias against the index and load what matches.
//!
//! There is no udev: `init` does what it would. A uevent socket is opened before anything
//! else ([`events::UeventDevices`]), then one walk of `/sys/devices` ([`scan`]) finds the
//! devices that existed before init. Loading a bus driver creates new devices (virtio_pci
//! creates the virtio device that needs virtio_net); their `add` uevents carry the modalias,
//! so they are matched as they come instead of by walking `/sys` again. Coldplug ends when no
//! device was added for a quiet period, or at a hard time bound. Without a uevent socket it
//! falls back to re-walking `/sys` after a settle pause ([`scan::ScanDevices`]).
//!
//! The decision of what to load ([`plan`]) and the load loop ([`run`]) are pure given a
//! [`Devices`] source.

pub mod events;
pub mod scan;

use modindex::ModuleIndex;

pub use self::scan::{scan_system, split_cpu, CPU_MODALIAS};
use crate::modules::{self, Kmod, LoadEvent, Loader, SysKmod};

/// Most load rounds (one per batch of new devices), so a source that never settles cannot
/// keep coldplug going forever.
pub const MAX_ROUNDS: usize = 64;

/// Modules to load for these modaliases: every match not tried yet, each once, in the order
/// the modaliases were given.
pub fn plan(index: &ModuleIndex, modaliases: &[String], loader: &Loader) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    for alias in modaliases {
        for module in index.modules_for_modalias(alias) {
            if !loader.tried(module) && !wanted.iter().any(|w| w == module) {
                wanted.push(module.to_owned());
            }
        }
    }
    wanted
}

/// What a device source saw after a load round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Devices were added; their modaliases (never empty).
    Added(Vec<String>),
    /// Events may have been missed: scan everything again.
    Lost,
    /// No device was added for the quiet period: coldplug is done.
    Settled,
    /// The time bound ran out while devices were still appearing.
    TimedOut,
}

/// Where coldplug learns about devices.
pub trait Devices {
    /// The modaliases of every device present now (CPU excluded).
    fn scan(&mut self) -> Vec<String>;
    /// Waits for devices added since the last call (bounded).
    fn wait(&mut self) -> Seen;
}

/// Summary of a coldplug run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Load rounds that ran: the first scan's, then one per batch of added devices.
    pub rounds: usize,
    /// Every load event, in order.
    pub events: Vec<LoadEvent>,
    /// True if devices were still appearing when coldplug stopped (time or round bound).
    pub unfinished: bool,
}

/// Loads the boot modules, then what the present devices need, then what devices added by
/// those drivers need, until the source settles.
///
/// `on_event` sees every event as it happens (for logging while loading is slow).
pub fn run(
    index: &ModuleIndex,
    loader: &mut Loader,
    kmod: &mut dyn Kmod,
    devices: &mut dyn Devices,
    mut on_event: impl FnMut(&LoadEvent),
) -> Report {
    let mut report = Report::default();
    let mut load = |report: &mut Report, loader: &mut Loader, name: &str| {
        for event in loader.load(index, kmod, name) {
            on_event(&event);
            report.events.push(event);
        }
    };
    let boot: Vec<String> = index.boot_modules().map(|m| m.name.clone()).collect();
    for name in boot {
        load(&mut report, loader, &name);
    }
    let mut modaliases = devices.scan();
    loop {
        report.rounds += 1;
        for name in plan(index, &modaliases, loader) {
            load(&mut report, loader, &name);
        }
        if report.rounds >= MAX_ROUNDS {
            report.unfinished = true;
            return report;
        }
        modaliases = match devices.wait() {
            Seen::Added(added) => added,
            Seen::Lost => devices.scan(),
            Seen::Settled => return report,
            Seen::TimedOut => {
                report.unfinished = true;
                return report;
            }
        };
    }
}

/// Coldplugs the running system: with `listen`, new devices are taken from kernel uevents
/// (the socket is closed before this returns); without it, or if the socket cannot be opened,
/// `/sys` is walked again after each round. Loads through finit_module and logs every event.
pub fn run_system(index: &ModuleIndex, loader: &mut Loader, listen: bool) -> Report {
    let feed = if listen {
        match events::SocketFeed::open() {
            Ok(feed) => Some(feed),
            Err(e) => {
                crate::warn!(
                    "coldplug: {}; walking /sys after each round instead",
                    crate::error_chain(&e)
                );
                None
            }
        }
    } else {
        None
    };
    match feed {
        Some(feed) => {
            let quiet = events::Quiet::new(events::QUIET, events::LIMIT);
            let mut devices = events::UeventDevices::new(feed, quiet);
            let report = run(
                index,
                loader,
                &mut SysKmod,
                &mut devices,
                modules::log_event,
            );
            // No netlink socket outlives coldplug.
            devices.close();
            report
        }
        None => run(
            index,
            loader,
            &mut SysKmod,
            &mut scan::ScanDevices::new(),
            modules::log_event,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;
    use crate::modules::tests::{index, FakeKmod};

    const VIRTIO_PCI: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
    const VIRTIO_NET: &str = "virtio:d00000001v00001AF4";

    /// A fake kernel's devices: `present` says which modaliases exist given the module files
    /// loaded so far; `wait` reports the ones not reported yet, then `script`'s answers, then
    /// `Settled`.
    struct FakeDevices<'a> {
        kmod: &'a RefCell<FakeKmod>,
        present: fn(&[String]) -> Vec<String>,
        reported: Vec<String>,
        script: VecDeque<Seen>,
        scans: usize,
    }

    impl<'a> FakeDevices<'a> {
        fn new(kmod: &'a RefCell<FakeKmod>, present: fn(&[String]) -> Vec<String>) -> Self {
            FakeDevices {
                kmod,
                present,
                reported: Vec::new(),
                script: VecDeque::new(),
                scans: 0,
            }
        }
    }

    impl Devices for FakeDevices<'_> {
        fn scan(&mut self) -> Vec<String> {
            self.scans += 1;
            self.reported = (self.present)(&self.kmod.borrow().loaded);
            self.reported.clone()
        }

        fn wait(&mut self) -> Seen {
            if let Some(seen) = self.script.pop_front() {
                return seen;
            }
            let new: Vec<String> = (self.present)(&self.kmod.borrow().loaded)
                .into_iter()
                .filter(|a| !self.reported.contains(a))
                .collect();
            if new.is_empty() {
                return Seen::Settled;
            }
            self.reported.extend(new.iter().cloned());
            Seen::Added(new)
        }
    }

    /// The virtio-net device only appears once virtio_pci is loaded.
    fn virtio(loaded: &[String]) -> Vec<String> {
        let mut aliases = vec![VIRTIO_PCI.to_owned(), "acpi:LNXPWRBN:".to_owned()];
        if loaded.iter().any(|p| p == "/m/virtio_pci.ko") {
            aliases.push(VIRTIO_NET.to_owned());
        }
        aliases
    }

    #[test]
    fn cpu_modalias_is_split_from_device_modaliases() {
        let cpu = "cpu:type:x86,ven0002fam0019mod0001:feature:,0000,0081,".to_owned();
        let dev = VIRTIO_PCI.to_owned();
        let (c, d) = split_cpu(vec![dev.clone(), cpu.clone()]);
        assert_eq!(c, [cpu]);
        assert_eq!(d, [dev]);
    }

    #[test]
    fn plan_matches_and_skips_tried_modules() {
        let index = index();
        let mut loader = Loader::new();
        let aliases = vec![
            VIRTIO_PCI.to_owned(),
            "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00".to_owned(),
            "acpi:LNXPWRBN:".to_owned(),
            VIRTIO_PCI.to_owned(),
        ];
        assert_eq!(plan(&index, &aliases, &loader), ["virtio_pci", "button"]);
        loader.load(&index, &mut FakeKmod::default(), "button");
        assert_eq!(plan(&index, &aliases, &loader), ["virtio_pci"]);
        assert!(plan(&index, &["platform:i8042".to_owned()], &loader).is_empty());
    }

    #[test]
    fn added_devices_are_matched_without_rescanning() {
        let index = index();
        let mut loader = Loader::new();
        let kmod = RefCell::new(FakeKmod::default());
        let mut devices = FakeDevices::new(&kmod, virtio);
        let mut logged = Vec::new();
        let report = run(
            &index,
            &mut loader,
            &mut FakeKmodRef(&kmod),
            &mut devices,
            |e| logged.push(e.clone()),
        );
        assert_eq!(report.rounds, 2, "the first scan's round, then virtio0's");
        assert_eq!(devices.scans, 1, "one walk of /sys");
        assert!(!report.unfinished);
        assert_eq!(logged, report.events);
        let loaded = kmod.borrow().loaded.clone();
        assert_eq!(
            loaded.first().map(String::as_str),
            Some("/m/evdev.ko"),
            "boot modules first"
        );
        assert!(loaded.iter().any(|p| p == "/m/button.ko"));
        let pci = loaded.iter().position(|p| p == "/m/virtio_pci.ko");
        let net = loaded.iter().position(|p| p == "/m/virtio_net.ko");
        assert!(pci.is_some() && pci < net);
    }

    #[test]
    fn lost_events_mean_a_full_rescan() {
        let index = index();
        let mut loader = Loader::new();
        let kmod = RefCell::new(FakeKmod::default());
        let mut devices = FakeDevices::new(&kmod, virtio);
        devices.script.push_back(Seen::Lost);
        let report = run(
            &index,
            &mut loader,
            &mut FakeKmodRef(&kmod),
            &mut devices,
            |_| {},
        );
        assert_eq!(devices.scans, 2);
        assert!(!report.unfinished);
        assert!(kmod.borrow().loaded.iter().any(|p| p == "/m/virtio_net.ko"));
    }

    #[test]
    fn a_time_out_is_unfinished() {
        let index = index();
        let mut loader = Loader::new();
        let kmod = RefCell::new(FakeKmod::default());
        let mut devices = FakeDevices::new(&kmod, virtio);
        devices.script.push_back(Seen::TimedOut);
        let report = run(
            &index,
            &mut loader,
            &mut FakeKmodRef(&kmod),
            &mut devices,
            |_| {},
        );
        assert!(report.unfinished);
        assert_eq!(report.rounds, 1);
        assert!(!kmod.borrow().loaded.iter().any(|p| p == "/m/virtio_net.ko"));
    }

    #[test]
    fn rounds_are_bounded() {
        // A chain of buses: module mN's device appears only once m(N-1) is loaded.
        let mut text = String::from("nullos-module-index v1\nkernel t\n");
        for i in 0..MAX_ROUNDS + 4 {
            text.push_str(&format!(
                "module m{i} /m/m{i}.ko boot=0 depends=-\nalias bus:{i} m{i}\n"
            ));
        }
        let index = ModuleIndex::parse(&text).unwrap();
        let mut loader = Loader::new();
        let kmod = RefCell::new(FakeKmod::default());
        let mut devices = FakeDevices::new(&kmod, |loaded| {
            (0..=loaded.len()).map(|i| format!("bus:{i}")).collect()
        });
        let report = run(
            &index,
            &mut loader,
            &mut FakeKmodRef(&kmod),
            &mut devices,
            |_| {},
        );
        assert_eq!(report.rounds, MAX_ROUNDS);
        assert!(report.unfinished);
        assert_eq!(kmod.borrow().loaded.len(), MAX_ROUNDS);
    }

    /// Lets the fake devices observe the fake kernel while `run` loads into it.
    struct FakeKmodRef<'a>(&'a RefCell<FakeKmod>);

    impl Kmod for FakeKmodRef<'_> {
        fn load(&mut self, path: &str) -> Result<(), crate::modules::LoadError> {
            self.0.borrow_mut().load(path)
        }
    }
}

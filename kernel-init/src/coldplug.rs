//! Driver coldplug: match every device's modalias against the index and load what matches.
//!
//! There is no udev: `init` walks `/sys/devices` for `modalias` files itself. Loading a bus
//! driver creates new devices (virtio_pci creates the virtio devices that need virtio_net), so
//! the scan repeats until a round loads nothing new, at most [`MAX_ROUNDS`] times. The decision
//! of what to load ([`plan`]) and the round loop ([`run`]) are pure given a scanner closure.

use std::fs;
use std::path::{Path, PathBuf};

use modindex::ModuleIndex;

use crate::modules::{Kmod, LoadEvent, Loader};

/// Most scan-and-load rounds.
pub const MAX_ROUNDS: usize = 8;
/// Deepest directory level walked below `/sys/devices` (real trees are ~15 deep).
const MAX_DEPTH: usize = 32;
/// Most directories visited in one walk, so a strange sysfs cannot keep PID 1 busy forever.
const MAX_DIRS: usize = 200_000;

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

/// Summary of a coldplug run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Rounds that ran (a final round that found nothing counts).
    pub rounds: usize,
    /// Every load event, in order.
    pub events: Vec<LoadEvent>,
    /// True if the last round still found new modules (the round bound was hit).
    pub unfinished: bool,
}

/// Loads the boot modules, then scans and loads until nothing new matches.
///
/// `scan` returns the current modaliases; it is called once per round. `on_event` sees every
/// event as it happens (for logging while loading is slow).
pub fn run(
    index: &ModuleIndex,
    loader: &mut Loader,
    kmod: &mut dyn Kmod,
    mut scan: impl FnMut() -> Vec<String>,
    mut on_event: impl FnMut(&LoadEvent),
) -> Report {
    let mut report = Report::default();
    let boot: Vec<String> = index.boot_modules().map(|m| m.name.clone()).collect();
    for name in boot {
        for event in loader.load(index, kmod, &name) {
            on_event(&event);
            report.events.push(event);
        }
    }
    for _ in 0..MAX_ROUNDS {
        report.rounds += 1;
        let wanted = plan(index, &scan(), loader);
        if wanted.is_empty() {
            report.unfinished = false;
            return report;
        }
        report.unfinished = true;
        for name in wanted {
            for event in loader.load(index, kmod, &name) {
                on_event(&event);
                report.events.push(event);
            }
        }
    }
    report
}

/// Every modalias under `root` (normally `/sys/devices`), without following symlinks, trimmed,
/// deduplicated, in walk order.
pub fn scan_modaliases(root: &Path) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            crate::warn!(
                "coldplug: stopped walking {} after {MAX_DIRS} directories",
                root.display()
            );
            break;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut subdirs = Vec::new();
        for entry in entries.flatten() {
            // file_type() does not follow symlinks: sysfs is full of links back up the tree.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < MAX_DEPTH {
                subdirs.push(entry.path());
            } else if kind.is_file() && entry.file_name() == "modalias" {
                if let Ok(text) = fs::read_to_string(entry.path()) {
                    let alias = text.trim();
                    if !alias.is_empty() && !found.iter().any(|f| f == alias) {
                        found.push(alias.to_owned());
                    }
                }
            }
        }
        // Reverse so the walk visits directories in read_dir order.
        stack.extend(subdirs.into_iter().rev().map(|d| (d, depth + 1)));
    }
    found
}

/// The CPU's modalias (`cpu:type:x86,ven…:feature:,…`), which matches CPU-feature modules
/// such as kvm_amd.
pub const CPU_MODALIAS: &str = "/sys/devices/system/cpu/modalias";

/// Splits modaliases into the CPU's (`cpu:…`) and the devices'.
pub fn split_cpu(modaliases: Vec<String>) -> (Vec<String>, Vec<String>) {
    modaliases.into_iter().partition(|a| a.starts_with("cpu:"))
}

/// The real scan: `/sys/devices` (which includes `/sys/devices/system/cpu/modalias`, read
/// explicitly in case the walk was cut short).
pub fn scan_system() -> Vec<String> {
    let mut found = scan_modaliases(Path::new("/sys/devices"));
    if let Ok(cpu) = fs::read_to_string(CPU_MODALIAS) {
        let cpu = cpu.trim();
        if !cpu.is_empty() && !found.iter().any(|f| f == cpu) {
            found.push(cpu.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::modules::tests::{index, FakeKmod};

    #[test]
    fn cpu_modalias_is_split_from_device_modaliases() {
        let cpu = "cpu:type:x86,ven0002fam0019mod0001:feature:,0000,0081,".to_owned();
        let dev = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_owned();
        let (c, d) = split_cpu(vec![dev.clone(), cpu.clone()]);
        assert_eq!(c, [cpu]);
        assert_eq!(d, [dev]);
    }

    #[test]
    fn plan_matches_and_skips_tried_modules() {
        let index = index();
        let mut loader = Loader::new();
        let aliases = vec![
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_owned(),
            "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00".to_owned(),
            "acpi:LNXPWRBN:".to_owned(),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_owned(),
        ];
        assert_eq!(plan(&index, &aliases, &loader), ["virtio_pci", "button"]);
        loader.load(&index, &mut FakeKmod::default(), "button");
        assert_eq!(plan(&index, &aliases, &loader), ["virtio_pci"]);
        assert!(plan(&index, &["platform:i8042".to_owned()], &loader).is_empty());
    }

    #[test]
    fn rounds_repeat_until_new_devices_are_handled() {
        let index = index();
        let mut loader = Loader::new();
        let kmod = RefCell::new(FakeKmod::default());
        // The "kernel": the virtio device only appears once virtio_pci is loaded.
        let scan = || {
            let mut aliases =
                vec!["pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_owned()];
            if kmod.borrow().loaded.iter().any(|p| p == "/m/virtio_pci.ko") {
                aliases.push("virtio:d00000001v00001AF4".to_owned());
            }
            aliases
        };
        let mut logged = Vec::new();
        let mut kmod_for_load = FakeKmodRef(&kmod);
        let report = run(&index, &mut loader, &mut kmod_for_load, scan, |e| {
            logged.push(e.clone())
        });
        assert_eq!(
            report.rounds, 3,
            "load virtio_pci, then virtio_net, then a quiet round"
        );
        assert!(!report.unfinished);
        assert_eq!(logged, report.events);
        let loaded = kmod.borrow().loaded.clone();
        assert_eq!(
            loaded.first().map(String::as_str),
            Some("/m/evdev.ko"),
            "boot modules first"
        );
        assert!(loaded.iter().any(|p| p == "/m/virtio_net.ko"));
        let pci = loaded.iter().position(|p| p == "/m/virtio_pci.ko");
        let net = loaded.iter().position(|p| p == "/m/virtio_net.ko");
        assert!(pci < net);
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
        let scan = || {
            let n = kmod.borrow().loaded.len();
            (0..=n).map(|i| format!("bus:{i}")).collect()
        };
        let report = run(&index, &mut loader, &mut FakeKmodRef(&kmod), scan, |_| {});
        assert_eq!(report.rounds, MAX_ROUNDS);
        assert!(report.unfinished);
        assert_eq!(kmod.borrow().loaded.len(), MAX_ROUNDS);
    }

    #[test]
    fn scans_a_fake_sysfs_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("devices");
        let pci = root.join("pci0000:00/0000:00:03.0");
        fs::create_dir_all(pci.join("virtio0")).unwrap();
        fs::write(pci.join("modalias"), "pci:v00001AF4d00001000\n").unwrap();
        fs::write(pci.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        fs::write(root.join("pci0000:00/modalias"), "\n").unwrap();
        std::os::unix::fs::symlink(&root, pci.join("loop")).unwrap();
        let mut found = scan_modaliases(&root);
        found.sort();
        assert_eq!(
            found,
            ["pci:v00001AF4d00001000", "virtio:d00000001v00001AF4"]
        );
    }

    /// Lets the test's scanner observe the fake kernel while `run` loads into it.
    struct FakeKmodRef<'a>(&'a RefCell<FakeKmod>);

    impl Kmod for FakeKmodRef<'_> {
        fn load(&mut self, path: &str) -> Result<(), crate::modules::LoadError> {
            self.0.borrow_mut().load(path)
        }
    }
}

//! Walking `/sys/devices` for `modalias` files: the first coldplug scan, and the fallback
//! [`Devices`] source when no uevent socket could be opened.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Devices, Seen};

/// Deepest directory level walked below `/sys/devices` (real trees are ~15 deep).
const MAX_DEPTH: usize = 32;
/// Most directories visited in one walk, so a strange sysfs cannot keep PID 1 busy forever.
const MAX_DIRS: usize = 200_000;
/// Pause before re-walking, so devices created by the last round's drivers (asynchronous
/// probes) show up.
const SETTLE: Duration = Duration::from_millis(50);
/// Most re-walks of the fallback source.
const MAX_RESCANS: usize = 8;

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

/// The device modaliases of a full scan (CPU excluded: it has its own thread).
pub fn scan_devices() -> Vec<String> {
    split_cpu(scan_system()).1
}

/// The fallback source: re-walks `/sys` after a settle pause; a walk that finds no modalias
/// it has not reported before ends coldplug.
#[derive(Debug, Default)]
pub struct ScanDevices {
    reported: Vec<String>,
    rescans: usize,
}

impl ScanDevices {
    /// A source that has reported nothing yet.
    pub fn new() -> ScanDevices {
        ScanDevices::default()
    }

    /// Takes over after `reported` were seen (by another source).
    pub fn after(reported: Vec<String>) -> ScanDevices {
        ScanDevices {
            reported,
            rescans: 0,
        }
    }

    /// Notes a full scan's result and returns it.
    fn remember(&mut self, found: Vec<String>) -> Vec<String> {
        for alias in &found {
            if !self.reported.contains(alias) {
                self.reported.push(alias.clone());
            }
        }
        found
    }

    /// The part of a rescan's result not reported yet.
    fn news(&mut self, found: Vec<String>) -> Seen {
        let new: Vec<String> = found
            .into_iter()
            .filter(|a| !self.reported.contains(a))
            .collect();
        if new.is_empty() {
            return Seen::Settled;
        }
        let new = self.remember(new);
        Seen::Added(new)
    }
}

impl Devices for ScanDevices {
    fn scan(&mut self) -> Vec<String> {
        let started = std::time::Instant::now();
        let found = scan_devices();
        crate::debug!(
            "coldplug: {} modaliases in {} ms",
            found.len(),
            started.elapsed().as_millis()
        );
        self.remember(found)
    }

    fn wait(&mut self) -> Seen {
        if self.rescans >= MAX_RESCANS {
            return Seen::TimedOut;
        }
        self.rescans += 1;
        std::thread::sleep(SETTLE);
        let started = std::time::Instant::now();
        let found = scan_devices();
        crate::debug!(
            "coldplug: rescan: {} modaliases in {} ms",
            found.len(),
            started.elapsed().as_millis()
        );
        self.news(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_fallback_reports_only_new_modaliases_then_settles() {
        let mut source = ScanDevices::after(vec!["pci:a".to_owned()]);
        assert_eq!(
            source.news(vec!["pci:a".to_owned(), "virtio:b".to_owned()]),
            Seen::Added(vec!["virtio:b".to_owned()])
        );
        assert_eq!(
            source.news(vec!["pci:a".to_owned(), "virtio:b".to_owned()]),
            Seen::Settled
        );
    }
}

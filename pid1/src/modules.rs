//! Loading kernel modules in dependency order with `finit_module(2)`.
//!
//! The [`Loader`] remembers what it tried, so a module is loaded at most once per boot, and a
//! module whose dependency failed is skipped rather than tried (it would only fail with
//! "unknown symbol"). The syscall sits behind the [`Kmod`] trait so the ordering and
//! bookkeeping are unit-tested without loading anything. A failed module is never fatal.

use std::collections::BTreeMap;
use std::fs::File;

use modindex::ModuleIndex;
use nix::errno::Errno;
use nix::kmod::ModuleInitFlags;

// Where the image builder puts the index.
pub use interfaces::paths::MODULE_INDEX as INDEX_PATH;

/// Why one module did not load.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The `.ko` file could not be opened.
    #[error("open {path}: {errno}")]
    Open {
        /// Path of the module file.
        path: String,
        /// errno of open(2).
        errno: Errno,
    },
    /// finit_module(2) refused it.
    #[error("finit_module: {0}")]
    Finit(Errno),
    /// A module it depends on did not load.
    #[error("dependency {0} did not load")]
    Dependency(String),
    /// The index cannot order it (unknown name, missing dependency, cycle).
    #[error("index: {0}")]
    Index(String),
}

/// Loads one module file into the kernel.
pub trait Kmod {
    /// Loads the module at `path`; `Err(EEXIST)` means it is loaded already.
    fn load(&mut self, path: &str) -> Result<(), LoadError>;
}

/// The real thing: open + finit_module(2).
#[derive(Debug, Default)]
pub struct SysKmod;

impl Kmod for SysKmod {
    fn load(&mut self, path: &str) -> Result<(), LoadError> {
        let file = File::open(path).map_err(|e| LoadError::Open {
            path: path.to_owned(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
        let started = std::time::Instant::now();
        let finit = || nix::kmod::finit_module(&file, c"", ModuleInitFlags::empty());
        let result = finit_rechecking_rejection(path, finit, |line| crate::warn!("{line}"));
        crate::debug!("finit_module {path}: {} ms", started.elapsed().as_millis());
        result.map_err(LoadError::Finit)
    }
}

/// Runs `finit` (one `finit_module` of the module at `path`) and, if the kernel rejected the
/// module's signature (`EKEYREJECTED`), once more; `warn` gets a line for the rejection and one
/// for the outcome of the second check.
///
/// Why a second check: under nested virtualization on emulated SVM (the QEMU system tests), a
/// module that verifies on every other boot has been rejected once in some thirty guest boots.
/// The kernel checks the signature over the same bytes of the same open file again, so a module
/// whose signature is really wrong is rejected again (and then fails like any other module); a
/// second check cannot make a bad signature pass. A rejection is an integrity event either way,
/// so both checks are on the console as warnings (docs/CONSOLE.md), never silent.
pub fn finit_rechecking_rejection(
    path: &str,
    mut finit: impl FnMut() -> Result<(), Errno>,
    mut warn: impl FnMut(String),
) -> Result<(), Errno> {
    let first = finit();
    if first != Err(Errno::EKEYREJECTED) {
        return first;
    }
    warn(format!(
        "finit_module {path}: signature rejected (EKEYREJECTED); checking once more"
    ));
    let second = finit();
    match second {
        Ok(()) => warn(format!(
            "finit_module {path}: signature accepted on the second check"
        )),
        Err(Errno::EEXIST) => warn(format!(
            "finit_module {path}: loaded meanwhile (EEXIST) on the second check"
        )),
        Err(e) => warn(format!(
            "finit_module {path}: second check failed too ({e}); not loaded"
        )),
    }
    second
}

/// What became of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// `init` loaded it.
    Loaded,
    /// The kernel had it already (`EEXIST`).
    AlreadyLoaded,
    /// It did not load.
    Failed(LoadError),
}

/// One event worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEvent {
    /// A module was loaded (or found loaded).
    Loaded {
        /// Module name.
        name: String,
        /// True if it was there already.
        already: bool,
    },
    /// A module failed.
    Failed {
        /// Module name.
        name: String,
        /// Why.
        error: LoadError,
    },
}

/// Loads modules with their dependencies, each at most once.
#[derive(Debug, Default)]
pub struct Loader {
    states: BTreeMap<String, ModuleState>,
}

impl Loader {
    /// A loader that has tried nothing yet.
    pub fn new() -> Loader {
        Loader::default()
    }

    /// Whether `name` was tried already (whatever the outcome).
    pub fn tried(&self, name: &str) -> bool {
        self.states.contains_key(name)
    }

    /// The outcome for `name`, if tried.
    pub fn state(&self, name: &str) -> Option<&ModuleState> {
        self.states.get(name)
    }

    /// Names of the modules `init` loaded itself, in name order.
    pub fn loaded(&self) -> impl Iterator<Item = &str> {
        self.states
            .iter()
            .filter(|(_, s)| **s == ModuleState::Loaded)
            .map(|(n, _)| n.as_str())
    }

    /// Loads `name` and its dependencies (dependencies first). Returns one event per module
    /// tried in this call; modules tried before are not tried again.
    pub fn load(&mut self, index: &ModuleIndex, kmod: &mut dyn Kmod, name: &str) -> Vec<LoadEvent> {
        let mut events = Vec::new();
        let order = match index.load_order(name) {
            Ok(order) => order,
            Err(e) => {
                let name = modindex::normalize_name(name);
                if !self.tried(&name) {
                    let error = LoadError::Index(e.to_string());
                    self.states
                        .insert(name.clone(), ModuleState::Failed(error.clone()));
                    events.push(LoadEvent::Failed { name, error });
                }
                return events;
            }
        };
        for entry in order {
            if self.tried(&entry.name) {
                continue;
            }
            let failed_dep = entry
                .depends
                .iter()
                .find(|d| matches!(self.states.get(d.as_str()), Some(ModuleState::Failed(_))));
            let result = match failed_dep {
                Some(dep) => Err(LoadError::Dependency(dep.clone())),
                None => kmod.load(&entry.path),
            };
            let (state, event) = match result {
                Ok(()) => (
                    ModuleState::Loaded,
                    LoadEvent::Loaded {
                        name: entry.name.clone(),
                        already: false,
                    },
                ),
                Err(LoadError::Finit(Errno::EEXIST)) => (
                    ModuleState::AlreadyLoaded,
                    LoadEvent::Loaded {
                        name: entry.name.clone(),
                        already: true,
                    },
                ),
                Err(error) => (
                    ModuleState::Failed(error.clone()),
                    LoadEvent::Failed {
                        name: entry.name.clone(),
                        error,
                    },
                ),
            };
            self.states.insert(entry.name.clone(), state);
            events.push(event);
        }
        events
    }
}

/// Reads and parses the image's module index ([`INDEX_PATH`]). A missing or broken index is
/// logged and means no module is loaded; a mismatch with the running kernel is a warning.
pub fn read_index() -> Option<ModuleIndex> {
    let text = match std::fs::read_to_string(INDEX_PATH) {
        Ok(text) => text,
        Err(e) => {
            crate::warn!("modules: no index at {INDEX_PATH}: {e}; loading none");
            return None;
        }
    };
    let index = match ModuleIndex::parse(&text) {
        Ok(index) => index,
        Err(e) => {
            crate::error!("modules: {INDEX_PATH}: {}", crate::error_chain(&e));
            return None;
        }
    };
    if let Ok(uname) = nix::sys::utsname::uname() {
        let running = uname.release().to_string_lossy();
        if running != index.kernel_release.as_str() {
            crate::warn!(
                "modules: index is for kernel {}, running {running}",
                index.kernel_release
            );
        }
    }
    Some(index)
}

/// Logs one load event in the contract's words.
pub fn log_event(event: &LoadEvent) {
    match event {
        LoadEvent::Loaded {
            name,
            already: false,
        } => crate::info!("module loaded: {name}"),
        LoadEvent::Loaded {
            name,
            already: true,
        } => crate::debug!("module already loaded: {name}"),
        LoadEvent::Failed { name, error } => {
            crate::warn!("module {name} failed: {}", crate::error_chain(error))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake kernel: records load order, fails the paths it is told to.
    #[derive(Debug, Default)]
    pub(crate) struct FakeKmod {
        pub loaded: Vec<String>,
        pub fail: BTreeMap<String, Errno>,
    }

    impl Kmod for FakeKmod {
        fn load(&mut self, path: &str) -> Result<(), LoadError> {
            if let Some(errno) = self.fail.get(path) {
                return Err(LoadError::Finit(*errno));
            }
            self.loaded.push(path.to_owned());
            Ok(())
        }
    }

    /// `finit_rechecking_rejection` with `results` as the kernel's answers, in order; returns
    /// its result, the number of checks and the warnings.
    fn recheck(results: &[Result<(), Errno>]) -> (Result<(), Errno>, usize, Vec<String>) {
        let mut calls = 0;
        let mut warnings = Vec::new();
        let result = finit_rechecking_rejection(
            "/m/virtio.ko",
            || {
                calls += 1;
                results[calls - 1]
            },
            |line| warnings.push(line),
        );
        (result, calls, warnings)
    }

    #[test]
    fn a_rejected_signature_is_checked_once_more_and_both_checks_are_warned() {
        let rejected =
            "finit_module /m/virtio.ko: signature rejected (EKEYREJECTED); checking once more";
        // Accepted on the second check: loaded, and both lines on the console.
        let (result, calls, warnings) = recheck(&[Err(Errno::EKEYREJECTED), Ok(())]);
        assert_eq!((result, calls), (Ok(()), 2));
        assert_eq!(
            warnings,
            [
                rejected,
                "finit_module /m/virtio.ko: signature accepted on the second check"
            ]
        );
        // Rejected twice: the module fails with EKEYREJECTED, never a third check.
        let (result, calls, warnings) =
            recheck(&[Err(Errno::EKEYREJECTED), Err(Errno::EKEYREJECTED)]);
        assert_eq!((result, calls), (Err(Errno::EKEYREJECTED), 2));
        assert_eq!(
            warnings,
            [
                rejected,
                "finit_module /m/virtio.ko: second check failed too (EKEYREJECTED: Key was rejected by service); not loaded"
            ]
        );
    }

    #[test]
    fn other_outcomes_are_checked_once_and_silently() {
        for answer in [
            Ok(()),
            Err(Errno::EEXIST),
            Err(Errno::ENOEXEC),
            Err(Errno::EPERM),
        ] {
            let (result, calls, warnings) = recheck(&[answer]);
            assert_eq!((result, calls), (answer, 1));
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }

    pub(crate) fn index() -> ModuleIndex {
        ModuleIndex::parse(
            "nullos-module-index v1\n\
             kernel 6.1.0-test\n\
             module button /m/button.ko boot=0 depends=-\n\
             module evdev /m/evdev.ko boot=1 depends=-\n\
             module failover /m/failover.ko boot=0 depends=-\n\
             module net_failover /m/net_failover.ko boot=0 depends=failover\n\
             module virtio /m/virtio.ko boot=0 depends=-\n\
             module virtio_net /m/virtio_net.ko boot=0 depends=net_failover,virtio,virtio_ring\n\
             module virtio_pci /m/virtio_pci.ko boot=0 depends=virtio,virtio_ring\n\
             module virtio_ring /m/virtio_ring.ko boot=0 depends=-\n\
             alias acpi*:LNXPWRBN:* button\n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
             alias virtio:d00000001v* virtio_net\n",
        )
        .unwrap()
    }

    #[test]
    fn loads_dependencies_first_and_each_once() {
        let index = index();
        let mut kmod = FakeKmod::default();
        let mut loader = Loader::new();
        let events = loader.load(&index, &mut kmod, "virtio_net");
        assert_eq!(
            kmod.loaded,
            [
                "/m/failover.ko",
                "/m/net_failover.ko",
                "/m/virtio.ko",
                "/m/virtio_ring.ko",
                "/m/virtio_net.ko"
            ]
        );
        assert_eq!(events.len(), 5);
        let events = loader.load(&index, &mut kmod, "virtio_pci");
        assert_eq!(
            kmod.loaded.last().map(String::as_str),
            Some("/m/virtio_pci.ko")
        );
        assert_eq!(events.len(), 1, "shared dependencies are not loaded twice");
        assert_eq!(loader.loaded().count(), 6);
    }

    #[test]
    fn eexist_is_already_loaded_and_failures_skip_dependents() {
        let index = index();
        let mut kmod = FakeKmod::default();
        kmod.fail.insert("/m/virtio.ko".into(), Errno::EEXIST);
        kmod.fail.insert("/m/failover.ko".into(), Errno::ENOEXEC);
        let mut loader = Loader::new();
        let events = loader.load(&index, &mut kmod, "virtio_net");
        assert_eq!(loader.state("virtio"), Some(&ModuleState::AlreadyLoaded));
        assert_eq!(
            loader.state("failover"),
            Some(&ModuleState::Failed(LoadError::Finit(Errno::ENOEXEC)))
        );
        assert_eq!(
            loader.state("net_failover"),
            Some(&ModuleState::Failed(LoadError::Dependency(
                "failover".into()
            )))
        );
        assert!(matches!(
            loader.state("virtio_net"),
            Some(ModuleState::Failed(_))
        ));
        assert_eq!(kmod.loaded, ["/m/virtio_ring.ko"]);
        assert!(events.contains(&LoadEvent::Loaded {
            name: "virtio".into(),
            already: true
        }));
    }

    #[test]
    fn unknown_module_is_a_failure_event_once() {
        let index = index();
        let mut loader = Loader::new();
        let mut kmod = FakeKmod::default();
        let events = loader.load(&index, &mut kmod, "no-such");
        assert!(
            matches!(&events[..], [LoadEvent::Failed { name, error: LoadError::Index(_) }] if name == "no_such")
        );
        assert!(loader.load(&index, &mut kmod, "no_such").is_empty());
    }
}

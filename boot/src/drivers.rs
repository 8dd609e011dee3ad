//! Storage drivers for the release medium, loaded the way the node's `init` loads its own: the
//! module index in the initramfs, coldplug by modalias (the `pid1` library).
//!
//! USB devices appear a while after their host controller's driver loads (enumeration, and
//! usb-storage's settle delay), possibly after the first coldplug has settled; so stage 0 runs
//! a coldplug round again each time it looks for the medium and does not find it.

use std::time::Instant;

use modindex::ModuleIndex;
use pid1::coldplug;
use pid1::modules::{self, Loader};

/// The module index and what has been loaded so far.
#[derive(Debug)]
pub struct Drivers {
    index: Option<ModuleIndex>,
    loader: Loader,
    rounds: usize,
}

impl Drivers {
    /// Reads the module index (without it, no module is loaded; the medium may still be found
    /// if its drivers are built in).
    pub fn open() -> Drivers {
        let index = modules::read_index();
        Drivers {
            index,
            loader: Loader::new(),
            rounds: 0,
        }
    }

    /// Loads the module `name` and its dependencies (a filesystem, which no device asks for).
    /// What failed is logged; a module not in the index may be built into the kernel.
    pub fn load(&mut self, name: &str) {
        let Some(index) = &self.index else { return };
        for event in self.loader.load(index, &mut modules::SysKmod, name) {
            modules::log_event(&event);
        }
    }

    /// Loads what the devices present now need, and what the devices they add need. The
    /// first run listens for uevents; later ones re-walk `/sys`.
    pub fn coldplug(&mut self) {
        let Some(index) = &self.index else { return };
        let start = Instant::now();
        let before = self.loader.loaded().count();
        let first = self.rounds == 0;
        self.rounds += 1;
        coldplug::run_system(index, &mut self.loader, first);
        let loaded = self.loader.loaded().count() - before;
        if first || loaded > 0 {
            pid1::info!(
                "coldplug: {loaded} modules loaded ({} ms)",
                start.elapsed().as_millis()
            );
        }
    }
}

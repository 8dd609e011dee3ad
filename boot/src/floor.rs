//! The version floor: the lowest release version stage 0 boots, the highest of what every
//! place on this machine recorded (the stick's `nullos-state`, the data disk's) and, applied by
//! [`crate::verify::verify`], the boot image's baked minimum. Every place that is there must be
//! readable: one that is present but unreadable refuses the boot (failing closed), it is never
//! read as "no floor". After a release is accepted, every place below it is raised; none is
//! ever lowered.

use std::path::{Path, PathBuf};

use crate::verify::{Refusal, Source};
use crate::{data_disk, medium, state};

/// The artifact named in the refusal line of a data disk that cannot be read.
pub const DATA_DISK_ARTIFACT: &str = "data-disk";

/// A place where this machine keeps its version floor.
pub trait FloorStore {
    /// `stick /dev/sda2`, `data disk /dev/nvme0n1`.
    fn name(&self) -> String;
    /// The floor it records (0 without a state file).
    fn read(&mut self) -> Result<u64, Refusal>;
    /// Raises it to `accepted` if that is higher; the new floor if it was written.
    fn raise(&mut self, accepted: u64) -> Result<Option<u64>, String>;
}

/// The release partition's state file, read from the in-memory copy, written through the
/// device.
#[derive(Debug)]
pub struct Stick {
    device: PathBuf,
    highest: u64,
    /// The data disk pinned in the stick's state file.
    data_disk: Option<interfaces::data_disk::FsUuid>,
    /// A data disk to pin with the next write ([`Stick::pin`]).
    pin: Option<interfaces::data_disk::FsUuid>,
}

impl Stick {
    /// The stick's floor as its partition (`medium`, read from `device`) records it.
    pub fn read(device: &Path, medium: &mut medium::Medium) -> Result<Stick, Refusal> {
        let state = Stick::state(medium)?;
        Ok(Stick {
            device: device.to_owned(),
            highest: state.highest,
            data_disk: state.data_disk,
            pin: None,
        })
    }

    /// The stick's state file as its partition (`medium`) holds it (floor 0 and no pinned
    /// data disk without one).
    pub fn state(medium: &mut medium::Medium) -> Result<state::StickState, Refusal> {
        if !medium.exists(state::STATE_FILE) {
            return Ok(state::StickState {
                highest: 0,
                data_disk: None,
            });
        }
        let bytes = medium
            .read(state::STATE_FILE, state::MAX_STATE_BYTES)
            .map_err(|e| Refusal::new(state::STATE_FILE, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Refusal::new(state::STATE_FILE, "not UTF-8 text"))?;
        state::parse_stick(&text).map_err(|e| Refusal::new(state::STATE_FILE, e))
    }

    /// Pins `data_disk` in the stick's state with the next [`FloorStore::raise`] (the same
    /// write as the floor), unless the stick pins one already.
    pub fn pin(&mut self, data_disk: interfaces::data_disk::FsUuid) {
        if self.data_disk.is_none() {
            self.pin = Some(data_disk);
        }
    }
}

impl FloorStore for Stick {
    fn name(&self) -> String {
        format!("stick {}", self.device.display())
    }

    fn read(&mut self) -> Result<u64, Refusal> {
        Ok(self.highest)
    }

    fn raise(&mut self, accepted: u64) -> Result<Option<u64>, String> {
        let raised = state::raised(self.highest, accepted);
        if raised.is_none() && self.pin.is_none() {
            return Ok(None);
        }
        let next = state::StickState {
            highest: raised.unwrap_or(self.highest),
            data_disk: self.data_disk.or(self.pin),
        };
        medium::write_file(
            &self.device,
            state::STATE_FILE,
            state::format_stick(&next).as_bytes(),
        )
        .map_err(|e| pid1::error_chain(&e))?;
        if let Some(uuid) = self.pin.take() {
            pid1::log::interface_line(&format!(
                "nullos: data disk pinned uuid={uuid} on the {}",
                self.name()
            ));
        }
        self.highest = next.highest;
        self.data_disk = next.data_disk;
        Ok(raised)
    }
}

/// The state file at the root of a mounted filesystem (the data disk's, once mounted).
#[derive(Debug)]
pub struct Folder {
    /// What the folder is, in messages.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
}

impl FloorStore for Folder {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn read(&mut self) -> Result<u64, Refusal> {
        state::read_in(&self.dir).map_err(|e| {
            Refusal::new(
                state::STATE_FILE,
                format!("{}: {}", self.name, pid1::error_chain(&e)),
            )
        })
    }

    fn raise(&mut self, accepted: u64) -> Result<Option<u64>, String> {
        state::raise_in(&self.dir, accepted).map_err(|e| pid1::error_chain(&e))
    }
}

/// A data disk, mounted for each read and raise.
#[derive(Debug)]
pub struct DataDisk {
    /// Its device node.
    pub device: PathBuf,
}

impl DataDisk {
    fn folder(&self, dir: &Path) -> Folder {
        Folder {
            name: self.name(),
            dir: dir.to_owned(),
        }
    }
}

impl FloorStore for DataDisk {
    fn name(&self) -> String {
        format!("data disk {}", self.device.display())
    }

    fn read(&mut self) -> Result<u64, Refusal> {
        data_disk::with_mounted(&self.device, |dir| self.folder(dir).read())
            .map_err(|e| Refusal::new(DATA_DISK_ARTIFACT, pid1::error_chain(&e)))?
    }

    fn raise(&mut self, accepted: u64) -> Result<Option<u64>, String> {
        data_disk::with_mounted(&self.device, |dir| self.folder(dir).raise(accepted))
            .map_err(|e| pid1::error_chain(&e))?
    }
}

/// Every place's floor, read once per attempt.
pub struct Floors {
    min_version: u64,
    places: Vec<(Box<dyn FloorStore>, u64)>,
}

impl std::fmt::Debug for Floors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl Floors {
    /// Reads every place; the first that cannot be read is the refusal.
    pub fn read(min_version: u64, stores: Vec<Box<dyn FloorStore>>) -> Result<Floors, Refusal> {
        let mut places = Vec::with_capacity(stores.len());
        for mut store in stores {
            let highest = store.read()?;
            places.push((store, highest));
        }
        Ok(Floors {
            min_version,
            places,
        })
    }

    /// Adds a place read later (the stick, found after the data disks).
    pub fn add(&mut self, mut store: Box<dyn FloorStore>) -> Result<(), Refusal> {
        let highest = store.read()?;
        self.places.push((store, highest));
        Ok(())
    }

    /// The highest version any place recorded (0 without any).
    pub fn highest(&self) -> u64 {
        self.places.iter().map(|(_, v)| *v).max().unwrap_or(0)
    }

    /// `version floor 3 (boot image minimum 1, data disk /dev/vdb 3, stick /dev/sda2 2)`.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("boot image minimum {}", self.min_version)];
        parts.extend(self.places.iter().map(|(s, v)| format!("{} {v}", s.name())));
        format!(
            "version floor {} ({})",
            self.highest().max(self.min_version),
            parts.join(", ")
        )
    }

    /// Raises every place below `accepted`; one log message per place written or failed.
    pub fn raise(&mut self, accepted: u64) -> Vec<Result<String, String>> {
        let mut messages = Vec::new();
        for (store, highest) in &mut self.places {
            match store.raise(accepted) {
                Ok(Some(raised)) => {
                    *highest = raised;
                    messages.push(Ok(format!(
                        "highest accepted version is now {raised} on the {}",
                        store.name()
                    )));
                }
                Ok(None) => {}
                Err(e) => messages.push(Err(format!(
                    "cannot record version {accepted} on the {}: {e}",
                    store.name()
                ))),
            }
        }
        if self.places.is_empty() {
            messages.push(Err(format!(
                "no stick and no data disk: the version floor ({accepted}) is not persisted"
            )));
        }
        messages
    }
}

#[cfg(test)]
mod tests;

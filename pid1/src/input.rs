//! The power button: evdev devices that can report `KEY_POWER`.
//!
//! The ACPI `button` driver turns the power button (QEMU's `system_powerdown`, a real
//! machine's button) into a `KEY_POWER` key press on an input device, which `evdev` exposes as
//! `/dev/input/eventN`. Devices appear as drivers load, so [`PowerButtons::rescan`] is called
//! after coldplug and periodically. Event decoding is pure ([`power_pressed`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `EV_KEY` event type.
const EV_KEY: u16 = 0x01;
/// `KEY_POWER` key code.
pub const KEY_POWER: u16 = 116;
/// Size of `struct input_event` on x86_64: timeval (16) + type (2) + code (2) + value (4).
pub const EVENT_SIZE: usize = 24;
/// Bytes in the `EV_KEY` capability bitmap (`KEY_MAX` is 0x2ff).
const KEY_BITMAP_BYTES: usize = 0x300 / 8;

// EVIOCGBIT(EV_KEY, len): which key codes the device can report.
nix::ioctl_read_buf!(eviocgbit_key, b'E', 0x20 + EV_KEY, u8);

/// Whether a buffer of `input_event`s holds a `KEY_POWER` press (value 1; 0 is release,
/// 2 autorepeat). A trailing partial event is ignored.
pub fn power_pressed(bytes: &[u8]) -> bool {
    bytes.chunks_exact(EVENT_SIZE).any(|event| {
        let kind = u16::from_ne_bytes([event[16], event[17]]);
        let code = u16::from_ne_bytes([event[18], event[19]]);
        let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
        kind == EV_KEY && code == KEY_POWER && value == 1
    })
}

/// Whether a key capability bitmap has the `KEY_POWER` bit.
pub fn bitmap_has_power(bitmap: &[u8]) -> bool {
    bitmap
        .get(usize::from(KEY_POWER / 8))
        .is_some_and(|byte| byte & (1 << (KEY_POWER % 8)) != 0)
}

/// The open event devices that can report `KEY_POWER`.
#[derive(Debug, Default)]
pub struct PowerButtons {
    devices: BTreeMap<PathBuf, File>,
    /// Devices looked at and found without a power key, so they are not reopened each scan.
    other: Vec<PathBuf>,
}

impl PowerButtons {
    /// No devices yet.
    pub fn new() -> PowerButtons {
        PowerButtons::default()
    }

    /// Opens event devices under `/dev/input` not seen before.
    pub fn rescan(&mut self) {
        self.rescan_in(Path::new("/dev/input"));
    }

    fn rescan_in(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_event = entry.file_name().to_string_lossy().starts_with("event");
            if !is_event || self.devices.contains_key(&path) || self.other.contains(&path) {
                continue;
            }
            let file = match OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) => {
                    crate::debug!("input: open {}: {e}", path.display());
                    continue;
                }
            };
            if can_report_power(&file) {
                crate::info!("input: watching {} for the power button", path.display());
                self.devices.insert(path, file);
            } else {
                self.other.push(path);
            }
        }
    }

    /// The fds to poll, with their device paths.
    pub fn fds(&self) -> Vec<(PathBuf, BorrowedFd<'_>)> {
        self.devices
            .iter()
            .map(|(p, f)| (p.clone(), f.as_fd()))
            .collect()
    }

    /// Reads what a device has; true if the power button was pressed. A device that is gone
    /// (unplugged: ENODEV) is dropped.
    pub fn read(&mut self, path: &Path) -> bool {
        let Some(file) = self.devices.get_mut(path) else {
            return false;
        };
        let mut buffer = [0u8; EVENT_SIZE * 64];
        let mut pressed = false;
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => pressed |= power_pressed(buffer.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    crate::debug!("input: {} gone: {e}", path.display());
                    self.devices.remove(path);
                    break;
                }
            }
        }
        pressed
    }
}

/// Asks the device for its key bitmap; a device that will not say is kept (better to watch a
/// keyboard than to miss the button).
fn can_report_power(file: &File) -> bool {
    let mut bitmap = [0u8; KEY_BITMAP_BYTES];
    // SAFETY: EVIOCGBIT writes at most `bitmap.len()` bytes (the length is encoded in the request
    // by the macro from the slice) into the buffer we own, on an fd that stays open for the call.
    match unsafe { eviocgbit_key(file.as_raw_fd(), &mut bitmap) } {
        Ok(_) => bitmap_has_power(&bitmap),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&kind.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn power_press_is_found_among_events() {
        let mut bytes = event(EV_KEY, 30, 1); // KEY_A
        bytes.extend(event(0, 0, 0)); // SYN_REPORT
        assert!(!power_pressed(&bytes));
        bytes.extend(event(EV_KEY, KEY_POWER, 1));
        assert!(power_pressed(&bytes));
    }

    #[test]
    fn release_repeat_and_partial_events_do_not_count() {
        assert!(!power_pressed(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!power_pressed(&event(EV_KEY, KEY_POWER, 2)));
        assert!(
            !power_pressed(&event(0x04, KEY_POWER, 1)),
            "EV_MSC is not a key"
        );
        let press = event(EV_KEY, KEY_POWER, 1);
        assert!(!power_pressed(&press[..EVENT_SIZE - 1]));
    }

    #[test]
    fn capability_bitmap() {
        let mut bitmap = [0u8; KEY_BITMAP_BYTES];
        assert!(!bitmap_has_power(&bitmap));
        bitmap[14] = 1 << 4; // 116 = 14 * 8 + 4
        assert!(bitmap_has_power(&bitmap));
        assert!(!bitmap_has_power(&[]));
    }
}

//! The vmm's port I/O devices as a guest's `in`/`out` instructions reach them: the 8250 UART on
//! COM1, the i8042 (reset), the ACPI sleep control (power-off), pvpanic and the exit-code
//! register, on a bus laid out as `vmm::builder` lays it out. Any sequence of accesses of any
//! width never panics; unmapped ports stay unmapped.
//!
//! Input: 5-byte records `kind, port selector, offset, value (u16 LE)`. `kind & 1`: 0 read, 1
//! write; `(kind >> 1) & 3` picks the width from [1, 2, 4, 1]; the port is the selector's device
//! base (modulo 6; the sixth is an unmapped port) plus `offset % 8`. An access is mapped when it
//! lies wholly inside one device's range.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use vm_superio::Trigger;
use vmm::devices::bus::{Bus, WriteOutcome};
use vmm::devices::power::{
    ExitCodeRegister, PvPanic, SleepControl, EXIT_CODE_PORT, I8042, I8042_BASE, I8042_LEN,
    PVPANIC_PORT, SLEEP_CONTROL_PORT,
};
use vmm::devices::serial::{SerialDevice, COM1_BASE, COM1_LEN};

/// The UART's interrupt, with no KVM behind it.
struct NoIrq;

impl Trigger for NoIrq {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The console, bounded so a long input cannot grow it without end.
struct Console(usize);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const WIDTHS: [usize; 4] = [1, 2, 4, 1];
const UNMAPPED: u64 = 0x80;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let mut pio = Bus::new();
    let serial = SerialDevice::new(NoIrq, Box::new(Console(0)));
    let devices: [(u64, u64, vmm::devices::bus::SharedDevice); 5] = [
        (COM1_BASE, COM1_LEN, Arc::new(Mutex::new(serial))),
        (I8042_BASE, I8042_LEN, Arc::new(Mutex::new(I8042))),
        (SLEEP_CONTROL_PORT, 1, Arc::new(Mutex::new(SleepControl))),
        (u64::from(PVPANIC_PORT), 1, Arc::new(Mutex::new(PvPanic))),
        (
            EXIT_CODE_PORT,
            1,
            Arc::new(Mutex::new(ExitCodeRegister::new())),
        ),
    ];
    let mut bases = [UNMAPPED; 6];
    let mut ranges = [(0, 0); 5];
    for (i, (base, len, device)) in devices.into_iter().enumerate() {
        if pio.insert(base, len, device).is_err() {
            panic!("the vmm's port layout overlaps");
        }
        bases[i] = base;
        ranges[i] = (base, base + len);
    }
    for rec in data.chunks_exact(5) {
        let port = bases[usize::from(rec[1]) % 6] + u64::from(rec[2] % 8);
        let width = WIDTHS[usize::from((rec[0] >> 1) & 3)];
        let value = u16::from_le_bytes([rec[3], rec[4]]);
        let bytes: Vec<u8> = value
            .to_le_bytes()
            .into_iter()
            .cycle()
            .take(width)
            .collect();
        // Mapped: the whole access falls inside one device's range.
        let end = port + width as u64;
        let unmapped = !ranges.iter().any(|&(b, e)| b <= port && end <= e);
        if rec[0] & 1 == 0 {
            let mut buf = vec![0u8; width];
            assert_eq!(pio.read(port, &mut buf), !unmapped, "read at {port:#x}");
        } else {
            let outcome = pio.write(port, &bytes);
            assert_eq!(
                outcome == WriteOutcome::Unmapped,
                unmapped,
                "write at {port:#x}"
            );
        }
    }
}

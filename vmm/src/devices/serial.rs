//! The guest console: vm-superio's 8250 UART on COM1 (port 0x3f8, IRQ 4), output to a writer.
//!
//! The UART itself is vm-superio's pure state machine; this adapts it to the bus and raises its
//! interrupt through an `EventFd` registered as a KVM irqfd.
//!
//! Output is line-buffered ([`ConsoleOutput`]): the UART hands over and flushes one byte per guest
//! `out`, which unbuffered would be one `write(2)` per byte, and one wake-up per byte of whoever
//! reads the console (the node's supervisor). A line goes out at its newline; a partial line when
//! 4 KiB are pending or when the VMM pushes it (every watchdog tick, and at teardown).

use std::io::Write;

use vm_superio::{serial::NoEvents, Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::BusDevice;
use crate::exit::GuestExit;

/// COM1 base port.
pub const COM1_BASE: u64 = 0x3f8;
/// Registers of a 16550/8250.
pub const COM1_LEN: u64 = 8;
/// COM1's legacy interrupt line.
pub const COM1_IRQ: u32 = 4;

/// Raises the UART interrupt by writing to an eventfd (a KVM irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The serial port device on the PIO bus.
pub struct SerialDevice<T: Trigger> {
    uart: Serial<T, NoEvents, ConsoleOutput>,
}

/// Pending bytes after which a partial line is written out anyway.
pub const CONSOLE_BUFFER: usize = 4096;

/// The console's line buffer in front of the output file or pipe.
pub struct ConsoleOutput {
    out: Box<dyn Write + Send>,
    pending: Vec<u8>,
}

impl std::fmt::Debug for ConsoleOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleOutput")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl ConsoleOutput {
    /// Buffers in front of `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            pending: Vec::with_capacity(CONSOLE_BUFFER),
        }
    }

    /// Writes out whatever is pending, complete line or not, and flushes `out`.
    pub fn push(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.out.write_all(&self.pending);
        // Written or not, the bytes are not kept: a console that cannot be written must not
        // grow without bound.
        self.pending.clear();
        result.and_then(|()| self.out.flush())
    }
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if buf.contains(&b'\n') || self.pending.len() >= CONSOLE_BUFFER {
            self.push()?;
        }
        Ok(buf.len())
    }

    /// Does nothing: the UART flushes after every byte, which would undo the buffering. Complete
    /// lines are written by `write`; [`ConsoleOutput::push`] writes the rest.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<T: Trigger> std::fmt::Debug for SerialDevice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice").finish_non_exhaustive()
    }
}

impl<T: Trigger> SerialDevice<T> {
    /// A UART that writes the guest's output to `out` and interrupts through `trigger`.
    pub fn new(trigger: T, out: Box<dyn Write + Send>) -> Self {
        Self {
            uart: Serial::new(trigger, ConsoleOutput::new(out)),
        }
    }

    /// Writes out the pending partial line, if any.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.uart.writer_mut().push()
    }
}

impl<T: Trigger + Send> BusDevice for SerialDevice<T> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (u8::try_from(offset), data.len()) {
            (Ok(reg), 1) => data[0] = self.uart.read(reg),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<GuestExit> {
        if let (Ok(reg), [byte]) = (u8::try_from(offset), data) {
            if let Err(e) = self.uart.write(reg, *byte) {
                log::warn!("serial: {e:?}");
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl Trigger for Count {
        type E = ();
        fn trigger(&self) -> Result<(), ()> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_thr_reach_the_output_and_lsr_says_ready() {
        let out = Shared::default();
        let mut dev = SerialDevice::new(Count::default(), Box::new(out.clone()));
        for b in b"hello" {
            assert_eq!(dev.write(0, &[*b]), None);
        }
        assert!(out.0.lock().unwrap().is_empty(), "a partial line waits");
        dev.write(0, b"\n");
        assert_eq!(
            out.0.lock().unwrap().as_slice(),
            b"hello\n",
            "a line goes out whole"
        );
        dev.write(0, b"!");
        dev.flush().unwrap();
        assert_eq!(
            out.0.lock().unwrap().as_slice(),
            b"hello\n!",
            "and the rest when pushed"
        );
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60, "THR empty and transmitter idle");
    }

    #[test]
    fn a_long_line_goes_out_in_buffer_sized_pieces() {
        let out = Shared::default();
        let mut dev = SerialDevice::new(Count::default(), Box::new(out.clone()));
        for _ in 0..CONSOLE_BUFFER + 10 {
            dev.write(0, b"x");
        }
        assert_eq!(out.0.lock().unwrap().len(), CONSOLE_BUFFER);
    }

    #[test]
    fn tx_interrupt_fires_when_enabled() {
        let mut dev = SerialDevice::new(Count::default(), Box::new(Shared::default()));
        dev.write(1, &[0x02]); // IER: THR empty interrupt
        dev.write(0, b"x");
        assert!(
            dev.uart
                .interrupt_evt()
                .0
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        );
    }
}

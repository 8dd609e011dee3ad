//! The virtio devices on the MMIO bus: `virtio-devices`' transports wired to KVM (irqfd
//! interrupts) and, for virtio-net, to the `usernet` stack on a thread of its own.
//!
//! Block devices run entirely in the vCPU thread that writes `QueueNotify`. The network device
//! has two sides: the guest's transmissions arrive in the vCPU thread, which only queues each
//! frame (bounded) and wakes the network thread; [`NetThread`] hands the queued frames to
//! `usernet` (which opens the host sockets: the vCPU threads' seccomp filter allows no socket
//! call), handles everything from the host side (socket data, connect results, timers), polling
//! the host sockets together with a wake-up eventfd, and moves frames into the guest's receive
//! queue.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use usernet::UserNet;
use virtio_devices::{InterruptLine, MmioTransport, NetBackend, VirtioDevice, VirtioNet};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::BusDevice;
use crate::exit::GuestExit;
use crate::seccomp::{StartGate, ThreadRole};

/// A virtio device's interrupt: an eventfd registered with KVM as an irqfd on its GSI.
#[derive(Debug)]
pub struct IrqfdLine(pub EventFd);

impl InterruptLine for IrqfdLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

impl<D: VirtioDevice> BusDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        MmioTransport::read(self, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<GuestExit> {
        MmioTransport::write(self, offset, data);
        None
    }
}

/// Bytes of guest frames queued for the network thread at most; beyond it a frame is dropped
/// (the guest's TCP sends it again), so a guest cannot grow the queue without bound.
pub const GUEST_TX_QUEUE_BYTES: usize = 1 << 20;

/// `usernet` as virtio-net's backend. Frames from the guest are queued and wake the network
/// thread, which hands them to the stack and runs it.
#[derive(Debug)]
pub struct UserNetBackend {
    net: UserNet,
    wake: EventFd,
    /// The guest's frames not yet handed to `net`, and their total size.
    from_guest: VecDeque<Vec<u8>>,
    from_guest_bytes: usize,
    /// Frames dropped because the queue was full.
    dropped: u64,
}

impl UserNetBackend {
    /// Wraps `net`; `wake` is written whenever the guest sends a frame.
    pub fn new(net: UserNet, wake: EventFd) -> Self {
        Self {
            net,
            wake,
            from_guest: VecDeque::new(),
            from_guest_bytes: 0,
            dropped: 0,
        }
    }

    /// Hands the guest's queued frames to the stack (in the network thread).
    pub fn ingest_guest_frames(&mut self) {
        while let Some(frame) = self.from_guest.pop_front() {
            self.from_guest_bytes -= frame.len();
            self.net.guest_frame(&frame);
        }
    }

    /// Frames dropped because the queue toward the network thread was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl NetBackend for UserNetBackend {
    fn transmit(&mut self, frame: &[u8]) {
        if self.from_guest_bytes + frame.len() > GUEST_TX_QUEUE_BYTES {
            self.dropped += 1;
        } else {
            self.from_guest_bytes += frame.len();
            self.from_guest.push_back(frame.to_vec());
        }
        if let Err(e) = self.wake.write(1) {
            log::warn!("wake the network thread: {e}");
        }
    }

    fn receive(&mut self) -> Option<Vec<u8>> {
        let frame = self.net.take_guest_frame();
        // The stack's queue toward the guest is bounded: once drained (here, possibly in a vCPU
        // thread that just posted receive buffers), the stack must run again to refill it.
        if frame.is_some() && !self.net.has_guest_frames() {
            if let Err(e) = self.wake.write(1) {
                log::warn!("wake the network thread: {e}");
            }
        }
        frame
    }

    fn has_pending(&self) -> bool {
        self.net.has_guest_frames()
    }
}

/// The virtio-net transport shared between the vCPU threads and the network thread.
pub type SharedNet = Arc<Mutex<MmioTransport<VirtioNet<UserNetBackend>>>>;

/// Longest sleep of the network thread without an event (it re-checks the stop flag).
const MAX_WAIT: Duration = Duration::from_millis(500);
/// Rounds of "deliver frames to the guest, run the stack again" per wake-up.
const MAX_ROUNDS: usize = 64;

/// The thread that runs the user-mode network.
#[derive(Debug)]
pub struct NetThread {
    handle: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    wake: EventFd,
}

impl NetThread {
    /// Starts the thread for `net`, woken through `wake` (a clone of the backend's eventfd); it
    /// enters `gate` (installs its seccomp filter, waits for the other threads) first.
    pub fn spawn(net: SharedNet, wake: EventFd, gate: StartGate) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_wake = wake.try_clone()?;
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("net".into())
            .spawn(move || {
                if gate.enter(ThreadRole::Net) {
                    run(&net, &thread_wake, &thread_stop);
                }
            })?;
        Ok(Self { handle, stop, wake })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.write(1);
        if self.handle.join().is_err() {
            log::warn!("the network thread panicked");
        }
    }
}

fn run(net: &SharedNet, wake: &EventFd, stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let timeout = {
            let mut t = net.lock().unwrap_or_else(PoisonError::into_inner);
            t.with_device(|dev, mem| {
                let used = pump(dev, mem);
                (dev.backend().net.poll_timeout(), used)
            })
        };
        fds.clear();
        fds.push(libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        {
            let t = net.lock().unwrap_or_else(PoisonError::into_inner);
            t.device().backend().net.poll_fds(&mut fds);
        }
        let wait = timeout.map_or(MAX_WAIT, |t| t.min(MAX_WAIT));
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
        // SAFETY: `fds` is a valid array of `nfds` pollfd structs that lives across the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("network thread: poll: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // Reset the counter; the frames themselves are queued in the backend.
            let _ = wake.read();
        }
    }
    let t = net.lock().unwrap_or_else(PoisonError::into_inner);
    let dropped = t.device().backend().dropped();
    if dropped > 0 {
        log::info!("network: {dropped} guest frames dropped (queue toward usernet full)");
    }
}

/// Runs the stack and moves its frames into the guest's receive queue until neither makes
/// progress. Returns whether used buffers were added.
fn pump(dev: &mut VirtioNet<UserNetBackend>, mem: &virtio_devices::GuestMemoryMmap) -> bool {
    let mut used = false;
    for _ in 0..MAX_ROUNDS {
        dev.backend_mut().ingest_guest_frames();
        dev.backend_mut().net.poll();
        if !dev.is_active() || !(dev.has_pending_rx() || dev.backend().has_pending()) {
            break;
        }
        if !dev.process_rx(mem) {
            // No receive buffers: the guest will post some and notify, which wakes us again
            // through its transmit path or the next poll round.
            break;
        }
        used = true;
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> UserNetBackend {
        let net = UserNet::new(usernet::UserNetConfig::default()).expect("user-mode network");
        UserNetBackend::new(net, EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"))
    }

    #[test]
    fn the_guest_frames_queue_is_bounded_and_drained_by_the_network_thread() {
        let mut b = backend();
        let frame = vec![0u8; 1514];
        let fits = GUEST_TX_QUEUE_BYTES / frame.len();
        for _ in 0..fits + 10 {
            b.transmit(&frame);
        }
        // Queued up to the bound, the rest dropped and counted; every transmit woke the thread.
        assert_eq!(b.from_guest.len(), fits);
        assert_eq!(b.from_guest_bytes, fits * frame.len());
        assert_eq!(b.dropped(), 10);
        assert_eq!(
            b.wake.read().expect("woken"),
            u64::try_from(fits + 10).unwrap()
        );
        // The network thread's side hands them all to the stack and frees the room.
        b.ingest_guest_frames();
        assert!(b.from_guest.is_empty());
        assert_eq!(b.from_guest_bytes, 0);
        b.transmit(&frame);
        assert_eq!((b.from_guest.len(), b.dropped()), (1, 10));
    }
}

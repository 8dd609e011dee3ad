//! The uevent-driven [`Devices`] source: devices added after the first scan are learnt from
//! their `add` uevents instead of by walking `/sys` again.
//!
//! The socket is opened before the first scan, so no device can fall between the walk and the
//! events (one seen by both is simply matched twice; the loader tries each module once).
//! After a load round, [`UeventDevices::wait`] takes what is queued and returns as soon as it
//! has modaliases; otherwise it listens until no device was added for [`QUIET`]. Listening
//! (not loading: a slow machine may take seconds per module) is bounded by [`LIMIT`] in all,
//! and what is already queued is always taken before giving up. Dropped events (`ENOBUFS`)
//! lead to a full rescan; a socket that fails otherwise is closed and the `/sys` walk takes
//! over.

use std::time::{Duration, Instant};

use super::scan::ScanDevices;
use super::{Devices, Seen};
use crate::uevent::{self, Action, SocketError, UeventSocket};

/// Coldplug is over when no device was added for this long after a load round. Long enough
/// for a driver's deferred work to register its devices; module loads that create devices do
/// so before finit_module returns, so their events are already queued.
pub const QUIET: Duration = Duration::from_millis(30);
/// Hard bound on the time spent listening, over all rounds.
pub const LIMIT: Duration = Duration::from_secs(3);
/// Most messages taken in one wait, so even an endless stream of events ends it.
const MAX_MESSAGES: usize = 4096;

/// Where uevents come from: the socket, or canned messages in tests.
pub trait Feed {
    /// The next message, waiting at most `timeout`; `None` if none came.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, SocketError>;
    /// Time since the feed was opened.
    fn now(&self) -> Duration;
}

/// The real feed: the kernel's uevent socket.
#[derive(Debug)]
pub struct SocketFeed {
    socket: UeventSocket,
    opened: Instant,
}

impl SocketFeed {
    /// Opens the socket; events are queued from now on.
    pub fn open() -> Result<SocketFeed, SocketError> {
        Ok(SocketFeed {
            socket: UeventSocket::open()?,
            opened: Instant::now(),
        })
    }
}

impl Feed for SocketFeed {
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, SocketError> {
        Ok(self.socket.recv(timeout)?.map(<[u8]>::to_vec))
    }

    fn now(&self) -> Duration {
        self.opened.elapsed()
    }
}

/// When to stop listening: pure, given the feed's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    quiet: Duration,
    limit: Duration,
    last_activity: Duration,
    /// Listening time of the waits that ended.
    listened: Duration,
    /// Start of the current wait.
    since: Duration,
}

impl Quiet {
    /// A quiet period of `quiet`, and no more than `limit` of listening in all.
    pub fn new(quiet: Duration, limit: Duration) -> Quiet {
        Quiet {
            quiet,
            limit,
            last_activity: Duration::ZERO,
            listened: Duration::ZERO,
            since: Duration::ZERO,
        }
    }

    /// A wait begins at `now` (a load round ended): the quiet period starts.
    pub fn begin(&mut self, now: Duration) {
        self.since = now;
        self.last_activity = now;
    }

    /// The wait that began ends at `now`.
    pub fn end(&mut self, now: Duration) {
        self.listened += now.saturating_sub(self.since);
        self.since = now;
    }

    /// A device was added at `now`: the quiet period starts again.
    pub fn restart(&mut self, now: Duration) {
        self.last_activity = now;
    }

    /// How long to listen for the next event, or how listening ends.
    pub fn timeout(&self, now: Duration) -> Result<Duration, Seen> {
        let quiet_left = (self.last_activity + self.quiet).saturating_sub(now);
        if quiet_left.is_zero() {
            return Err(Seen::Settled);
        }
        let used = self.listened + now.saturating_sub(self.since);
        let limit_left = self.limit.saturating_sub(used);
        if limit_left.is_zero() {
            return Err(Seen::TimedOut);
        }
        Ok(quiet_left.min(limit_left))
    }
}

/// Devices from uevents after one `/sys` walk.
#[derive(Debug)]
pub struct UeventDevices<F: Feed> {
    feed: Option<F>,
    quiet: Quiet,
    /// Walks `/sys`; also the source once the feed is gone.
    walk: ScanDevices,
}

impl<F: Feed> UeventDevices<F> {
    /// Listens on `feed` with the given quiet period and bound.
    pub fn new(feed: F, quiet: Quiet) -> UeventDevices<F> {
        UeventDevices {
            feed: Some(feed),
            quiet,
            walk: ScanDevices::new(),
        }
    }

    /// Closes the feed (the socket) for good.
    pub fn close(&mut self) {
        self.feed = None;
    }

    /// Takes events until there are modaliases to load or listening ends.
    fn listen(feed: &mut F, quiet: &mut Quiet) -> Result<Seen, SocketError> {
        quiet.begin(feed.now());
        let seen = Self::take(feed, quiet);
        quiet.end(feed.now());
        seen
    }

    fn take(feed: &mut F, quiet: &mut Quiet) -> Result<Seen, SocketError> {
        let mut added: Vec<String> = Vec::new();
        let mut end = None;
        for _ in 0..MAX_MESSAGES {
            // Once something is found, or listening is over, only what is already queued is
            // taken: events of devices that exist are never left behind.
            let timeout = if added.is_empty() && end.is_none() {
                match quiet.timeout(feed.now()) {
                    Ok(timeout) => timeout,
                    Err(over) => {
                        end = Some(over);
                        Duration::ZERO
                    }
                }
            } else {
                Duration::ZERO
            };
            let Some(message) = feed.recv(timeout)? else {
                if !added.is_empty() {
                    return Ok(Seen::Added(added));
                }
                match end {
                    Some(end) => return Ok(end),
                    None => continue,
                }
            };
            let event = match uevent::parse(&message) {
                Ok(event) => event,
                Err(e) => {
                    crate::debug!("uevent: ignored: {e}");
                    continue;
                }
            };
            // Modules and drivers are kobjects with `add` events too; only devices count.
            if event.action != Action::Add || !event.devpath.starts_with("/devices/") {
                continue;
            }
            quiet.restart(feed.now());
            crate::debug!(
                "uevent: add {} {}",
                event.devpath,
                event.modalias.unwrap_or("(no modalias)")
            );
            // The CPU's modalias is the CPU-feature thread's (cpu hotplug only, in practice).
            if let Some(alias) = event.modalias.filter(|a| !a.starts_with("cpu:")) {
                if !added.iter().any(|a| a == alias) {
                    added.push(alias.to_owned());
                }
            }
        }
        Ok(if added.is_empty() {
            Seen::TimedOut
        } else {
            Seen::Added(added)
        })
    }
}

impl<F: Feed> Devices for UeventDevices<F> {
    fn scan(&mut self) -> Vec<String> {
        self.walk.scan()
    }

    fn wait(&mut self) -> Seen {
        let Some(feed) = self.feed.as_mut() else {
            return self.walk.wait();
        };
        match Self::listen(feed, &mut self.quiet) {
            Ok(seen) => seen,
            Err(SocketError::Overrun) => {
                crate::warn!("coldplug: uevents were dropped; scanning /sys again");
                Seen::Lost
            }
            Err(e) => {
                crate::warn!(
                    "coldplug: uevent socket failed ({}); walking /sys instead",
                    crate::error_chain(&e)
                );
                self.feed = None;
                Seen::Lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Canned kernel messages, each arriving after a delay on a fake clock.
    struct Canned {
        clock: Duration,
        queue: VecDeque<(Duration, Result<Vec<u8>, SocketError>)>,
        waits: Vec<Duration>,
    }

    impl Canned {
        fn new(messages: Vec<(u64, Result<&[u8], SocketError>)>) -> Canned {
            Canned {
                clock: Duration::ZERO,
                queue: messages
                    .into_iter()
                    .map(|(ms, m)| (Duration::from_millis(ms), m.map(<[u8]>::to_vec)))
                    .collect(),
                waits: Vec::new(),
            }
        }
    }

    impl Feed for Canned {
        fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, SocketError> {
            self.waits.push(timeout);
            match self.queue.front() {
                Some((after, _)) if *after <= timeout => {
                    let (after, message) = self.queue.pop_front().ok_or(SocketError::Overrun)?;
                    self.clock += after;
                    message.map(Some)
                }
                Some((after, _)) => {
                    let rest = *after - timeout;
                    if let Some(front) = self.queue.front_mut() {
                        front.0 = rest;
                    }
                    self.clock += timeout;
                    Ok(None)
                }
                None => {
                    self.clock += timeout;
                    Ok(None)
                }
            }
        }

        fn now(&self) -> Duration {
            self.clock
        }
    }

    const VIRTIO: &[u8] = b"add@/devices/pci0000:00/0000:00:02.0/virtio0\0ACTION=add\0\
        DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio0\0SUBSYSTEM=virtio\0\
        MODALIAS=virtio:d00000001v00001AF4\0SEQNUM=1327\0";
    const BIND: &[u8] = b"bind@/devices/pci0000:00/0000:00:02.0\0ACTION=bind\0\
        DEVPATH=/devices/pci0000:00/0000:00:02.0\0SUBSYSTEM=pci\0DRIVER=virtio-pci\0\
        MODALIAS=pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\0SEQNUM=1326\0";
    const ETH0: &[u8] = b"add@/devices/pci0000:00/0000:00:02.0/virtio0/net/eth0\0ACTION=add\0\
        DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio0/net/eth0\0SUBSYSTEM=net\0\
        INTERFACE=eth0\0IFINDEX=2\0SEQNUM=1329\0";
    const MODULE: &[u8] = b"add@/module/virtio_net\0ACTION=add\0DEVPATH=/module/virtio_net\0\
        SUBSYSTEM=module\0SEQNUM=1330\0";
    const CPU: &[u8] = b"add@/devices/system/cpu/cpu1\0ACTION=add\0SUBSYSTEM=cpu\0\
        MODALIAS=cpu:type:x86,ven0002fam0019mod0001:feature:,0000\0";

    fn devices(messages: Vec<(u64, Result<&[u8], SocketError>)>) -> UeventDevices<Canned> {
        let quiet = Quiet::new(Duration::from_millis(30), Duration::from_millis(1000));
        UeventDevices::new(Canned::new(messages), quiet)
    }

    #[test]
    fn queued_adds_are_returned_at_once_then_quiet_settles() {
        let mut d = devices(vec![
            (0, Ok(BIND)),
            (0, Ok(VIRTIO)),
            (0, Ok(VIRTIO)),
            (0, Ok(CPU)),
            (5, Ok(ETH0)),
        ]);
        assert_eq!(
            d.wait(),
            Seen::Added(vec!["virtio:d00000001v00001AF4".to_owned()]),
            "bind events and the CPU are not loads; duplicates once"
        );
        // eth0 (no modalias) restarts the quiet period, then nothing comes for 30 ms.
        assert_eq!(d.wait(), Seen::Settled);
        let feed = d.feed.as_ref().unwrap();
        assert_eq!(feed.clock, Duration::from_millis(35));
    }

    #[test]
    fn modules_and_drivers_are_not_new_devices() {
        let mut d = devices(vec![(10, Ok(MODULE)), (10, Ok(BIND)), (10, Ok(MODULE))]);
        assert_eq!(d.wait(), Seen::Settled);
        assert_eq!(
            d.feed.as_ref().unwrap().clock,
            Duration::from_millis(30),
            "the quiet period ran from the start of the wait"
        );
    }

    #[test]
    fn devices_still_appearing_hit_the_bound() {
        let messages: Vec<_> = (0..100).map(|_| (20, Ok(ETH0))).collect();
        let mut d = devices(messages);
        assert_eq!(d.wait(), Seen::TimedOut);
        assert_eq!(d.feed.as_ref().unwrap().clock, Duration::from_millis(1000));
    }

    #[test]
    fn queued_devices_are_taken_even_when_listening_is_over() {
        // Regression: with a bound on time since the socket opened, a slow module load used
        // it up and the queued virtio device was never matched (no virtio_net, no network).
        let quiet = Quiet::new(Duration::from_millis(30), Duration::ZERO);
        let mut d = UeventDevices::new(Canned::new(vec![(0, Ok(VIRTIO))]), quiet);
        assert_eq!(
            d.wait(),
            Seen::Added(vec!["virtio:d00000001v00001AF4".to_owned()])
        );
        assert_eq!(d.wait(), Seen::TimedOut);
    }

    #[test]
    fn garbage_is_skipped() {
        let mut d = devices(vec![
            (0, Ok(b"libudev\0junk")),
            (0, Ok(b"\xff\xfe")),
            (10, Ok(VIRTIO)),
        ]);
        assert_eq!(
            d.wait(),
            Seen::Added(vec!["virtio:d00000001v00001AF4".to_owned()])
        );
    }

    #[test]
    fn dropped_events_ask_for_a_rescan_and_keep_the_socket() {
        let mut d = devices(vec![(0, Err(SocketError::Overrun))]);
        assert_eq!(d.wait(), Seen::Lost);
        assert!(d.feed.is_some());
        assert_eq!(d.wait(), Seen::Settled);
    }

    #[test]
    fn a_failed_socket_is_closed_and_the_walk_takes_over() {
        let error = SocketError::Recv(std::io::Error::from_raw_os_error(nix::libc::EBADF));
        let mut d = devices(vec![(0, Err(error))]);
        assert_eq!(d.wait(), Seen::Lost);
        assert!(d.feed.is_none());
    }

    #[test]
    fn quiet_timer() {
        let ms = Duration::from_millis;
        let mut q = Quiet::new(ms(30), ms(100));
        q.begin(ms(10));
        assert_eq!(q.timeout(ms(10)), Ok(ms(30)));
        assert_eq!(q.timeout(ms(25)), Ok(ms(15)));
        assert_eq!(q.timeout(ms(40)), Err(Seen::Settled));
        q.end(ms(40));
        // Loading took a long time: that does not count against the bound.
        q.begin(ms(5000));
        q.restart(ms(5050));
        assert_eq!(q.timeout(ms(5060)), Ok(ms(10)), "the bound is nearer");
        assert_eq!(q.timeout(ms(5070)), Err(Seen::TimedOut));
    }
}

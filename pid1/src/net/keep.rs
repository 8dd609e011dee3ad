//! Keeps each interface's DHCP lease for as long as PID 1 runs: one thread per interface runs
//! a [`Keeper`] (the pure timers and states of [`dhcp::renew`](super::dhcp::renew)) on the
//! boot clock, and acts on its changes: one console line per change, the address removed when
//! the lease is lost, then a new lease acquired from scratch and configured as at boot.
//!
//! The DHCP socket is open only while a renewal is under way (between T1 and the answer), so a
//! bound node has no UDP socket open. The threads never end a lease themselves, and never exit
//! except for a lease that never ends (then there is nothing to do).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::dhcp::renew::{Change, Destination, Keeper, Loss, RenewTiming};
use super::dhcp::{Lease, Timing};
use super::dhcp_io::{self, Iface};
use super::netlink::Netlink;
use super::{configure, link};

/// The longest single wait, so a thread re-reads the boot clock now and then (sleeps do not
/// count time suspended; the boot clock does).
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The pause between two attempts to get a new lease after one was lost.
const REACQUIRE_PAUSE: Duration = Duration::from_secs(10);

/// Milliseconds on the boot clock (`CLOCK_BOOTTIME`): leases run on wall time, suspend included.
pub fn clock_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .and_then(|t| {
            let secs = u64::try_from(t.tv_sec()).ok()?;
            let ms = u64::try_from(t.tv_nsec()).ok()? / 1_000_000;
            secs.checked_mul(1000)?.checked_add(ms)
        })
        .unwrap_or(0)
}

/// Starts a keeper thread for an interface whose lease was just configured. `primary`: the
/// interface that holds the default route (given back to it after a new lease).
pub fn start(iface: Iface, lease: Lease, primary: bool) {
    let name = format!("dhcp-{}", iface.name);
    let spawned = std::thread::Builder::new()
        .name(name)
        .spawn(move || keep(&iface, lease, primary));
    if let Err(e) = spawned {
        crate::warn!("dhcp: cannot start the lease keeper thread: {e}; the lease is not renewed");
    }
}

fn keep(iface: &Iface, mut lease: Lease, primary: bool) {
    loop {
        let mut keeper = Keeper::new(
            iface.mac,
            dhcp_io::transaction_id(&iface.mac),
            lease,
            RenewTiming::default(),
        );
        if keeper.times().is_none() {
            crate::debug!("dhcp: {} lease never ends; nothing to renew", iface.name);
            return;
        }
        let loss = run_until_lost(iface, &mut keeper);
        let address = keeper.lease().address;
        let what = match loss {
            Loss::Expired => "expired".to_owned(),
            Loss::Refused(server) => format!("refused by {server}"),
        };
        match remove_address(iface, keeper.lease()) {
            Ok(()) => crate::warn!(
                "dhcp: {} lease on {address} {what}; address removed",
                iface.name
            ),
            Err(e) => crate::error!(
                "dhcp: {} lease on {address} {what}; removing the address failed: {e}",
                iface.name
            ),
        }
        lease = reacquire(iface, primary);
    }
}

/// Runs the keeper until the lease is lost.
fn run_until_lost(iface: &Iface, keeper: &mut Keeper) -> Loss {
    let mut socket: Option<UdpSocket> = None;
    let mut buffer = vec![0u8; 2048];
    loop {
        let step = keeper.poll(clock_ms());
        if let Some(change) = step.change {
            if let Some(loss) = report(iface, keeper, change) {
                return loss;
            }
        }
        if !keeper.is_asking() {
            // Closed while bound: a bound node keeps no UDP socket open.
            socket = None;
        } else if socket.is_none() {
            socket = match dhcp_io::open_socket(&iface.name) {
                Ok(s) => Some(s),
                Err(e) => {
                    crate::warn!("dhcp: {} {}", iface.name, crate::error_chain(&e));
                    None
                }
            };
        }
        if let (Some(transmit), Some(s)) = (step.transmit, &socket) {
            let to = match transmit.to {
                Destination::Server(server) => server,
                Destination::Broadcast => Ipv4Addr::BROADCAST,
            };
            let destination = SocketAddrV4::new(to, dhcproto::v4::SERVER_PORT);
            if let Err(e) = s.send_to(&transmit.packet, destination) {
                // The retransmission (or the next state) tries again.
                crate::debug!("dhcp: {} send to {to}: {e}", iface.name);
            }
        }
        let Some(wake) = keeper.next_wakeup_ms() else {
            // Only a lost lease has no next wake-up; poll reported it above.
            return Loss::Expired;
        };
        let wait = Duration::from_millis(wake.saturating_sub(clock_ms())).min(MAX_WAIT);
        match &socket {
            Some(s) => {
                if readable(s, wait) {
                    if let Some(loss) = receive(iface, keeper, s, &mut buffer) {
                        return loss;
                    }
                }
            }
            None => std::thread::sleep(wait),
        }
    }
}

/// Waits up to `wait` for a datagram.
fn readable(socket: &UdpSocket, wait: Duration) -> bool {
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::ZERO);
    match poll(&mut fds, timeout) {
        Ok(n) => n > 0,
        Err(Errno::EINTR) => false,
        Err(e) => {
            crate::debug!("dhcp: poll: {e}");
            std::thread::sleep(wait);
            false
        }
    }
}

/// Feeds every waiting datagram to the keeper; a loss ends the drain.
fn receive(
    iface: &Iface,
    keeper: &mut Keeper,
    socket: &UdpSocket,
    buffer: &mut [u8],
) -> Option<Loss> {
    while let Ok((size, _)) = socket.recv_from(buffer) {
        let Some(packet) = buffer.get(..size) else {
            break;
        };
        match keeper.handle(packet) {
            Ok(change) => {
                if let Some(loss) = report(iface, keeper, change) {
                    return Some(loss);
                }
            }
            Err(ignored) => crate::debug!("dhcp: {} ignored a packet: {ignored:?}", iface.name),
        }
        if !keeper.is_asking() {
            break;
        }
    }
    None
}

/// One console line per state change (a loss is reported by the caller once the address is
/// gone); returns the loss.
fn report(iface: &Iface, keeper: &Keeper, change: Change) -> Option<Loss> {
    let lease = keeper.lease();
    let name = &iface.name;
    match change {
        Change::Renewing => crate::info!(
            "dhcp: {name} renewing {} with {} (T1)",
            lease.address,
            lease.server
        ),
        Change::Rebinding => crate::warn!(
            "dhcp: {name} rebinding {}: {} did not renew it by T2",
            lease.address,
            lease.server
        ),
        Change::Renewed => crate::info!(
            "dhcp: {name} renewed {} for {} s from {}",
            lease.address,
            lease.lease_secs.unwrap_or(0),
            lease.server
        ),
        Change::Lost(loss) => return Some(loss),
    }
    None
}

fn remove_address(iface: &Iface, lease: &Lease) -> Result<(), String> {
    let mut nl = Netlink::open().map_err(|e| crate::error_chain(&e))?;
    link::remove_address(&mut nl, iface.index, lease.address, lease.prefix_len)
        .map_err(|e| crate::error_chain(&e))
}

/// Acquires a new lease from scratch (DISCOVER), as often as it takes, and configures it.
fn reacquire(iface: &Iface, primary: bool) -> Lease {
    let mut failures = 0u32;
    loop {
        let result = dhcp_io::acquire(std::slice::from_ref(iface), Timing::default()).pop();
        match result {
            Some(Ok(lease)) => {
                let configured = Netlink::open()
                    .map_err(|e| crate::error_chain(&e))
                    .map(|mut nl| configure(&mut nl, iface, &lease, primary));
                match configured {
                    Ok(true) => return lease,
                    Ok(false) => {}
                    Err(e) => crate::error!("dhcp: {} open rtnetlink: {e}", iface.name),
                }
            }
            Some(Err(e)) if failures == 0 => crate::warn!(
                "dhcp: {} no lease: {}; trying again every {} s",
                iface.name,
                crate::error_chain(&e),
                REACQUIRE_PAUSE.as_secs()
            ),
            Some(Err(e)) => {
                crate::debug!("dhcp: {} no lease: {}", iface.name, crate::error_chain(&e))
            }
            None => {}
        }
        failures = failures.saturating_add(1);
        std::thread::sleep(REACQUIRE_PAUSE);
    }
}

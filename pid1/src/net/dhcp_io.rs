//! Runs [`dhcp::Client`](super::dhcp::Client)s over real sockets, all interfaces at once.
//!
//! One UDP socket per interface, bound to 0.0.0.0:68 with `SO_BINDTODEVICE` (so several can
//! share the port, and the limited broadcast goes out of the right interface although it has
//! no address yet) and `SO_BROADCAST`. Each socket is closed as soon as its exchange ends, so
//! nothing stays bound after DHCP.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn,
};

use super::dhcp::{Client, DhcpError, Handled, Lease, Timing};

/// Longest single poll, so the loop re-checks timers regularly.
const MAX_POLL_MS: u64 = 500;

/// Why one interface got no lease.
#[derive(Debug, thiserror::Error)]
pub enum DhcpIoError {
    /// The socket could not be created or set up.
    #[error("set up dhcp socket ({step})")]
    Socket {
        /// Which step failed.
        step: &'static str,
        /// errno.
        #[source]
        source: Errno,
    },
    /// Waiting for packets failed.
    #[error("poll dhcp sockets")]
    Poll(#[source] Errno),
    /// The exchange ended without a lease.
    #[error("dhcp")]
    Protocol(#[source] DhcpError),
}

/// An interface to run DHCP on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address.
    pub mac: [u8; 6],
}

/// One interface's exchange in flight.
struct Exchange {
    client: Client,
    socket: UdpSocket,
}

/// Runs DHCP on every interface concurrently; one result per interface, in the given order.
pub fn acquire(ifaces: &[Iface], timing: Timing) -> Vec<Result<Lease, DhcpIoError>> {
    // The boot clock: a lease's acquired_ms is on it, and its keeper counts T1, T2 and the
    // expiry from there.
    let now_ms = super::keep::clock_ms;
    let mut results: Vec<Option<Result<Lease, DhcpIoError>>> = Vec::new();
    let mut exchanges: Vec<Option<Exchange>> = Vec::new();
    for iface in ifaces {
        match open_socket(&iface.name) {
            Ok(socket) => {
                let xid = transaction_id(&iface.mac);
                crate::debug!("dhcp: {} xid {xid:08x}", iface.name);
                results.push(None);
                exchanges.push(Some(Exchange {
                    client: Client::new(iface.mac, xid, now_ms(), timing),
                    socket,
                }));
            }
            Err(e) => {
                results.push(Some(Err(e)));
                exchanges.push(None);
            }
        }
    }
    let destination = SocketAddrV4::new(Ipv4Addr::BROADCAST, dhcproto::v4::SERVER_PORT);
    let mut buffer = vec![0u8; 2048];
    loop {
        let now = now_ms();
        for (i, slot) in exchanges.iter_mut().enumerate() {
            let Some(exchange) = slot else { continue };
            if let Some(packet) = exchange.client.poll_transmit(now) {
                if let Err(e) = exchange.socket.send_to(&packet, destination) {
                    // Transient (e.g. the link went down); the retransmission tries again.
                    crate::debug!("dhcp: {} send: {e}", ifaces.get(i).map_or("?", |f| &f.name));
                }
            }
            finish(slot, &mut results[i]);
        }
        let active: Vec<usize> = (0..exchanges.len())
            .filter(|&i| exchanges[i].is_some())
            .collect();
        if active.is_empty() {
            break;
        }
        let wake = active
            .iter()
            .filter_map(|&i| exchanges[i].as_ref()?.client.next_wakeup_ms())
            .min()
            .unwrap_or(now);
        let wait = wake.saturating_sub(now_ms()).min(MAX_POLL_MS);
        let (polled, readable) = {
            let mut fds: Vec<PollFd<'_>> = active
                .iter()
                .filter_map(|&i| {
                    let socket = &exchanges[i].as_ref()?.socket;
                    Some(PollFd::new(socket.as_fd(), PollFlags::POLLIN))
                })
                .collect();
            let polled = poll(
                &mut fds,
                PollTimeout::try_from(wait).unwrap_or(PollTimeout::ZERO),
            );
            let readable: Vec<bool> = fds
                .iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            (polled, readable)
        };
        match polled {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                for &i in &active {
                    exchanges[i] = None;
                    results[i] = Some(Err(DhcpIoError::Poll(e)));
                }
                break;
            }
        }
        for (&i, ready) in active.iter().zip(readable) {
            if !ready {
                continue;
            }
            let name = ifaces.get(i).map_or("?", |f| f.name.as_str());
            let Some(exchange) = exchanges[i].as_mut() else {
                continue;
            };
            receive_all(exchange, &mut buffer, now_ms(), name);
            finish(&mut exchanges[i], &mut results[i]);
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or(Err(DhcpIoError::Protocol(DhcpError::TimedOut(
                timing.total_ms,
            ))))
        })
        .collect()
}

/// Drains a socket into its client.
fn receive_all(exchange: &mut Exchange, buffer: &mut [u8], now: u64, name: &str) {
    loop {
        let size = match exchange.socket.recv_from(buffer) {
            Ok((size, _)) => size,
            // WouldBlock ends the drain; other errors are retried by the next poll.
            Err(_) => return,
        };
        let Some(packet) = buffer.get(..size) else {
            return;
        };
        match exchange.client.handle(packet, now) {
            Ok(Handled::Offered(ip)) => crate::debug!("dhcp: {name} offered {ip}"),
            Ok(Handled::Nak) => {
                crate::info!("dhcp: {name} server refused the request; starting over")
            }
            Ok(Handled::Bound(_)) => return,
            Err(ignored) => crate::debug!("dhcp: {name} ignored a packet: {ignored:?}"),
        }
        if exchange.client.is_finished() {
            return;
        }
    }
}

/// Moves a finished exchange's outcome into `result`, closing its socket.
fn finish(slot: &mut Option<Exchange>, result: &mut Option<Result<Lease, DhcpIoError>>) {
    let Some(exchange) = slot else { return };
    if let Some(lease) = exchange.client.lease() {
        *result = Some(Ok(lease.clone()));
    } else if let Some(error) = exchange.client.failure() {
        *result = Some(Err(DhcpIoError::Protocol(error.clone())));
    } else {
        return;
    }
    // Dropping the exchange closes the socket.
    *slot = None;
}

/// A DHCP client socket on `name`: 0.0.0.0:68, bound to the device, broadcast allowed.
pub(crate) fn open_socket(name: &str) -> Result<UdpSocket, DhcpIoError> {
    let step = |step| move |source| DhcpIoError::Socket { step, source };
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::Udp,
    )
    .map_err(step("socket"))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(step("SO_REUSEADDR"))?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true).map_err(step("SO_BROADCAST"))?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(name))
        .map_err(step("SO_BINDTODEVICE"))?;
    let any = SockaddrIn::new(0, 0, 0, 0, dhcproto::v4::CLIENT_PORT);
    socket::bind(fd.as_raw_fd(), &any).map_err(step("bind 0.0.0.0:68"))?;
    Ok(UdpSocket::from(fd))
}

/// A random transaction id; falls back to the MAC and the clock if the kernel has no entropy.
pub(crate) fn transaction_id(mac: &[u8; 6]) -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::getrandom(&mut bytes).is_ok() {
        return u32::from_ne_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ nanos
}

//! User-mode network for NullOS micro-VMs: the guest's virtio-net link ends in a smoltcp
//! gateway inside the VMM process, which proxies the guest's outbound TCP and DNS through
//! ordinary host sockets.
//!
//! # The network
//!
//! Fixed for every micro-VM ([`config`] constants): the guest is `10.200.0.2/24` (configured
//! by the guest itself, no DHCP), the gateway and DNS server `10.200.0.1` with MAC
//! `52:54:00:00:00:01`. smoltcp answers the guest's ARP for the gateway and pings to it.
//!
//! * **TCP** to any unicast address outside the node is proxied: the guest's SYN starts a
//!   non-blocking host connect to the same address and port, and is held until the connect
//!   has an outcome. On success a smoltcp socket that accepts exactly that connection is
//!   created (smoltcp's `any_ip`, a listening socket for the destination) and the guest gets
//!   its SYN-ACK; on failure (refused, unreachable, timed out after
//!   [`UserNetConfig::connect_timeout`]) the guest gets an RST, as from a real peer. Bytes
//!   are then copied between the smoltcp buffers and the host socket, without intermediate
//!   buffers, with backpressure both ways (the host socket is not read while the guest-side
//!   send buffer is full; the guest's window closes while the host does not take bytes).
//!   FIN is passed on in both directions (half-close), a host reset becomes an RST to the
//!   guest and a guest reset an RST to the host (SO_LINGER 0).
//! * **Refused with an RST**: every destination the egress policy ([`policy`]) refuses: the
//!   gateway's network, the node's own addresses, its control and notary endpoints, cloud
//!   metadata services, loopback (unless [`UserNetConfig::allow_loopback`], for tests),
//!   private, CGNAT, link-local, multicast, broadcast and reserved ranges, unless the node's
//!   policy allows them by name ([`UserNetConfig::allow`]); every SYN beyond
//!   [`UserNetConfig::max_flows`] concurrent flows or beyond the SYN rate limit
//!   ([`UserNetConfig::syn_rate`], [`UserNetConfig::syn_burst`]). An open flow with no byte
//!   either way for [`UserNetConfig::idle_timeout`] is reset on both sides.
//! * **DNS**: UDP to `10.200.0.1:53` is forwarded to [`UserNetConfig::dns_server`] (the node's
//!   first `nameserver` with [`UserNetConfig::system`]) from a fresh connected host UDP socket
//!   per query, at most [`UserNetConfig::max_dns_queries`] at once; answers go back to the
//!   guest. DNS over TCP to the gateway is refused like any TCP to the gateway.
//! * **Dropped** (logged at debug level): all other UDP, ICMP beyond the gateway, IPv6 and
//!   other ethertypes, IPv4 fragments, frames whose source is not the guest's address, ARP
//!   for any address but the gateway.
//!
//! # Nothing can connect in
//!
//! The crate never calls listen(2) and never binds a host socket to a chosen port: TCP
//! sockets are only connected out, and DNS sockets are connected UDP sockets whose port the
//! kernel picks at connect time and which accept only the resolver's datagrams. There is no
//! way for anything outside to open a connection to the guest.
//!
//! # Driving it (one network thread)
//!
//! Every call is non-blocking. A VMM network thread does, in a loop:
//!
//! 1. poll(2) its own fds (virtio queue eventfds) together with [`UserNet::poll_fds`], with the
//!    timeout [`UserNet::poll_timeout`];
//! 2. hand every frame the guest sent to [`UserNet::guest_frame`];
//! 3. call [`UserNet::poll`];
//! 4. move frames from [`UserNet::take_guest_frame`] into the guest's receive queue while it
//!    has buffers, and if any were moved, call [`UserNet::poll`] again (the queue of frames
//!    for the guest is bounded; when it is full smoltcp holds back, which is how a guest that
//!    does not read slows its senders down).
//!
//! # Limits
//!
//! IPv4 only; MTU 1500 (MSS 1460), no segmentation offload, no IP fragments; a DNS answer
//! larger than one frame (1472 bytes) is dropped; each flow has two
//! [`UserNetConfig::tcp_buffer_size`] buffers (64 KiB by default, allocated zeroed so the
//! pages are only touched as they are used), and every buffer together is bounded by
//! [`UserNetConfig::memory_bound`] (about 8.8 MiB by default), which must fit
//! [`UserNetConfig::memory_budget`] (12 MiB); a flow whose guest side ended gives the host
//! peer 10 s to take its last buffered bytes. Checksums of guest frames are not verified (the
//! link is memory, and this admits checksum offload); checksums of frames to the guest are
//! computed.
//!
//! # Syscalls (for the VMM's seccomp filter)
//!
//! socket, connect, setsockopt, getsockopt (SO_ERROR), poll, read/recvfrom, write/sendto,
//! shutdown, close, getrandom (in [`UserNet::new`]), clock_gettime.
//! [`UserNetConfig::system`] lists the node's addresses with getifaddrs(3), a netlink socket:
//! call it before the filter is installed (the VMM builds its network first).

pub mod config;

mod classify;
mod dns;
mod host;
mod limit;
pub mod policy;
mod stack;
mod tcp;

use std::time::Duration;

use smoltcp::time::Instant;

pub use config::{ConfigError, UserNetConfig};

use crate::classify::{classify, Verdict};
use crate::dns::Dns;
use crate::stack::Stack;
use crate::tcp::Flows;

/// Errors of [`UserNet`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration was rejected.
    #[error("invalid usernet configuration")]
    ValidateConfig(#[source] ConfigError),
}

/// Counters for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// TCP flows connecting or open.
    pub tcp_flows: usize,
    /// DNS queries waiting for the resolver.
    pub dns_queries: usize,
    /// Frames waiting for the guest.
    pub guest_frames: usize,
    /// Frames from the guest dropped by the filter.
    pub dropped_from_guest: u64,
    /// Frames for the guest lost because the queue was full.
    pub dropped_to_guest: u64,
    /// SYNs refused by the rate limit ([`UserNetConfig::syn_rate`]).
    pub syns_limited: u64,
}

/// The user-mode network of one micro-VM. See the crate documentation.
pub struct UserNet {
    cfg: UserNetConfig,
    epoch: std::time::Instant,
    stack: Stack,
    flows: Flows,
    dns: Dns,
    /// The earliest time `poll` has work to do without any fd or frame, as of the last `poll`.
    deadline: Option<Instant>,
    dropped_from_guest: u64,
}

impl std::fmt::Debug for UserNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserNet")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl UserNet {
    /// Sets up the gateway. Opens no host socket.
    pub fn new(cfg: UserNetConfig) -> Result<UserNet, Error> {
        cfg.validate().map_err(Error::ValidateConfig)?;
        let epoch = std::time::Instant::now();
        let mut stack = Stack::new(&cfg, Instant::from_micros(0));
        let dns = Dns::new(&mut stack, &cfg);
        let flows = Flows::new(&cfg, Instant::from_micros(0));
        Ok(UserNet {
            cfg,
            epoch,
            stack,
            flows,
            dns,
            deadline: None,
            dropped_from_guest: 0,
        })
    }

    /// Takes one Ethernet frame the guest sent (without the virtio-net header). May queue an
    /// immediate answer for the guest (ARP reply, RST); call [`UserNet::poll`] after a batch.
    pub fn guest_frame(&mut self, frame: &[u8]) {
        let now = self.now();
        match classify(frame, &self.cfg) {
            Verdict::Ingest => self.stack.ingest(frame, now),
            Verdict::Tcp { key, syn, rst } => {
                self.flows
                    .guest_segment(&mut self.stack, &self.cfg, frame, key, syn, rst, now);
            }
            Verdict::Drop(reason) => {
                self.dropped_from_guest += 1;
                log::debug!("usernet: guest frame dropped: {reason}");
            }
        }
    }

    /// The next Ethernet frame for the guest, oldest first.
    pub fn take_guest_frame(&mut self) -> Option<Vec<u8>> {
        self.stack.queue.pop()
    }

    /// Whether frames wait for the guest.
    pub fn has_guest_frames(&self) -> bool {
        !self.stack.queue.is_empty()
    }

    /// Drives everything once, without blocking: host connects that finished, bytes between
    /// host sockets and smoltcp, DNS answers, time-outs, then smoltcp's output into the queue
    /// of frames for the guest.
    pub fn poll(&mut self) {
        let now = self.now();
        self.flows.poll(&mut self.stack, &self.cfg, now);
        self.dns.poll(&mut self.stack, now);
        self.stack.egress(now);
        // With the guest queue full smoltcp would ask to be polled at once, to send; it can
        // only send once the VMM took frames, and the VMM calls `poll` then.
        let smoltcp = if self.stack.queue.is_full() {
            None
        } else {
            self.stack.poll_delay(now).map(|d| now + d)
        };
        self.deadline = [
            smoltcp,
            self.flows.next_deadline(&self.cfg),
            self.dns.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
    }

    /// Appends the host fds to poll(2) with the events that mean [`UserNet::poll`] has work.
    /// Only fds with a non-empty interest are listed; the set changes after every call that
    /// takes `&mut self`.
    pub fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        self.flows.poll_fds(&self.stack, out);
        self.dns.poll_fds(out);
    }

    /// How long the caller may wait (for fds or guest frames) before [`UserNet::poll`] must
    /// run again: smoltcp's timers (retransmission, delayed ACK), connect and DNS time-outs,
    /// as of the last `poll`. `None`: no timer; only fds or guest frames bring work.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let deadline = self.deadline?;
        let now = self.now();
        let micros = (deadline - now.min(deadline)).total_micros();
        Some(Duration::from_micros(micros))
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        Stats {
            tcp_flows: self.flows.len(),
            dns_queries: self.dns.pending(),
            guest_frames: self.stack.queue.len(),
            dropped_from_guest: self.dropped_from_guest,
            dropped_to_guest: self.stack.queue.dropped,
            syns_limited: self.flows.syns_limited,
        }
    }

    /// smoltcp time from a monotonic clock, counted from `new`.
    fn now(&self) -> Instant {
        let micros = i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX);
        Instant::from_micros(micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernet_moves_to_the_network_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<UserNet>();
    }

    #[test]
    fn bad_config_is_an_error() {
        let cfg = UserNetConfig {
            tcp_buffer_size: 0,
            ..UserNetConfig::default()
        };
        assert!(matches!(
            UserNet::new(cfg),
            Err(Error::ValidateConfig(ConfigError::Zero("tcp_buffer_size")))
        ));
    }

    #[test]
    fn idle_gateway_has_no_fds_and_no_timer() {
        let mut net = UserNet::new(UserNetConfig::default()).unwrap();
        net.poll();
        let mut fds = Vec::new();
        net.poll_fds(&mut fds);
        assert!(fds.is_empty());
        assert_eq!(net.poll_timeout(), None);
        assert!(!net.has_guest_frames());
        assert_eq!(net.stats(), Stats::default());
    }
}

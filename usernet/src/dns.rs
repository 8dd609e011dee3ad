//! DNS: queries to the gateway's port 53 are forwarded to the node's resolver, one fresh
//! connected host UDP socket per query (so the kernel picks a random source port and accepts
//! only the resolver's answer), and the first answer goes back to the guest.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::storage::PacketMetadata;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use crate::classify::DNS_PORT;
use crate::config::UserNetConfig;
use crate::host;
use crate::stack::{Stack, MTU};

/// The largest UDP payload that fits one frame (no IP fragmentation on the guest link).
const MAX_REPLY: usize = MTU - 20 - 8;
/// Datagrams the gateway's UDP socket buffers in each direction.
const UDP_PACKETS: usize = 32;

/// The DNS forwarder.
#[derive(Debug)]
pub(crate) struct Dns {
    handle: SocketHandle,
    resolver: Option<SocketAddr>,
    queries: Vec<Query>,
    max: usize,
    timeout: Duration,
    scratch: Vec<libc::pollfd>,
    reply: Vec<u8>,
}

#[derive(Debug)]
struct Query {
    host: UdpSocket,
    guest: IpEndpoint,
    deadline: Instant,
}

impl Dns {
    pub fn new(stack: &mut Stack, cfg: &UserNetConfig) -> Self {
        let mut sock = udp::Socket::new(
            udp::PacketBuffer::new(
                vec![PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_PACKETS * 512],
            ),
            udp::PacketBuffer::new(
                vec![PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_PACKETS * MAX_REPLY],
            ),
        );
        // Cannot fail: the port is not zero and the socket is new.
        let _ = sock.bind(IpListenEndpoint {
            addr: Some(cfg.gateway_ip.into()),
            port: DNS_PORT,
        });
        Dns {
            handle: stack.sockets.add(sock),
            resolver: cfg.dns_server,
            queries: Vec::new(),
            max: cfg.max_dns_queries,
            timeout: cfg.dns_timeout.into(),
            scratch: Vec::new(),
            // One byte more than fits, to notice an answer too large for the link.
            reply: vec![0; MAX_REPLY + 1],
        }
    }

    /// Queries waiting for the resolver.
    pub fn pending(&self) -> usize {
        self.queries.len()
    }

    /// Forwards new queries, delivers answers, expires the rest.
    pub fn poll(&mut self, stack: &mut Stack, now: Instant) {
        let sock = stack.sockets.get_mut::<udp::Socket>(self.handle);
        while let Ok((query, meta)) = sock.recv() {
            let Some(resolver) = self.resolver else {
                log::debug!(
                    "usernet: dns query from {} dropped: no resolver",
                    meta.endpoint
                );
                continue;
            };
            if self.queries.len() >= self.max {
                log::debug!(
                    "usernet: dns query from {} dropped: {} pending",
                    meta.endpoint,
                    self.max
                );
                continue;
            }
            match host::connect_udp(resolver).and_then(|s| s.send(query).map(|_| s)) {
                Ok(host) => self.queries.push(Query {
                    host,
                    guest: meta.endpoint,
                    deadline: now + self.timeout,
                }),
                Err(e) => log::debug!("usernet: dns query to {resolver}: {e}"),
            }
        }
        if self.queries.is_empty() {
            return;
        }
        self.scratch.clear();
        self.scratch
            .extend(self.queries.iter().map(|q| libc::pollfd {
                fd: q.host.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
        if let Err(e) = host::poll_now(&mut self.scratch) {
            log::debug!("usernet: poll: {e}");
            for fd in &mut self.scratch {
                fd.revents = libc::POLLIN;
            }
        }
        // `queries` is unchanged since the fds were collected: same order.
        let mut ready = self.scratch.iter().map(|fd| fd.revents != 0);
        let reply = &mut self.reply;
        self.queries.retain(|query| {
            if !ready.next().unwrap_or(false) {
                if now < query.deadline {
                    return true;
                }
                log::debug!("usernet: dns query from {} timed out", query.guest);
                return false;
            }
            match query.host.recv(reply) {
                Ok(n) if n > MAX_REPLY => {
                    log::debug!("usernet: dns answer larger than {MAX_REPLY} bytes dropped");
                }
                Ok(n) => {
                    if let Err(e) = sock.send_slice(&reply[..n], query.guest) {
                        log::debug!("usernet: dns answer to {}: {e}", query.guest);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) => log::debug!("usernet: dns answer: {e}"),
            }
            false
        });
    }

    /// The resolver sockets; every one waits for its answer.
    pub fn poll_fds(&self, out: &mut Vec<libc::pollfd>) {
        out.extend(self.queries.iter().map(|q| libc::pollfd {
            fd: q.host.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
    }

    /// The earliest query timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queries.iter().map(|q| q.deadline).min()
    }
}

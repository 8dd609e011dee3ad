//! Outbound TCP: one flow per guest connection, a smoltcp socket on the guest side and a
//! non-blocking host socket on the other, bytes relayed between their buffers.
//!
//! The guest's SYN is held back until the host connect has an outcome: on success a
//! listening socket for exactly that destination is created and the held SYN fed to it, so
//! the guest sees a SYN-ACK only when the far end accepted; on failure the SYN is fed to
//! smoltcp with no socket to take it, and smoltcp answers with an RST. Refused destinations
//! and SYNs beyond the flow limit take that RST path at once.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpListenEndpoint;

use crate::classify::FlowKey;
use crate::config::UserNetConfig;
use crate::host;
use crate::limit::TokenBucket;
use crate::policy::refused_destination;
use crate::stack::Stack;

/// How long a flow whose guest side is finished may keep trying to hand its last bytes to a
/// host peer that does not read them.
const LINGER: Duration = Duration::from_secs(10);

const POLL_READ: i16 = libc::POLLIN | libc::POLLERR | libc::POLLHUP;
const POLL_WRITE: i16 = libc::POLLOUT | libc::POLLERR | libc::POLLHUP;

/// All TCP flows, keyed by the guest's view of the connection.
#[derive(Debug)]
pub(crate) struct Flows {
    map: HashMap<FlowKey, Flow>,
    scratch: Vec<libc::pollfd>,
    /// The SYN rate limit: one token per host connect.
    syns: TokenBucket,
    /// SYNs refused by the rate limit, for [`crate::Stats`].
    pub syns_limited: u64,
}

#[derive(Debug)]
struct Flow {
    host: TcpStream,
    state: FlowState,
    /// Readiness of `host` from the poll(2) at the start of this round.
    revents: i16,
}

#[derive(Debug)]
enum FlowState {
    /// Host connect under way; the guest's SYN waits here.
    Connecting { syn: Vec<u8>, deadline: Instant },
    /// Handshake done (or under way) with the guest; relaying.
    Open(Open),
}

#[derive(Debug)]
struct Open {
    handle: SocketHandle,
    /// The host peer sent FIN; our FIN to the guest is queued.
    host_eof: bool,
    /// The guest's FIN was passed on with shutdown(SHUT_WR).
    host_write_shut: bool,
    /// The host socket failed (reset); the guest was sent an RST.
    host_failed: bool,
    /// When the guest side finished while bytes for the host were still buffered.
    guest_done_at: Option<Instant>,
    /// When a byte last moved either way (or the flow opened): the idle timeout counts from here.
    active_at: Instant,
}

impl Flows {
    pub fn new(cfg: &UserNetConfig, now: Instant) -> Self {
        Flows {
            map: HashMap::new(),
            scratch: Vec::new(),
            syns: TokenBucket::new(cfg.syn_rate, cfg.syn_burst, now),
            syns_limited: 0,
        }
    }

    /// Number of connecting and open flows.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Handles one TCP segment from the guest.
    #[allow(clippy::too_many_arguments)]
    pub fn guest_segment(
        &mut self,
        stack: &mut Stack,
        cfg: &UserNetConfig,
        frame: &[u8],
        key: FlowKey,
        syn: bool,
        rst: bool,
        now: Instant,
    ) {
        if let Some(flow) = self.map.get_mut(&key) {
            match &flow.state {
                FlowState::Connecting { .. } if rst => {
                    log::debug!(
                        "usernet: {} -> {}: guest gave up connecting",
                        key.guest,
                        key.remote
                    );
                    self.map.remove(&key);
                }
                // A retransmitted SYN; the held one answers it.
                FlowState::Connecting { .. } => {}
                FlowState::Open(open) => {
                    let handle = open.handle;
                    stack.ingest(frame, now);
                    // A reset during the handshake returns a smoltcp socket to LISTEN, where it
                    // would take the next SYN to that destination from any guest port: end the
                    // flow now.
                    if stack.sockets.get::<tcp::Socket>(handle).state() == State::Listen {
                        stack.sockets.remove(handle);
                        host::reset_on_close(&flow.host);
                        self.map.remove(&key);
                    }
                }
            }
            return;
        }
        if !syn {
            // Not a connection we know: smoltcp answers with an RST (none to an RST).
            stack.ingest(frame, now);
            return;
        }
        if let Some(reason) = refused_destination(key.remote, cfg) {
            log::debug!(
                "usernet: {} -> {}: refused ({reason})",
                key.guest,
                key.remote
            );
            stack.ingest(frame, now);
            return;
        }
        if self.map.len() >= cfg.max_flows {
            log::debug!(
                "usernet: {} -> {}: refused, {} flows open",
                key.guest,
                key.remote,
                self.map.len()
            );
            stack.ingest(frame, now);
            return;
        }
        if !self.syns.take(now) {
            self.syns_limited += 1;
            log::debug!(
                "usernet: {} -> {}: refused, over {} connects per second",
                key.guest,
                key.remote,
                cfg.syn_rate
            );
            stack.ingest(frame, now);
            return;
        }
        match host::connect_tcp(key.remote.into()) {
            Ok(host) => {
                log::debug!("usernet: {} -> {}: connecting", key.guest, key.remote);
                self.map.insert(
                    key,
                    Flow {
                        host,
                        state: FlowState::Connecting {
                            syn: frame.to_vec(),
                            deadline: now + Duration::from(cfg.connect_timeout),
                        },
                        revents: 0,
                    },
                );
            }
            Err(e) => {
                log::debug!("usernet: {} -> {}: connect: {e}", key.guest, key.remote);
                stack.ingest(frame, now);
            }
        }
    }

    /// One round over every flow: connect outcomes, relaying, clean-up.
    pub fn poll(&mut self, stack: &mut Stack, cfg: &UserNetConfig, now: Instant) {
        if self.map.is_empty() {
            return;
        }
        self.scratch.clear();
        self.scratch
            .extend(self.map.values().map(|flow| libc::pollfd {
                fd: flow.host.as_raw_fd(),
                events: libc::POLLIN | libc::POLLOUT,
                revents: 0,
            }));
        if let Err(e) = host::poll_now(&mut self.scratch) {
            // Not expected; fall back to trying every socket (non-blocking, so harmless).
            log::debug!("usernet: poll: {e}");
            for fd in &mut self.scratch {
                fd.revents = libc::POLLIN | libc::POLLOUT;
            }
        }
        // The map is unchanged since the fds were collected, so the order is the same.
        for (flow, fd) in self.map.values_mut().zip(&self.scratch) {
            flow.revents = fd.revents;
        }
        self.map.retain(|key, flow| flow.poll(key, stack, cfg, now));
    }

    /// The host fds with the events that would let [`Flows::poll`] make progress.
    pub fn poll_fds(&self, stack: &Stack, out: &mut Vec<libc::pollfd>) {
        for flow in self.map.values() {
            let events = match &flow.state {
                FlowState::Connecting { .. } => libc::POLLOUT,
                FlowState::Open(open) => {
                    let sock = stack.sockets.get::<tcp::Socket>(open.handle);
                    let mut events = 0;
                    if !open.host_eof && !open.host_failed && sock.can_send() {
                        events |= libc::POLLIN;
                    }
                    if !open.host_write_shut && !open.host_failed && sock.can_recv() {
                        events |= libc::POLLOUT;
                    }
                    events
                }
            };
            if events != 0 {
                out.push(libc::pollfd {
                    fd: flow.host.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
        }
    }

    /// The earliest connect timeout, linger end or idle timeout.
    pub fn next_deadline(&self, cfg: &UserNetConfig) -> Option<Instant> {
        let idle = Duration::from(cfg.idle_timeout);
        self.map
            .values()
            .map(|flow| match &flow.state {
                FlowState::Connecting { deadline, .. } => *deadline,
                FlowState::Open(open) => {
                    let idle_end = open.active_at + idle;
                    open.guest_done_at
                        .map_or(idle_end, |t| idle_end.min(t + LINGER))
                }
            })
            .min()
    }
}

impl Flow {
    /// Returns whether the flow stays.
    fn poll(
        &mut self,
        key: &FlowKey,
        stack: &mut Stack,
        cfg: &UserNetConfig,
        now: Instant,
    ) -> bool {
        match &mut self.state {
            FlowState::Connecting { syn, deadline } => {
                if self.revents & POLL_WRITE == 0 {
                    if now < *deadline {
                        return true;
                    }
                    log::debug!(
                        "usernet: {} -> {}: connect timed out",
                        key.guest,
                        key.remote
                    );
                    stack.ingest(syn, now);
                    return false;
                }
                let failure = match self.host.take_error() {
                    Ok(None) => None,
                    Ok(Some(e)) | Err(e) => Some(e),
                };
                if let Some(e) = failure {
                    log::debug!("usernet: {} -> {}: connect: {e}", key.guest, key.remote);
                    stack.ingest(syn, now);
                    return false;
                }
                match accept_syn(stack, cfg, key, syn, now) {
                    Some(handle) => {
                        log::debug!("usernet: {} -> {}: connected", key.guest, key.remote);
                        self.state = FlowState::Open(Open {
                            handle,
                            host_eof: false,
                            host_write_shut: false,
                            host_failed: false,
                            guest_done_at: None,
                            active_at: now,
                        });
                        true
                    }
                    None => false,
                }
            }
            FlowState::Open(open) => {
                let sock = stack.sockets.get_mut::<tcp::Socket>(open.handle);
                if open.relay(&mut self.host, sock, self.revents, key) {
                    open.active_at = now;
                } else if now >= open.active_at + Duration::from(cfg.idle_timeout)
                    && !open.host_failed
                {
                    log::debug!(
                        "usernet: {} -> {}: idle for {:?}, reset",
                        key.guest,
                        key.remote,
                        cfg.idle_timeout
                    );
                    open.host_failed = true;
                    sock.abort();
                }
                if open.finished(&self.host, sock, now) {
                    stack.sockets.remove(open.handle);
                    false
                } else {
                    true
                }
            }
        }
    }
}

/// Creates the listening socket for exactly `key.remote` and feeds it the held SYN. `None`
/// when smoltcp did not take it (a malformed SYN, say): the flow ends.
fn accept_syn(
    stack: &mut Stack,
    cfg: &UserNetConfig,
    key: &FlowKey,
    syn: &[u8],
    now: Instant,
) -> Option<SocketHandle> {
    let mut sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; cfg.tcp_buffer_size]),
        tcp::SocketBuffer::new(vec![0; cfg.tcp_buffer_size]),
    );
    // We relay what the host sent as soon as it arrives; Nagle would only add latency.
    sock.set_nagle_enabled(false);
    let endpoint = IpListenEndpoint {
        addr: Some((*key.remote.ip()).into()),
        port: key.remote.port(),
    };
    if sock.listen(endpoint).is_err() {
        return None;
    }
    let handle = stack.sockets.add(sock);
    stack.ingest(syn, now);
    if stack.sockets.get::<tcp::Socket>(handle).state() == State::Listen {
        stack.sockets.remove(handle);
        return None;
    }
    Some(handle)
}

/// What one read from the host into smoltcp's send buffer gave.
enum Filled {
    Bytes,
    Eof,
    NoRoom,
    Failed(io::Error),
}

impl Open {
    /// Moves what it can both ways; returns whether any byte (or FIN) moved.
    fn relay(
        &mut self,
        host: &mut TcpStream,
        sock: &mut tcp::Socket,
        revents: i16,
        key: &FlowKey,
    ) -> bool {
        let mut moved = false;
        // Guest -> host: write straight out of smoltcp's receive buffer.
        if !self.host_write_shut && !self.host_failed && revents & POLL_WRITE != 0 {
            while sock.can_recv() {
                let wrote = sock.recv(|buf| match host.write(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match wrote {
                    Ok(Ok(0)) | Err(_) => break,
                    Ok(Ok(_)) => moved = true,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => {
                        self.fail(sock, key, &e);
                        break;
                    }
                }
            }
        }
        // The guest's FIN, after its last byte: half-close the host side.
        if !self.host_write_shut
            && !self.host_failed
            && !sock.can_recv()
            && matches!(
                sock.state(),
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait
            )
        {
            if let Err(e) = host.shutdown(Shutdown::Write) {
                log::debug!("usernet: {} -> {}: shutdown: {e}", key.guest, key.remote);
            }
            self.host_write_shut = true;
            moved = true;
        }
        // Host -> guest: read straight into smoltcp's send buffer, only while it has room.
        if !self.host_eof && !self.host_failed && revents & POLL_READ != 0 {
            while sock.can_send() {
                let filled = sock.send(|buf| {
                    if buf.is_empty() {
                        return (0, Filled::NoRoom);
                    }
                    match host.read(buf) {
                        Ok(0) => (0, Filled::Eof),
                        Ok(n) => (n, Filled::Bytes),
                        Err(e) => (0, Filled::Failed(e)),
                    }
                });
                match filled {
                    Ok(Filled::Bytes) => moved = true,
                    Ok(Filled::Eof) => {
                        moved = true;
                        self.host_eof = true;
                        sock.close();
                        break;
                    }
                    Ok(Filled::NoRoom) | Err(_) => break,
                    Ok(Filled::Failed(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Ok(Filled::Failed(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Filled::Failed(e)) => {
                        self.fail(sock, key, &e);
                        break;
                    }
                }
            }
        }
        moved
    }

    /// The host side reset or failed: reset the guest side.
    fn fail(&mut self, sock: &mut tcp::Socket, key: &FlowKey, e: &io::Error) {
        log::debug!("usernet: {} -> {}: host socket: {e}", key.guest, key.remote);
        self.host_failed = true;
        sock.abort();
    }

    /// Whether the flow is over and its socket can go.
    fn finished(&mut self, host: &TcpStream, sock: &tcp::Socket, now: Instant) -> bool {
        let guest_done = match sock.state() {
            // Closed and forgotten (an RST sent or received, or the last ACK of a close).
            // While the endpoint is still set, an RST of ours waits to be sent.
            State::Closed => sock.remote_endpoint().is_none(),
            // Both FINs exchanged; the guest retransmits nothing we must answer on a link
            // that does not lose frames.
            State::TimeWait => true,
            _ => false,
        };
        if !guest_done {
            return false;
        }
        if sock.can_recv() && !self.host_failed && !self.host_write_shut {
            // Bytes for the host are still buffered: give the host a while to take them.
            let since = *self.guest_done_at.get_or_insert(now);
            if now < since + LINGER {
                return false;
            }
        }
        if self.host_eof && !sock.can_recv() && !self.host_failed {
            // A clean close: pass on the FIN if not done yet.
            let _ = host.shutdown(Shutdown::Write);
        } else {
            host::reset_on_close(host);
        }
        true
    }
}

//! Keeping a bound lease (RFC 2131 §4.4.5), pure: BOUND → RENEWING at T1 (REQUEST unicast to
//! the server that granted it) → REBINDING at T2 (REQUEST broadcast, any server may answer) →
//! lost at expiry; an ACK in either returns to BOUND with the new lease times, a NAK loses it.
//!
//! No sockets and no clock, like [`Client`](super::Client): the caller passes the time (ms on
//! one monotonic clock, the one [`Lease::acquired_ms`] is on), sends what [`Keeper::poll`]
//! returns, feeds replies to [`Keeper::handle`], and acts on each [`Change`] (a lost lease's
//! address is removed by the caller). Retransmissions wait half the time left before the next
//! deadline (T2 while renewing, expiry while rebinding), at least
//! [`RenewTiming::min_retransmit_ms`] (RFC 2131: 60 s) but never past that deadline.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

use super::{lease_from, Ignored, Lease, REQUESTED};

/// Retransmission floor while renewing or rebinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewTiming {
    /// The shortest wait between two REQUESTs (RFC 2131: 60 s).
    pub min_retransmit_ms: u64,
}

impl Default for RenewTiming {
    fn default() -> RenewTiming {
        RenewTiming {
            min_retransmit_ms: 60_000,
        }
    }
}

/// When a lease must be renewed, rebound, and when it is gone (absolute, the caller's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// T1: start renewing with the granting server.
    pub renew_ms: u64,
    /// T2: start rebinding with any server.
    pub rebind_ms: u64,
    /// The lease ends: the address must go.
    pub expiry_ms: u64,
}

impl LeaseTimes {
    /// The lease's times: T1 and T2 from options 58 and 59 when they are consistent
    /// (T1 < T2 < lease time), else RFC 2131's defaults of 0.5 and 0.875 of the lease time.
    /// `None` for a lease without a lease time or an infinite one (nothing to renew).
    pub fn of(lease: &Lease) -> Option<LeaseTimes> {
        let secs = lease.lease_secs.filter(|&s| s != u32::MAX)?;
        let lease_ms = u64::from(secs) * 1000;
        let (t1, t2) = match (lease.renewal_secs, lease.rebinding_secs) {
            (Some(t1), Some(t2)) if t1 < t2 && t2 < secs => {
                (u64::from(t1) * 1000, u64::from(t2) * 1000)
            }
            (Some(t1), None) if u64::from(t1) * 1000 < lease_ms * 7 / 8 => {
                (u64::from(t1) * 1000, lease_ms * 7 / 8)
            }
            (None, Some(t2)) if lease_ms / 2 < u64::from(t2) * 1000 && t2 < secs => {
                (lease_ms / 2, u64::from(t2) * 1000)
            }
            _ => (lease_ms / 2, lease_ms * 7 / 8),
        };
        let at = |offset: u64| lease.acquired_ms.saturating_add(offset);
        Some(LeaseTimes {
            renew_ms: at(t1),
            rebind_ms: at(t2),
            expiry_ms: at(lease_ms),
        })
    }
}

/// Where a REQUEST goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Unicast to the server that granted the lease (RENEWING).
    Server(Ipv4Addr),
    /// 255.255.255.255 (REBINDING).
    Broadcast,
}

/// A REQUEST to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The encoded DHCP message.
    pub packet: Vec<u8>,
    /// Where to send it (port 67).
    pub to: Destination,
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// No server renewed it before it ended.
    Expired,
    /// A server refused it (DHCPNAK).
    Refused(Ipv4Addr),
}

/// A state change: the caller prints one line for each, and removes the address on
/// [`Change::Lost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// T1 passed: asking the granting server to extend the lease.
    Renewing,
    /// T2 passed without an answer: asking any server.
    Rebinding,
    /// A server extended the lease ([`Keeper::lease`] is the new one).
    Renewed,
    /// The lease is gone; the keeper is finished.
    Lost(Loss),
}

/// The keeper's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepState {
    /// The lease holds; nothing to send before T1.
    Bound,
    /// Between T1 and T2.
    Renewing,
    /// Between T2 and expiry.
    Rebinding,
    /// Expired or refused: the address must go, and a new lease be acquired from scratch.
    Lost,
}

/// What [`Keeper::poll`] asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Poll {
    /// A state change to report (and act on, for a loss).
    pub change: Option<Change>,
    /// A REQUEST to send.
    pub transmit: Option<Transmit>,
}

/// One interface's bound lease, kept.
#[derive(Debug, Clone)]
pub struct Keeper {
    mac: [u8; 6],
    xid: u32,
    lease: Lease,
    times: Option<LeaseTimes>,
    timing: RenewTiming,
    state: KeepState,
    /// When the current round's first REQUEST went out: a granted lease's time starts there.
    round_started_ms: u64,
    next_send_ms: u64,
}

impl Keeper {
    /// Keeps `lease`; `xid` is the transaction id of the first renewal (later rounds count up).
    pub fn new(mac: [u8; 6], xid: u32, lease: Lease, timing: RenewTiming) -> Keeper {
        Keeper {
            mac,
            xid,
            times: LeaseTimes::of(&lease),
            lease,
            timing,
            state: KeepState::Bound,
            round_started_ms: 0,
            next_send_ms: 0,
        }
    }

    /// The lease as last granted.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Its T1, T2 and expiry; `None` for a lease that never ends.
    pub fn times(&self) -> Option<LeaseTimes> {
        self.times
    }

    /// The state.
    pub fn state(&self) -> KeepState {
        self.state
    }

    /// The current REQUEST's transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// Whether replies are expected (a socket is needed only then).
    pub fn is_asking(&self) -> bool {
        matches!(self.state, KeepState::Renewing | KeepState::Rebinding)
    }

    /// When [`Keeper::poll`] has something to do next; `None` once lost or for a lease that
    /// never ends.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        let times = self.times?;
        match self.state {
            KeepState::Bound => Some(times.renew_ms),
            KeepState::Renewing => Some(self.next_send_ms.min(times.rebind_ms)),
            KeepState::Rebinding => Some(self.next_send_ms.min(times.expiry_ms)),
            KeepState::Lost => None,
        }
    }

    /// Moves the timers on to `now_ms`: a state change and a REQUEST, either or both.
    pub fn poll(&mut self, now_ms: u64) -> Poll {
        let mut out = Poll::default();
        let Some(times) = self.times else {
            return out;
        };
        if self.state == KeepState::Lost {
            return out;
        }
        if now_ms >= times.expiry_ms {
            self.state = KeepState::Lost;
            out.change = Some(Change::Lost(Loss::Expired));
            return out;
        }
        let due = if now_ms >= times.rebind_ms {
            KeepState::Rebinding
        } else if now_ms >= times.renew_ms {
            KeepState::Renewing
        } else {
            KeepState::Bound
        };
        if due != self.state && due != KeepState::Bound {
            if self.state == KeepState::Bound {
                self.round_started_ms = now_ms;
                self.xid = self.xid.wrapping_add(1);
            }
            self.state = due;
            self.next_send_ms = now_ms;
            out.change = Some(match due {
                KeepState::Rebinding => Change::Rebinding,
                _ => Change::Renewing,
            });
        }
        if self.is_asking() && now_ms >= self.next_send_ms {
            let (deadline, to) = match self.state {
                KeepState::Renewing => (times.rebind_ms, Destination::Server(self.lease.server)),
                _ => (times.expiry_ms, Destination::Broadcast),
            };
            let wait = (deadline.saturating_sub(now_ms) / 2).max(self.timing.min_retransmit_ms);
            self.next_send_ms = now_ms.saturating_add(wait).min(deadline);
            if let Ok(packet) = self.request(now_ms).to_vec() {
                out.transmit = Some(Transmit { packet, to });
            }
        }
        out
    }

    /// A REQUEST for our address: `ciaddr` set, no requested-address or server-identifier
    /// option (RFC 2131 table 5, RENEWING and REBINDING).
    fn request(&self, now_ms: u64) -> Message {
        let unspecified = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(
            self.xid,
            self.lease.address,
            unspecified,
            unspecified,
            unspecified,
            &self.mac,
        );
        let secs = now_ms.saturating_sub(self.round_started_ms) / 1000;
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_secs(u16::try_from(secs).unwrap_or(u16::MAX));
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(MessageType::Request));
        opts.insert(DhcpOption::ParameterRequestList(REQUESTED.to_vec()));
        opts.insert(DhcpOption::MaxMessageSize(1500));
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.mac);
        opts.insert(DhcpOption::ClientIdentifier(client_id));
        m
    }

    /// Feeds one received packet: an ACK for our address renews, a NAK loses the lease.
    pub fn handle(&mut self, packet: &[u8]) -> Result<Change, Ignored> {
        if !self.is_asking() {
            return Err(Ignored::Finished);
        }
        let msg = Message::decode(&mut Decoder::new(packet)).map_err(|_| Ignored::Malformed)?;
        if msg.opcode() != Opcode::BootReply {
            return Err(Ignored::NotAReply);
        }
        if msg.xid() != self.xid {
            return Err(Ignored::WrongXid);
        }
        if msg.chaddr().get(..6) != Some(&self.mac[..]) {
            return Err(Ignored::WrongChaddr);
        }
        let server = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        };
        // While renewing only the granting server was asked; while rebinding, any may answer.
        if self.state == KeepState::Renewing && server.is_some_and(|s| s != self.lease.server) {
            return Err(Ignored::Unexpected);
        }
        match msg.opts().msg_type() {
            Some(MessageType::Ack) => {
                if msg.yiaddr() != self.lease.address {
                    return Err(Ignored::Unexpected);
                }
                let server = server.unwrap_or(self.lease.server);
                let lease = lease_from(&msg, self.lease.address, server, self.round_started_ms);
                self.times = LeaseTimes::of(&lease);
                self.lease = lease;
                self.state = KeepState::Bound;
                Ok(Change::Renewed)
            }
            Some(MessageType::Nak) => {
                self.state = KeepState::Lost;
                Ok(Change::Lost(Loss::Refused(
                    server.unwrap_or(self.lease.server),
                )))
            }
            _ => Err(Ignored::Unexpected),
        }
    }
}

#[cfg(test)]
mod tests;

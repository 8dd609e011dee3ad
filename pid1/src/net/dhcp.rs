//! The DHCPv4 client state machine (RFC 2131, INIT → SELECTING → REQUESTING → BOUND), pure;
//! [`renew`] keeps a bound lease (RENEWING at T1, REBINDING at T2, lost at expiry or NAK).
//!
//! No sockets and no clock: the caller passes the current time in milliseconds and the bytes
//! it received, and sends the bytes [`Client::poll_transmit`] returns (to 255.255.255.255:67).
//! Retransmissions back off exponentially from [`Timing::initial_ms`] up to
//! [`Timing::max_interval_ms`] (without RFC 2131's ±1 s jitter: one node, one server, and
//! deterministic tests), and the whole exchange is bounded by [`Timing::total_ms`]. Message
//! encoding is `dhcproto`'s.
//!
//! Lease renewal is [`renew::Keeper`]'s: it starts from the [`Lease`] this exchange yields.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};

pub mod renew;

/// Why the exchange failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DhcpError {
    /// No lease within the time bound.
    #[error("no lease after {0} ms")]
    TimedOut(u64),
    /// A request could not be encoded (a bug, not a network condition).
    #[error("encode request: {0}")]
    Encode(String),
}

/// Why a received packet was not used. Ignoring is normal on a shared segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// Not a DHCP message.
    Malformed,
    /// A request (another client's), not a reply.
    NotAReply,
    /// Another exchange's transaction id.
    WrongXid,
    /// Addressed to another hardware address.
    WrongChaddr,
    /// A message type this state does not expect.
    Unexpected,
    /// An offer or ack without a usable address or server identifier.
    Incomplete,
    /// The client has finished (bound or failed).
    Finished,
}

/// What a received packet did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// An offer was taken; a REQUEST is due now.
    Offered(Ipv4Addr),
    /// The server acknowledged: bound.
    Bound(Lease),
    /// The server refused the request: back to DISCOVER.
    Nak,
}

/// Retransmission and overall timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// First retransmission interval.
    pub initial_ms: u64,
    /// Largest retransmission interval.
    pub max_interval_ms: u64,
    /// REQUESTs sent for one offer before starting over with DISCOVER.
    pub max_requests: u32,
    /// Bound on the whole exchange.
    pub total_ms: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            initial_ms: 1_000,
            max_interval_ms: 8_000,
            max_requests: 3,
            total_ms: 20_000,
        }
    }
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask.
    pub prefix_len: u8,
    /// First router, for the default route.
    pub router: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// DNS domain name.
    pub domain: Option<String>,
    /// The server that granted it.
    pub server: Ipv4Addr,
    /// Lease time in seconds (`None` = not given; `u32::MAX` = infinite).
    pub lease_secs: Option<u32>,
    /// Renewal time T1 in seconds (option 58), if the server sent one.
    pub renewal_secs: Option<u32>,
    /// Rebinding time T2 in seconds (option 59), if the server sent one.
    pub rebinding_secs: Option<u32>,
    /// When it was granted (the caller's clock, ms).
    pub acquired_ms: u64,
}

impl Lease {
    /// The directed broadcast address of the leased subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        let mask = prefix_mask(self.prefix_len);
        Ipv4Addr::from(u32::from(self.address) | !mask)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    address: Ipv4Addr,
    server: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Selecting,
    Requesting { offer: Offer, sent: u32 },
    Bound(Lease),
    Failed(DhcpError),
}

/// One interface's DHCP exchange.
#[derive(Debug, Clone)]
pub struct Client {
    mac: [u8; 6],
    xid: u32,
    timing: Timing,
    started_ms: u64,
    state: State,
    next_send_ms: u64,
    interval_ms: u64,
}

/// Options we ask the server for.
pub(crate) const REQUESTED: [OptionCode; 7] = [
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::DomainName,
    OptionCode::AddressLeaseTime,
    OptionCode::Renewal,
    OptionCode::Rebinding,
];

impl Client {
    /// Starts an exchange at `now_ms`; the first DISCOVER is due immediately.
    pub fn new(mac: [u8; 6], xid: u32, now_ms: u64, timing: Timing) -> Client {
        Client {
            mac,
            xid,
            timing,
            started_ms: now_ms,
            state: State::Selecting,
            next_send_ms: now_ms,
            interval_ms: timing.initial_ms,
        }
    }

    /// The transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The lease, once bound.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound(lease) => Some(lease),
            _ => None,
        }
    }

    /// The failure, once failed.
    pub fn failure(&self) -> Option<&DhcpError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Bound or failed: nothing more to send or receive.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Bound(_) | State::Failed(_))
    }

    /// When the caller should call [`Client::poll_transmit`] again, if ever.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if self.is_finished() {
            return None;
        }
        Some(self.next_send_ms.min(self.deadline_ms()))
    }

    fn deadline_ms(&self) -> u64 {
        self.started_ms.saturating_add(self.timing.total_ms)
    }

    /// The packet to send now, if one is due. Also moves to failed once the time bound passes.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if self.is_finished() {
            return None;
        }
        if now_ms >= self.deadline_ms() {
            self.state = State::Failed(DhcpError::TimedOut(self.timing.total_ms));
            return None;
        }
        if now_ms < self.next_send_ms {
            return None;
        }
        let message = match &mut self.state {
            State::Requesting { sent, .. } if *sent >= self.timing.max_requests => {
                // The server went quiet on our REQUEST: start over.
                self.state = State::Selecting;
                self.interval_ms = self.timing.initial_ms;
                self.discover(now_ms)
            }
            State::Requesting { offer, sent } => {
                *sent += 1;
                let offer = offer.clone();
                self.request(&offer, now_ms)
            }
            State::Selecting => self.discover(now_ms),
            State::Bound(_) | State::Failed(_) => return None,
        };
        self.next_send_ms = now_ms.saturating_add(self.interval_ms);
        self.interval_ms = self
            .interval_ms
            .saturating_mul(2)
            .min(self.timing.max_interval_ms);
        match message.to_vec() {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.state = State::Failed(DhcpError::Encode(e.to_string()));
                None
            }
        }
    }

    fn base_message(&self, kind: MessageType, now_ms: u64) -> Message {
        // new_with_id asserts chaddr <= 16 bytes (ours is 6); it draws a throwaway random xid
        // through `rand` first, which can only fail if getrandom(2) does.
        let mut m = Message::new_with_id(
            self.xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &self.mac,
        );
        let secs = now_ms.saturating_sub(self.started_ms) / 1000;
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_flags(Flags::default().set_broadcast())
            .set_secs(u16::try_from(secs).unwrap_or(u16::MAX));
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ParameterRequestList(REQUESTED.to_vec()));
        opts.insert(DhcpOption::MaxMessageSize(1500));
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.mac);
        opts.insert(DhcpOption::ClientIdentifier(client_id));
        m
    }

    fn discover(&self, now_ms: u64) -> Message {
        self.base_message(MessageType::Discover, now_ms)
    }

    fn request(&self, offer: &Offer, now_ms: u64) -> Message {
        let mut m = self.base_message(MessageType::Request, now_ms);
        let opts = m.opts_mut();
        opts.insert(DhcpOption::RequestedIpAddress(offer.address));
        opts.insert(DhcpOption::ServerIdentifier(offer.server));
        m
    }

    /// Feeds one received packet.
    pub fn handle(&mut self, packet: &[u8], now_ms: u64) -> Result<Handled, Ignored> {
        if self.is_finished() {
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
        match (&self.state, msg.opts().msg_type()) {
            (State::Selecting, Some(MessageType::Offer)) => {
                let address = msg.yiaddr();
                let (Some(server), false) = (server, address.is_unspecified()) else {
                    return Err(Ignored::Incomplete);
                };
                self.state = State::Requesting {
                    offer: Offer { address, server },
                    sent: 0,
                };
                self.next_send_ms = now_ms;
                self.interval_ms = self.timing.initial_ms;
                Ok(Handled::Offered(address))
            }
            (State::Requesting { offer, .. }, Some(MessageType::Ack)) => {
                if server.is_some_and(|s| s != offer.server) {
                    return Err(Ignored::Unexpected);
                }
                let address = msg.yiaddr();
                if address.is_unspecified() {
                    return Err(Ignored::Incomplete);
                }
                let lease = lease_from(&msg, address, offer.server, now_ms);
                self.state = State::Bound(lease.clone());
                Ok(Handled::Bound(lease))
            }
            (State::Requesting { offer, .. }, Some(MessageType::Nak)) => {
                if server.is_some_and(|s| s != offer.server) {
                    return Err(Ignored::Unexpected);
                }
                self.state = State::Selecting;
                self.interval_ms = self.timing.initial_ms;
                self.next_send_ms = now_ms.saturating_add(self.timing.initial_ms);
                Ok(Handled::Nak)
            }
            _ => Err(Ignored::Unexpected),
        }
    }
}

/// The lease an ACK grants (`now_ms`: when the lease time starts).
pub(crate) fn lease_from(msg: &Message, address: Ipv4Addr, server: Ipv4Addr, now_ms: u64) -> Lease {
    let opts = msg.opts();
    let prefix_len = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => mask_to_prefix(*mask),
        _ => None,
    }
    .unwrap_or_else(|| classful_prefix(address));
    let router = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(routers)) => routers.iter().copied().find(|r| !r.is_unspecified()),
        _ => None,
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(servers)) => servers.clone(),
        _ => Vec::new(),
    };
    let domain = match opts.get(OptionCode::DomainName) {
        Some(DhcpOption::DomainName(name)) => Some(name.clone()).filter(|n| is_plain_word(n)),
        _ => None,
    };
    let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(secs)) => Some(*secs),
        _ => None,
    };
    let renewal_secs = match opts.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(secs)) => Some(*secs),
        _ => None,
    };
    let rebinding_secs = match opts.get(OptionCode::Rebinding) {
        Some(DhcpOption::Rebinding(secs)) => Some(*secs),
        _ => None,
    };
    Lease {
        address,
        prefix_len,
        router,
        dns,
        domain,
        server,
        lease_secs,
        renewal_secs,
        rebinding_secs,
        acquired_ms: now_ms,
    }
}

/// A domain name goes into resolv.conf: only accept a plain hostname-like word.
fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Prefix length of a contiguous netmask; `None` for a non-contiguous one.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then(|| u8::try_from(ones).unwrap_or(32))
}

fn prefix_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix_len)))
        .unwrap_or(0)
}

/// The pre-CIDR default when a server sends no subnet mask (RFC 2131 leaves it to the client).
fn classful_prefix(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests;

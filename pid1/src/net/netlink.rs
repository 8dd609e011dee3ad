//! A synchronous rtnetlink request/response channel.
//!
//! One request at a time: send with a fresh sequence number, read until the kernel's ACK
//! (`NLMSG_ERROR` with code 0), its error, or `NLMSG_DONE` for dumps. A receive timeout bounds
//! every wait, so a confused kernel cannot hang PID 1.

use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;
use nix::sys::socket::sockopt::ReceiveTimeout;
use nix::sys::time::TimeVal;

/// How long one receive may wait.
const RECV_TIMEOUT: Duration = Duration::from_secs(3);
/// Receive buffer; the kernel sends dumps in chunks well below this.
const RECV_BUFFER: usize = 64 * 1024;

/// Why a netlink exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened or set up.
    #[error("open rtnetlink socket")]
    Open(#[source] std::io::Error),
    /// Setting the receive timeout failed.
    #[error("set rtnetlink receive timeout")]
    Timeout(#[source] Errno),
    /// send(2) failed.
    #[error("send rtnetlink request")]
    Send(#[source] std::io::Error),
    /// recv(2) failed or timed out.
    #[error("receive rtnetlink reply")]
    Recv(#[source] std::io::Error),
    /// The kernel's reply could not be decoded.
    #[error("decode rtnetlink reply: {0}")]
    Decode(String),
    /// The kernel refused the request.
    #[error("kernel refused the request")]
    Kernel(#[source] Errno),
}

/// An open NETLINK_ROUTE socket. Dropping it closes the socket.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// Opens and binds the socket.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Open)?;
        let timeout = TimeVal::new(i64::try_from(RECV_TIMEOUT.as_secs()).unwrap_or(3), 0);
        nix::sys::socket::setsockopt(&socket, ReceiveTimeout, &timeout)
            .map_err(NetlinkError::Timeout)?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// Sends a request that the kernel acknowledges (`flags` adds e.g. `NLM_F_CREATE`).
    pub fn execute(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_ACK | flags)
            .map(|_| ())
    }

    /// Sends a dump request and returns every message of the reply.
    pub fn dump(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    /// Sends one request and collects the replies until the ACK (code 0), an error, or
    /// `NLMSG_DONE` for dumps.
    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = flags;
        packet.header.sequence_number = sequence;
        packet.finalize();
        // serialize() panics on a short buffer; this one is exactly buffer_len() long.
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0).map_err(NetlinkError::Send)?;

        let mut replies = Vec::new();
        let mut buffer = vec![0u8; RECV_BUFFER];
        loop {
            let size = self
                .socket
                .recv(&mut &mut buffer[..], 0)
                .map_err(NetlinkError::Recv)?;
            let mut data = buffer.get(..size).unwrap_or_default();
            while !data.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data)
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let length = usize::try_from(reply.header.length).unwrap_or(0);
                // Messages are 4-byte aligned within a datagram.
                let advance = length.next_multiple_of(4);
                data = if length == 0 {
                    &[]
                } else {
                    data.get(advance..).unwrap_or_default()
                };
                if reply.header.sequence_number != sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies),
                        Some(code) => {
                            return Err(NetlinkError::Kernel(Errno::from_raw(-code.get())));
                        }
                    },
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}

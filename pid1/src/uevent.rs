//! Kernel uevents: the `NETLINK_KOBJECT_UEVENT` messages the kernel multicasts when a device
//! is added, bound, changed or removed. There is no udev; coldplug listens itself, so a device
//! a driver creates (virtio_pci creating the virtio-net device) is matched as soon as it exists
//! instead of by re-walking `/sys`.
//!
//! A kernel message is one datagram: `action@devpath\0` followed by `KEY=value\0` fields
//! (`ACTION`, `DEVPATH`, `SUBSYSTEM`, `SEQNUM`, and for devices on a bus `MODALIAS`). The kernel
//! limits one to `UEVENT_BUFFER_SIZE` (2048) bytes of fields. [`parse`] is a pure, bounded
//! decoder of those bytes; [`UeventSocket`] is the thin I/O edge. Messages a udev daemon
//! re-broadcasts (`libudev\0` magic, group 2) are not the kernel's and are refused.
//!
//! Written here rather than taken from a crate: the uevent crates on crates.io wrap an async
//! runtime or a full udev database, and the format is a dozen lines to decode.

use std::os::fd::AsFd;
use std::time::Duration;

use netlink_sys::protocols::NETLINK_KOBJECT_UEVENT;
use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Longest message accepted (the kernel's are at most ~2 KiB plus the header line).
pub const MAX_MESSAGE: usize = 8192;
/// Most fields in one message (the kernel allows 64 environment entries).
pub const MAX_FIELDS: usize = 128;
/// The kernel's multicast group for uevents.
const KERNEL_GROUP: u32 = 1;
/// Receive buffer asked for, so a burst of events while a slow module loads is not dropped.
const RECV_BUFFER: usize = 4 * 1024 * 1024;

/// What the kernel did to a device (`ACTION=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A device was registered.
    Add,
    /// A device went away.
    Remove,
    /// Anything else (`change`, `bind`, `unbind`, `move`, `online`, `offline`).
    Other,
}

/// The fields of one uevent that init uses, borrowed from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent<'a> {
    /// What happened.
    pub action: Action,
    /// The device's path below `/sys`.
    pub devpath: &'a str,
    /// `SUBSYSTEM=` (bus or class), if present.
    pub subsystem: Option<&'a str>,
    /// `MODALIAS=`, present for devices a driver can be matched to.
    pub modalias: Option<&'a str>,
    /// `INTERFACE=`, present for network interfaces.
    pub interface: Option<&'a str>,
}

/// Why a message is not a kernel uevent init can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is too long")]
    TooLong(usize),
    /// A udev daemon's re-broadcast, not the kernel's message.
    #[error("udev daemon message")]
    Libudev,
    /// The first field is not `action@devpath`.
    #[error("no action@devpath header")]
    Header,
    /// A field is not UTF-8.
    #[error("field {0} is not UTF-8")]
    NotUtf8(usize),
    /// More than [`MAX_FIELDS`] fields.
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    /// `ACTION=` or `DEVPATH=` disagrees with the header.
    #[error("fields disagree with the header")]
    Mismatch,
}

/// Decodes one kernel uevent datagram. Never panics; unknown fields are ignored.
pub fn parse(bytes: &[u8]) -> Result<Uevent<'_>, ParseError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ParseError::TooLong(bytes.len()));
    }
    if bytes.starts_with(b"libudev\0") {
        return Err(ParseError::Libudev);
    }
    // A trailing NUL ends the last field rather than starting an empty one.
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    let mut fields = bytes.split(|&b| b == 0);
    let header = fields.next().ok_or(ParseError::Header)?;
    let header = std::str::from_utf8(header).map_err(|_| ParseError::NotUtf8(0))?;
    let (action_word, devpath) = header.split_once('@').ok_or(ParseError::Header)?;
    if action_word.is_empty() || !devpath.starts_with('/') {
        return Err(ParseError::Header);
    }
    let mut event = Uevent {
        action: action(action_word),
        devpath,
        subsystem: None,
        modalias: None,
        interface: None,
    };
    for (number, field) in fields.enumerate() {
        if number >= MAX_FIELDS {
            return Err(ParseError::TooManyFields);
        }
        let field = std::str::from_utf8(field).map_err(|_| ParseError::NotUtf8(number + 1))?;
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "ACTION" if value != action_word => return Err(ParseError::Mismatch),
            "DEVPATH" if value != devpath => return Err(ParseError::Mismatch),
            "SUBSYSTEM" => event.subsystem = Some(value),
            "MODALIAS" if !value.is_empty() => event.modalias = Some(value),
            "INTERFACE" if !value.is_empty() => event.interface = Some(value),
            _ => {}
        }
    }
    Ok(event)
}

fn action(word: &str) -> Action {
    match word {
        "add" => Action::Add,
        "remove" => Action::Remove,
        _ => Action::Other,
    }
}

/// Why the uevent socket failed.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// socket(2) or bind(2) to the kernel's group failed.
    #[error("open uevent socket")]
    Open(#[source] std::io::Error),
    /// poll(2) failed.
    #[error("poll uevent socket")]
    Poll(#[source] Errno),
    /// The kernel dropped events because the buffer was full (`ENOBUFS`).
    #[error("uevents were dropped")]
    Overrun,
    /// recv(2) failed otherwise.
    #[error("receive uevent")]
    Recv(#[source] std::io::Error),
}

/// A non-blocking socket subscribed to the kernel's uevents. Dropping it closes it.
#[derive(Debug)]
pub struct UeventSocket {
    socket: Socket,
    buffer: Vec<u8>,
}

impl UeventSocket {
    /// Opens the socket and joins the kernel's group: events from then on are queued.
    pub fn open() -> Result<UeventSocket, SocketError> {
        let mut socket = Socket::new(NETLINK_KOBJECT_UEVENT).map_err(SocketError::Open)?;
        // SO_RCVBUFFORCE (PID 1 has CAP_NET_ADMIN) passes rmem_max; if refused, the default
        // buffer still holds dozens of events, and an overrun falls back to a rescan.
        let size = RECV_BUFFER;
        if let Err(e) = nix::sys::socket::setsockopt(
            &socket.as_fd(),
            nix::sys::socket::sockopt::RcvBufForce,
            &size,
        ) {
            crate::debug!("uevent: SO_RCVBUFFORCE: {e}");
        }
        socket
            .bind(&SocketAddr::new(0, KERNEL_GROUP))
            .map_err(SocketError::Open)?;
        socket.set_non_blocking(true).map_err(SocketError::Open)?;
        Ok(UeventSocket {
            socket,
            buffer: vec![0u8; MAX_MESSAGE + 1],
        })
    }

    /// Waits up to `timeout` for the next datagram from the kernel; `None` if none came.
    /// Datagrams from user space senders are skipped.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<&[u8]>, SocketError> {
        let mut waited = false;
        loop {
            match self
                .socket
                .recv_from(&mut &mut self.buffer[..], nix::libc::MSG_TRUNC)
            {
                Ok((size, from)) => {
                    if from.port_number() != 0 {
                        continue;
                    }
                    // With MSG_TRUNC the size is the datagram's; one longer than the buffer
                    // is handed on cut, and parse() refuses it as too long.
                    let size = size.min(self.buffer.len());
                    return Ok(self.buffer.get(..size));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                    return Err(SocketError::Overrun)
                }
                Err(e) => return Err(SocketError::Recv(e)),
            }
            if waited || timeout.is_zero() {
                return Ok(None);
            }
            waited = true;
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            let millis = u32::try_from(timeout.as_millis().max(1)).unwrap_or(u32::MAX);
            match poll(
                &mut fds,
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(0) => return Ok(None),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(SocketError::Poll(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel sends it: the virtio-net device virtio_pci registers
    /// (fields as in Linux 6.1's `kobject_uevent_env`, SEQNUM from a real boot).
    const VIRTIO_ADD: &[u8] = b"add@/devices/pci0000:00/0000:00:02.0/virtio0\0\
        ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio0\0SUBSYSTEM=virtio\0\
        MODALIAS=virtio:d00000001v00001AF4\0SEQNUM=1327\0";

    #[test]
    fn decodes_a_device_add() {
        let event = parse(VIRTIO_ADD).unwrap();
        assert_eq!(
            event,
            Uevent {
                action: Action::Add,
                devpath: "/devices/pci0000:00/0000:00:02.0/virtio0",
                subsystem: Some("virtio"),
                modalias: Some("virtio:d00000001v00001AF4"),
                interface: None,
            }
        );
    }

    #[test]
    fn decodes_a_network_interface_without_modalias() {
        let message = b"add@/devices/pci0000:00/0000:00:02.0/virtio0/net/eth0\0ACTION=add\0\
            DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio0/net/eth0\0SUBSYSTEM=net\0\
            INTERFACE=eth0\0IFINDEX=2\0SEQNUM=1328";
        let event = parse(message).unwrap();
        assert_eq!(event.action, Action::Add);
        assert_eq!(event.subsystem, Some("net"));
        assert_eq!(event.interface, Some("eth0"));
        assert_eq!(event.modalias, None);
    }

    #[test]
    fn other_actions_are_told_apart() {
        let bind = b"bind@/devices/platform/i8042\0ACTION=bind\0DEVPATH=/devices/platform/i8042\0\
            SUBSYSTEM=platform\0DRIVER=i8042\0MODALIAS=platform:i8042\0SEQNUM=9\0";
        assert_eq!(parse(bind).unwrap().action, Action::Other);
        let remove = b"remove@/devices/virtual/net/tap0\0ACTION=remove\0";
        assert_eq!(parse(remove).unwrap().action, Action::Remove);
    }

    #[test]
    fn refuses_udev_messages_and_bad_headers() {
        assert_eq!(
            parse(b"libudev\0\xfe\xed\xca\xfe\x28\0\0\0"),
            Err(ParseError::Libudev)
        );
        assert_eq!(parse(b""), Err(ParseError::Header));
        assert_eq!(parse(b"add\0ACTION=add\0"), Err(ParseError::Header));
        assert_eq!(parse(b"@/devices/x\0"), Err(ParseError::Header));
        assert_eq!(parse(b"add@devices/x\0"), Err(ParseError::Header));
        assert_eq!(parse(b"add@/devices/\xff\0"), Err(ParseError::NotUtf8(0)));
        assert_eq!(
            parse(b"add@/devices/x\0MODALIAS=\xc3\0"),
            Err(ParseError::NotUtf8(1))
        );
    }

    #[test]
    fn fields_must_agree_with_the_header() {
        assert_eq!(
            parse(b"add@/devices/x\0ACTION=remove\0"),
            Err(ParseError::Mismatch)
        );
        assert_eq!(
            parse(b"add@/devices/x\0DEVPATH=/devices/y\0"),
            Err(ParseError::Mismatch)
        );
    }

    #[test]
    fn sizes_are_bounded() {
        let mut long = b"add@/devices/x\0MODALIAS=".to_vec();
        long.resize(MAX_MESSAGE + 1, b'a');
        assert_eq!(parse(&long), Err(ParseError::TooLong(MAX_MESSAGE + 1)));
        let mut many = b"add@/devices/x\0".to_vec();
        for _ in 0..=MAX_FIELDS {
            many.extend_from_slice(b"K=v\0");
        }
        assert_eq!(parse(&many), Err(ParseError::TooManyFields));
    }

    #[test]
    fn empty_and_valueless_fields_are_ignored() {
        let event =
            parse(b"add@/devices/x\0\0JUNK\0MODALIAS=\0SUBSYSTEM=acpi\0MODALIAS=acpi:PNP0C0C:\0")
                .unwrap();
        assert_eq!(event.subsystem, Some("acpi"));
        assert_eq!(event.modalias, Some("acpi:PNP0C0C:"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic sweep of mutations of a real message.
        let mut state = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut bytes = VIRTIO_ADD.to_vec();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = usize::try_from(state).unwrap_or(0) % bytes.len();
                bytes[at] = u8::try_from(state >> 24).unwrap_or(0);
            }
            let cut = usize::try_from(state).unwrap_or(0) % (bytes.len() + 1);
            let _ = parse(&bytes[..cut]);
        }
    }
}

//! Host sockets: non-blocking connects and a zero-timeout poll(2).
//!
//! std has no non-blocking connect, so the sockets are made with libc and handed to std's
//! `TcpStream`/`UdpSocket` at once; everything after that is std. Written here (a few lines)
//! rather than pulling in socket2 for three calls. No function here binds or listens.

use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A non-blocking TCP socket whose connect to `addr` is under way (or already done).
/// Completion shows as POLLOUT; the outcome is then `TcpStream::take_error`.
pub(crate) fn connect_tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket(addr, libc::SOCK_STREAM)?;
    connect(&fd, addr)?;
    let stream = TcpStream::from(fd);
    // The guest's TCP already coalesced what it sent; do not add Nagle delay on top.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A non-blocking UDP socket connected to `addr`: the kernel picks the local port at connect
/// time and delivers only datagrams from `addr`.
pub(crate) fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let fd = socket(addr, libc::SOCK_DGRAM)?;
    connect(&fd, addr)?;
    Ok(UdpSocket::from(fd))
}

/// Makes closing `stream` send an RST instead of a FIN (SO_LINGER with a zero timeout), to
/// pass a guest's reset on to the host peer.
pub(crate) fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open (owned by `stream`), and the option value points to a live
    // `linger` of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            socklen::<libc::linger>(),
        )
    };
    if rc != 0 {
        log::debug!("usernet: SO_LINGER: {}", io::Error::last_os_error());
    }
}

/// poll(2) with a zero timeout: fills every `revents`, never blocks.
pub(crate) fn poll_now(fds: &mut [libc::pollfd]) -> io::Result<()> {
    if fds.is_empty() {
        return Ok(());
    }
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of `n` pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, 0) };
        if rc >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn socket(addr: SocketAddr, kind: libc::c_int) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// connect(2); EINPROGRESS (the non-blocking case) counts as success.
fn connect(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let rc = match addr {
        SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: family(libc::AF_INET),
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: the fd is open; `sa` is a live sockaddr_in of the length passed.
            unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    socklen::<libc::sockaddr_in>(),
                )
            }
        }
        SocketAddr::V6(a) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: family(libc::AF_INET6),
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: the fd is open; `sa` is a live sockaddr_in6 of the length passed.
            unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    socklen::<libc::sockaddr_in6>(),
                )
            }
        }
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(())
    } else {
        Err(err)
    }
}

fn socklen<T>() -> libc::socklen_t {
    // The socket structs are a few dozen bytes; the conversion cannot fail.
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

fn family(af: libc::c_int) -> libc::sa_family_t {
    // AF_INET and AF_INET6 are small constants; the conversion cannot fail.
    libc::sa_family_t::try_from(af).unwrap_or(0)
}

//! A guest for the tests: a smoltcp interface of its own (10.200.0.2, default route via the
//! gateway) wired to a `UserNet` through two frame queues, and a driver loop that waits on
//! `UserNet::poll_fds` / `poll_timeout` the way the VMM thread does.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use usernet::{config, UserNet, UserNetConfig};

/// The guest's end of the link.
#[derive(Default)]
pub struct Wire {
    /// Frames for the guest.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames the guest sent.
    pub tx: VecDeque<Vec<u8>>,
}

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// The gateway and a smoltcp guest, wired together.
pub struct Net {
    pub net: UserNet,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub wire: Wire,
    epoch: Instant,
    next_port: u16,
}

/// The test configuration: loopback allowed so that tests reach listeners on 127.0.0.1.
pub fn test_config() -> UserNetConfig {
    UserNetConfig {
        allow_loopback: true,
        ..UserNetConfig::default()
    }
}

impl Net {
    pub fn new(cfg: UserNetConfig) -> Net {
        let mut wire = Wire::default();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(EthernetAddress(
                config::GUEST_MAC,
            ))),
            &mut wire,
            smoltcp::time::Instant::from_micros(0),
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(config::GUEST_IP), 24))
                .unwrap();
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(config::GATEWAY_IP)
            .unwrap();
        Net {
            net: UserNet::new(cfg).unwrap(),
            iface,
            sockets: SocketSet::new(Vec::new()),
            wire,
            epoch: Instant::now(),
            next_port: 40000,
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(
            i64::try_from(self.epoch.elapsed().as_micros()).unwrap(),
        )
    }

    /// One round of the VMM loop, without waiting.
    pub fn step(&mut self) {
        let now = self.now();
        self.iface.poll(now, &mut self.wire, &mut self.sockets);
        while let Some(frame) = self.wire.tx.pop_front() {
            self.net.guest_frame(&frame);
        }
        self.net.poll();
        let mut moved = false;
        while let Some(frame) = self.net.take_guest_frame() {
            self.wire.rx.push_back(frame);
            moved = true;
        }
        if moved {
            self.net.poll();
            while let Some(frame) = self.net.take_guest_frame() {
                self.wire.rx.push_back(frame);
            }
        }
        let now = self.now();
        self.iface.poll(now, &mut self.wire, &mut self.sockets);
    }

    /// Waits as the VMM would: poll(2) on the usernet fds, up to its timeout (and the
    /// guest's, and at most 20 ms).
    pub fn wait(&mut self) {
        if !self.wire.tx.is_empty() || !self.wire.rx.is_empty() || self.net.has_guest_frames() {
            return;
        }
        let mut fds = Vec::new();
        self.net.poll_fds(&mut fds);
        let now = self.now();
        let mut timeout = Duration::from_millis(20);
        if let Some(t) = self.net.poll_timeout() {
            timeout = timeout.min(t);
        }
        if let Some(t) = self.iface.poll_delay(now, &self.sockets) {
            timeout = timeout.min(t.into());
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap();
        // SAFETY: a valid slice of pollfd.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                libc::nfds_t::try_from(fds.len()).unwrap(),
                ms,
            )
        };
    }

    /// Steps until `cond` holds; panics after `secs` seconds.
    pub fn run_until(&mut self, secs: u64, what: &str, mut cond: impl FnMut(&mut Net) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.step();
            if cond(self) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.wait();
        }
    }

    /// Steps for a while, for the "nothing happens" cases.
    pub fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.step();
            self.wait();
        }
    }

    /// A guest TCP socket connecting to `ip:port`.
    pub fn connect(&mut self, ip: Ipv4Address, port: u16, buffer: usize) -> SocketHandle {
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        self.next_port += 1;
        sock.connect(
            self.iface.context(),
            (IpAddress::Ipv4(ip), port),
            self.next_port,
        )
        .unwrap();
        self.sockets.add(sock)
    }

    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    pub fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(h)
    }
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2654435761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// setsockopt(2) with a plain value, for tests.
pub fn setsockopt<T>(
    fd: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: T,
) {
    // SAFETY: a live fd, and a pointer to a live value of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&raw const value).cast(),
            libc::socklen_t::try_from(size_of::<T>()).unwrap(),
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

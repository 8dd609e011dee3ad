//! Device tests of the network `vmm --net` gives a guest, driven from the guest's side.
//!
//! The device stack is the one `builder` builds: `MmioTransport<VirtioNet<UserNetBackend>>` on
//! the vmm's MMIO bus at the first virtio-mmio slot, with the vmm's own [`NetThread`] running
//! `usernet` behind it. The guest is virtio-devices' test driver
//! ([`virtio_devices::test_utils::driver`]), which plays Linux's `virtio_mmio` and `virtio_net`
//! drivers; here every one of its register accesses goes through the vmm's bus, and its
//! interrupt line records, each time it fires, how far the device had used each ring, so the
//! tests can check that no used buffer goes unsignalled.
//!
//! The guest network is the static configuration micro-VMs use (no DHCP): 10.200.0.2/24 with
//! gateway 10.200.0.1. TCP goes to a real listener on 127.0.0.1, which the proxy refuses by
//! default; the tests allow it with `UserNetConfig::allow_loopback`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpOperation, ArpRepr, EthernetAddress, HardwareAddress, IpAddress, IpCidr, TcpControl,
    TcpSeqNumber,
};
use usernet::{config, UserNet, UserNetConfig};
use virtio_devices::test_utils::driver::{GuestBus, NetDriver, RecordingLine, RX_BUFFERS, TIMEOUT};
use virtio_devices::test_utils::frames::{parse_arp, parse_tcp, Link};
use virtio_devices::test_utils::memory as guest_memory;
use virtio_devices::{MmioTransport, VirtioNet};
use vmm::builder::virtio_slots;
use vmm::devices::bus::{Bus, WriteOutcome};
use vmm::devices::virtio::{NetThread, SharedNet, UserNetBackend};
use vmm::seccomp::{SeccompMode, StartGate, ThreadFilters};
use vmm_sys_util::eventfd::EventFd;

/// Longest sleep of the smoltcp guest without an interrupt or a timer of its own.
const MAX_IDLE: Duration = Duration::from_millis(20);

const GUEST_MAC: EthernetAddress = EthernetAddress(config::GUEST_MAC);
const GATEWAY_MAC: EthernetAddress = EthernetAddress(config::GATEWAY_MAC);
/// The micro-VM's static link.
const LINK: Link = Link {
    guest_mac: GUEST_MAC,
    guest_ip: config::GUEST_IP,
    gateway_mac: GATEWAY_MAC,
};

fn lock(net: &SharedNet) -> MutexGuard<'_, MmioTransport<VirtioNet<UserNetBackend>>> {
    net.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The device's window on the vmm's MMIO bus.
struct VmmBus {
    bus: Bus,
    base: u64,
    net: SharedNet,
}

impl GuestBus for VmmBus {
    type Guard<'a> = MutexGuard<'a, MmioTransport<VirtioNet<UserNetBackend>>>;

    fn read(&self, offset: u64, data: &mut [u8]) {
        assert!(
            self.bus.read(self.base + offset, data),
            "register {offset:#x} is on the bus"
        );
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let outcome = self.bus.write(self.base + offset, data);
        assert_eq!(
            outcome,
            WriteOutcome::Handled(None),
            "write register {offset:#x}"
        );
    }

    fn hold(&self) -> Self::Guard<'_> {
        lock(&self.net)
    }

    fn is_activated(&self) -> bool {
        lock(&self.net).is_activated()
    }
}

/// The guest's driver, with the device, the bus and the network thread of the vmm.
struct Driver<'m> {
    driver: NetDriver<'m, VmmBus>,
    thread: Option<NetThread>,
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        self.stop_network();
    }
}

impl<'m> Deref for Driver<'m> {
    type Target = NetDriver<'m, VmmBus>;

    fn deref(&self) -> &Self::Target {
        &self.driver
    }
}

impl DerefMut for Driver<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.driver
    }
}

impl<'m> Driver<'m> {
    /// Builds the vmm's `--net` device on `mem` (as `builder::build` does, with loopback
    /// allowed and no DNS) and starts its network thread.
    fn new(mem: &'m vm_memory::GuestMemoryMmap) -> Self {
        let wake = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let backend_wake = wake.try_clone().expect("clone eventfd");
        let mut driver = NetDriver::new(mem, |irq: Arc<RecordingLine>| {
            let stack = UserNet::new(UserNetConfig {
                allow_loopback: true,
                ..UserNetConfig::default()
            })
            .expect("user-mode network");
            let backend = UserNetBackend::new(stack, backend_wake);
            let device = VirtioNet::new(backend, config::GUEST_MAC);
            let net: SharedNet = Arc::new(Mutex::new(
                MmioTransport::new(device, mem.clone(), irq).expect("transport"),
            ));
            let slot = virtio_slots(1).remove(0);
            let mut bus = Bus::new();
            bus.insert(slot.base, u64::from(slot.len), net.clone())
                .expect("bus slot");
            VmmBus {
                bus,
                base: slot.base,
                net,
            }
        });
        // A static guest answers ARP for its address.
        driver.arp_identity = Some(LINK);
        // No seccomp filter in this test process (the vmm's own filters are tested in
        // `vmm::seccomp` and, in a running vmm, by the KVM and system tests): the gate opens
        // once the thread has entered it.
        let filters = ThreadFilters::compile(SeccompMode::Off).expect("no filters");
        let (gate, reports) = StartGate::new(Arc::new(filters));
        let thread =
            NetThread::spawn(driver.bus().net.clone(), wake, gate.clone()).expect("network thread");
        gate.open(&reports, 1)
            .expect("the network thread entered the gate");
        Self {
            driver,
            thread: Some(thread),
        }
    }

    fn stop_network(&mut self) {
        if let Some(t) = self.thread.take() {
            t.stop();
        }
    }

    /// Checks that every buffer the device used was followed by an interrupt (call after
    /// stopping the network thread, so the rings are still).
    fn assert_used_buffers_signalled(&self) {
        assert!(self.thread.is_none(), "network thread stopped first");
        self.driver.assert_used_buffers_signalled();
    }
}

fn arp(operation: ArpOperation, target_mac: EthernetAddress, target: Ipv4Addr) -> Vec<u8> {
    LINK.arp(operation, target_mac, target)
}

fn tcp_segment(src_port: u16, dst: SocketAddrV4, control: TcpControl, seq: i32) -> Vec<u8> {
    LINK.tcp_segment(src_port, dst, control, seq)
}

fn loopback_listener() -> (TcpListener, SocketAddrV4) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a host listener");
    let port = listener.local_addr().expect("local address").port();
    (listener, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Accepts one connection within [`TIMEOUT`].
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).expect("non-blocking");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                assert!(peer.ip().is_loopback(), "the peer is the vmm's host socket");
                stream.set_nonblocking(false).expect("blocking");
                stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no connection from the vmm within {TIMEOUT:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// The gateway answers the guest's ARP, found through the MMIO registers; other ARP is not.
#[test]
fn arp_for_the_gateway_is_answered_into_a_receive_buffer_with_an_interrupt() {
    let mem = guest_memory();
    let mut guest = Driver::new(&mem);
    assert_eq!(guest.probe(), config::GUEST_MAC, "MAC in the config space");
    assert!(
        guest.irq.log().is_empty(),
        "no interrupt before any traffic"
    );

    guest.transmit(&arp(
        ArpOperation::Request,
        EthernetAddress([0; 6]),
        config::GATEWAY_IP,
    ));
    let reply = guest.expect_frame("ARP reply", |f| parse_arp(f).is_some());
    // 14-byte Ethernet header + 28-byte ARP body; the used length was 12 more (the header
    // was checked when the buffer was taken).
    assert_eq!(reply.len(), 42);
    assert_eq!(
        parse_arp(&reply),
        Some((
            GATEWAY_MAC,
            GUEST_MAC,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: GATEWAY_MAC,
                source_protocol_addr: config::GATEWAY_IP,
                target_hardware_addr: GUEST_MAC,
                target_protocol_addr: config::GUEST_IP,
            }
        ))
    );
    assert!(
        guest.irq.log().iter().any(|i| i.rx_used == 1),
        "an interrupt fired once the reply's buffer was used: {:?}",
        guest.irq.log()
    );
    assert!(guest.vring_irqs > 0);

    // Nobody else is on this link: ARP for a neighbour stays unanswered.
    guest.transmit(&arp(
        ArpOperation::Request,
        EthernetAddress([0; 6]),
        Ipv4Addr::new(10, 200, 0, 9),
    ));
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        guest.wait_interrupt(left);
    }
    assert!(
        guest.received.is_empty(),
        "unexpected frames: {:02x?}",
        guest.received
    );
    assert_eq!(guest.rx_used_seen, 1);

    guest.stop_network();
    guest.assert_used_buffers_signalled();
}

/// A raw SYN to a host listener: the vmm connects on the host, then answers with a SYN-ACK.
#[test]
fn syn_is_proxied_to_a_host_listener_and_answered_with_syn_ack() {
    let (listener, server) = loopback_listener();
    let mem = guest_memory();
    let mut guest = Driver::new(&mem);
    guest.probe();
    // A static guest learns the gateway's MAC first.
    guest.transmit(&arp(
        ArpOperation::Request,
        EthernetAddress([0; 6]),
        config::GATEWAY_IP,
    ));
    guest.expect_frame("ARP reply", |f| parse_arp(f).is_some());

    const GUEST_PORT: u16 = 40001;
    const ISN: i32 = 1000;
    guest.transmit(&tcp_segment(GUEST_PORT, server, TcpControl::Syn, ISN));
    let syn_ack = guest.expect_frame("SYN-ACK", |f| parse_tcp(f).is_some());
    let seg = parse_tcp(&syn_ack).expect("TCP");
    assert_eq!(
        (seg.eth_src, seg.eth_dst, seg.src, seg.dst, seg.control),
        (
            GATEWAY_MAC,
            GUEST_MAC,
            server,
            SocketAddrV4::new(config::GUEST_IP, GUEST_PORT),
            TcpControl::Syn,
        )
    );
    assert_eq!(seg.ack, Some(TcpSeqNumber(ISN + 1)), "acknowledges our SYN");
    // The SYN-ACK is sent only once the host connect succeeded: the connection is there.
    let mut stream = accept(&listener);

    // A reset from the guest ends the host side too.
    guest.transmit(&tcp_segment(GUEST_PORT, server, TcpControl::Rst, ISN + 1));
    match stream.read(&mut [0; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the host socket outlived the guest's reset: {other:?}"),
    }

    guest.stop_network();
    guest.assert_used_buffers_signalled();
}

/// What the host server answers to the guest's "hello": a line and enough bytes to take
/// several windows and to recycle every receive buffer many times.
fn server_reply() -> Vec<u8> {
    let mut reply = b"hello from the host\n".to_vec();
    reply.extend((0..32 * 1024u32).map(|i| i.to_le_bytes()[0] ^ i.to_le_bytes()[1]));
    reply
}

/// A smoltcp guest with the static micro-VM configuration, whose link is this driver, talks
/// to a host server through the whole path and closes the connection.
#[test]
fn static_guest_exchanges_data_with_a_host_server_and_closes() {
    let (listener, server) = loopback_listener();
    let (done_tx, done_rx) = mpsc::channel();
    let server_thread = thread::spawn(move || {
        let mut stream = accept(&listener);
        let mut hello = [0u8; 5];
        stream
            .read_exact(&mut hello)
            .expect("read the guest's hello");
        stream.write_all(&server_reply()).expect("reply");
        // The guest's FIN is our EOF; nothing else came.
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("read to the guest's FIN");
        drop(stream);
        let _ = done_tx.send((hello, rest));
    });

    let mem = guest_memory();
    let mut driver = Driver::new(&mem);
    let mac = driver.probe();
    let epoch = Instant::now();
    let now = || {
        smoltcp::time::Instant::from_micros(
            i64::try_from(epoch.elapsed().as_micros()).expect("fits"),
        )
    };
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    cfg.random_seed = 0x6e75_6c6c;
    let mut iface = Interface::new(cfg, &mut *driver, now());
    // `ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off`
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(
            IpAddress::Ipv4(config::GUEST_IP),
            config::PREFIX_LEN,
        ))
        .expect("address");
    });
    iface
        .routes_mut()
        .add_default_ipv4_route(config::GATEWAY_IP)
        .expect("default route");
    let mut sockets = SocketSet::new(Vec::new());
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    );
    socket
        .connect(iface.context(), (*server.ip(), server.port()), 49152)
        .expect("connect");
    let h = sockets.add(socket);

    let mut run_until = |what: &str, done: &mut dyn FnMut(&mut tcp::Socket<'_>) -> bool| {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            iface.poll(now(), &mut *driver, &mut sockets);
            if done(sockets.get_mut::<tcp::Socket>(h)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what} (socket {})",
                sockets.get::<tcp::Socket>(h).state()
            );
            let delay = iface
                .poll_delay(now(), &sockets)
                .map_or(MAX_IDLE, |d| Duration::from(d).min(MAX_IDLE));
            driver.wait_interrupt(delay);
        }
    };

    run_until("the connection", &mut |s| {
        assert_ne!(s.state(), tcp::State::Closed, "the connection was refused");
        s.state() == tcp::State::Established
    });
    let mut sent = false;
    let expected = server_reply();
    let mut got = Vec::new();
    run_until("the server's reply", &mut |s| {
        if !sent && s.can_send() {
            assert_eq!(s.send_slice(b"hello").expect("send"), 5);
            sent = true;
        }
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .expect("receive");
        }
        got.len() >= expected.len()
    });
    assert!(got == expected, "the server's bytes arrived intact");
    run_until("the close", &mut |s| {
        s.close();
        matches!(s.state(), tcp::State::TimeWait | tcp::State::Closed)
    });

    let (hello, rest) = done_rx.recv_timeout(TIMEOUT).expect("the server finished");
    server_thread.join().expect("server thread");
    assert_eq!(&hello, b"hello");
    assert!(rest.is_empty(), "nothing after hello: {rest:?}");

    // Static configuration: the guest found the gateway by ARP, and every IP frame went to
    // the gateway's MAC from the guest's address.
    let first = parse_arp(&driver.sent[0]).map(|(_, _, a)| a);
    assert!(
        matches!(
            first,
            Some(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                target_protocol_addr,
                ..
            }) if target_protocol_addr == config::GATEWAY_IP
        ),
        "the guest first asked for the gateway: {first:?}"
    );
    let segments: Vec<_> = driver.sent.iter().filter_map(|f| parse_tcp(f)).collect();
    assert!(segments.len() >= 4, "SYN, ACK, data, FIN at least");
    for seg in &segments {
        assert_eq!(seg.eth_dst, GATEWAY_MAC);
        assert_eq!(seg.src, SocketAddrV4::new(config::GUEST_IP, 49152));
        assert_eq!(seg.dst, server);
    }
    assert!(
        driver.rx_used_seen > 4 * RX_BUFFERS,
        "receive buffers were recycled ({} frames)",
        driver.rx_used_seen
    );

    driver.stop_network();
    driver.assert_used_buffers_signalled();
    // The server's bytes came with interrupts the network thread raised, not only with those
    // of the guest's own QueueNotify writes (`NetThread::spawn` names its thread "net").
    let log = driver.irq.log().clone();
    assert!(
        log.iter().any(|i| i.thread.as_deref() == Some("net")),
        "no interrupt from the network thread: {log:?}"
    );
}

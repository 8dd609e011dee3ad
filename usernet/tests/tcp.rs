//! Outbound TCP through the gateway, driven by a smoltcp guest against real host sockets.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{pattern, setsockopt, test_config, Net};
use smoltcp::socket::tcp::State;
use usernet::{config, UserNetConfig};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[test]
fn data_both_ways_with_backpressure_and_half_close() {
    // More than every buffer on the way can hold in either direction: the guest's and the
    // gateway's, and the kernel's socket buffers, which grow to a few MiB.
    const LEN: usize = 16 << 20;
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    // A small receive buffer on the host peer, so that the gateway's buffers fill.
    setsockopt(
        &listener,
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        16 * 1024 as libc::c_int,
    );
    let port = listener.local_addr().unwrap().port();
    let (started_tx, started_rx) = mpsc::channel();
    let (written_tx, written_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        // The peer is the gateway's host socket, not the guest.
        assert!(peer.ip().is_loopback());
        // Do not read yet: the guest must be held back by a closed window.
        started_rx.recv().unwrap();
        let mut got = Vec::new();
        // Reading to the end proves the guest's FIN arrived as our EOF.
        s.read_to_end(&mut got).unwrap();
        s.write_all(&pattern(LEN, 0x5a)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        written_tx.send(()).unwrap();
        got
    });

    let mut net = Net::new(test_config());
    let h = net.connect(LOCALHOST, port, 256 * 1024);
    net.run_until(10, "established", |n| {
        n.tcp(h).state() == State::Established
    });

    let out = pattern(LEN, 0xa5);
    let mut sent = 0;
    // Fill until the guest cannot send any more: the window closed because the host peer
    // does not read.
    net.run_until(10, "guest send buffer full", |n| {
        let s = n.tcp(h);
        if s.can_send() {
            sent += s.send_slice(&out[sent..]).unwrap();
        }
        !n.tcp(h).can_send()
    });
    // Keep topping up for a while: everything on the way fills, then the window stays shut.
    for _ in 0..30 {
        net.run_for(Duration::from_millis(10));
        let s = net.tcp(h);
        if s.can_send() {
            sent += s.send_slice(&out[sent..]).unwrap();
        }
    }
    net.run_for(Duration::from_millis(100));
    assert!(!net.tcp(h).can_send(), "the window stayed closed");
    assert!(
        sent < LEN,
        "the host peer did not read, yet {sent} bytes went out"
    );
    started_tx.send(()).unwrap();

    // Finish the upload without reading: the host peer's answer must wait behind the
    // guest's closed receive window.
    net.run_until(30, "upload", |n| {
        let s = n.tcp(h);
        while sent < LEN && s.can_send() {
            sent += s.send_slice(&out[sent..]).unwrap();
        }
        if sent == LEN {
            s.close();
        }
        sent == LEN && s.send_queue() == 0
    });
    net.run_for(Duration::from_millis(300));
    assert!(
        written_rx.try_recv().is_err(),
        "the host peer could not write everything while the guest did not read"
    );
    let mut back = Vec::with_capacity(LEN);
    let mut buf = vec![0; 64 * 1024];
    net.run_until(30, "download", |n| {
        let s = n.tcp(h);
        while s.can_recv() {
            let k = s.recv_slice(&mut buf).unwrap();
            back.extend_from_slice(&buf[..k]);
        }
        !s.may_recv()
    });
    let got = server.join().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got == out, "guest->host bytes intact");
    assert_eq!(back.len(), LEN);
    assert!(back == pattern(LEN, 0x5a), "host->guest bytes intact");
    // Both FINs went through: the flow is gone.
    net.run_until(5, "flow cleaned up", |n| n.net.stats().tcp_flows == 0);
}

#[test]
fn closed_port_gets_rst() {
    let port = {
        let l = TcpListener::bind((LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let mut net = Net::new(test_config());
    let h = net.connect(LOCALHOST, port, 4096);
    let mut established = false;
    net.run_until(10, "rst", |n| {
        established |= n.tcp(h).state() == State::Established;
        n.tcp(h).state() == State::Closed
    });
    assert!(!established, "no SYN-ACK before the host connect succeeded");
    assert_eq!(net.net.stats().tcp_flows, 0);
}

#[test]
fn gateway_loopback_and_link_local_get_rst() {
    // Default configuration: loopback refused too.
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut net = Net::new(UserNetConfig::default());
    let targets = [
        (config::GATEWAY_IP, 22),
        (config::GATEWAY_IP, 53),
        (LOCALHOST, port),
        (Ipv4Addr::new(169, 254, 169, 254), 80),
    ];
    let handles: Vec<_> = targets
        .iter()
        .map(|&(ip, port)| net.connect(ip, port, 4096))
        .collect();
    net.run_until(5, "rst for every refused destination", |n| {
        handles.iter().all(|&h| n.tcp(h).state() == State::Closed)
    });
    assert_eq!(net.net.stats().tcp_flows, 0);
    assert!(
        listener.accept().is_err(),
        "nothing reached the host listener"
    );
}

#[test]
fn host_reset_resets_the_guest_and_guest_reset_resets_the_host() {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut net = Net::new(test_config());

    // Host resets: SO_LINGER 0 then close.
    let h = net.connect(LOCALHOST, port, 4096);
    net.run_until(10, "established", |n| {
        n.tcp(h).state() == State::Established
    });
    let (s, _) = listener.accept().unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&s, libc::SOL_SOCKET, libc::SO_LINGER, linger);
    drop(s);
    net.run_until(10, "guest reset", |n| n.tcp(h).state() == State::Closed);
    net.run_until(5, "flow cleaned up", |n| n.net.stats().tcp_flows == 0);

    // Guest resets: the host peer reads ECONNRESET.
    let h = net.connect(LOCALHOST, port, 4096);
    net.run_until(10, "established", |n| {
        n.tcp(h).state() == State::Established
    });
    let (mut s, _) = listener.accept().unwrap();
    net.tcp(h).abort();
    net.run_until(5, "flow cleaned up", |n| n.net.stats().tcp_flows == 0);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let err = s.read(&mut [0; 16]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[test]
fn flow_limit_refuses_beyond_and_frees_on_close() {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut net = Net::new(UserNetConfig {
        max_flows: 2,
        ..test_config()
    });
    let a = net.connect(LOCALHOST, port, 4096);
    let b = net.connect(LOCALHOST, port, 4096);
    net.run_until(10, "two established", |n| {
        n.tcp(a).state() == State::Established && n.tcp(b).state() == State::Established
    });
    let c = net.connect(LOCALHOST, port, 4096);
    net.run_until(5, "third refused", |n| n.tcp(c).state() == State::Closed);
    assert_eq!(net.net.stats().tcp_flows, 2);
    assert_eq!(net.tcp(a).state(), State::Established);

    // Data still flows on the admitted ones, to the right host connection.
    let (mut sa, _) = listener.accept().unwrap();
    let (mut sb, _) = listener.accept().unwrap();
    net.tcp(a).send_slice(b"to-a").unwrap();
    net.run_until(5, "sent", |n| n.tcp(a).send_queue() == 0);
    sa.set_nonblocking(true).unwrap();
    sb.set_nonblocking(true).unwrap();
    let mut buf = [0; 8];
    let got = [sa.read(&mut buf).ok(), sb.read(&mut buf).ok()];
    // Exactly one host connection saw the bytes.
    assert_eq!(got.iter().filter(|r| **r == Some(4)).count(), 1);

    net.tcp(a).abort();
    net.run_until(5, "one flow left", |n| n.net.stats().tcp_flows == 1);
    let d = net.connect(LOCALHOST, port, 4096);
    net.run_until(10, "a new flow fits", |n| {
        n.tcp(d).state() == State::Established
    });
}

#[test]
fn connect_that_hangs_times_out_with_rst() {
    // A listener whose accept queue is full drops SYNs: the host connect hangs.
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    // SAFETY: a live listening fd; listen(2) again only changes the backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let _fill: Vec<_> = (0..3)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    let mut net = Net::new(UserNetConfig {
        connect_timeout: Duration::from_millis(500),
        ..test_config()
    });
    let start = std::time::Instant::now();
    let h = net.connect(LOCALHOST, addr.port(), 4096);
    let mut established = false;
    net.run_until(10, "rst after the connect timeout", |n| {
        established |= n.tcp(h).state() == State::Established;
        n.tcp(h).state() == State::Closed
    });
    assert!(!established);
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert_eq!(net.net.stats().tcp_flows, 0);
}

#[test]
#[ignore = "throughput figure; run with --release -- --ignored --nocapture"]
fn throughput_guest_to_host() {
    const LEN: usize = 256 << 20;
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0; 1 << 20];
        let mut n = 0;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    });
    let mut net = Net::new(test_config());
    let h = net.connect(LOCALHOST, port, 256 * 1024);
    net.run_until(10, "established", |n| {
        n.tcp(h).state() == State::Established
    });
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    let start = std::time::Instant::now();
    net.run_until(120, "sent", |n| {
        let s = n.tcp(h);
        while sent < LEN && s.can_send() {
            sent += s.send_slice(&chunk[..chunk.len().min(LEN - sent)]).unwrap();
        }
        if sent == LEN {
            s.close();
        }
        sent == LEN && s.state() != State::Established && s.send_queue() == 0
    });
    let n = server.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(n, LEN);
    eprintln!(
        "guest->host {:.0} MiB/s",
        LEN as f64 / secs / (1 << 20) as f64
    );
}

#[test]
#[ignore = "throughput figure; run with --release -- --ignored --nocapture"]
fn throughput_host_to_guest() {
    const LEN: usize = 256 << 20;
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..LEN / chunk.len() {
            s.write_all(&chunk).unwrap();
        }
    });
    let mut net = Net::new(test_config());
    let h = net.connect(LOCALHOST, port, 256 * 1024);
    net.run_until(10, "established", |n| {
        n.tcp(h).state() == State::Established
    });
    let mut buf = vec![0; 256 * 1024];
    let mut got = 0;
    let start = std::time::Instant::now();
    let mut steps = 0;
    net.run_until(120, "received", |n| {
        steps += 1;
        let s = n.tcp(h);
        while s.can_recv() {
            got += s.recv_slice(&mut buf).unwrap();
        }
        !s.may_recv()
    });
    server.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, LEN);
    eprintln!(
        "host->guest {:.0} MiB/s ({steps} steps)",
        LEN as f64 / secs / (1 << 20) as f64
    );
}

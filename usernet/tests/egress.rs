//! The egress policy and the flood limits, driven by a smoltcp guest against the gateway:
//! one test per class of refused destination, the node's allow rule, the SYN rate limit and
//! the idle-flow timeout.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use common::{test_config, Net};
use smoltcp::socket::tcp::State;
use usernet::UserNetConfig;

/// The guest connects to `ip:port` under `cfg`: it must get an RST at once (long before any
/// host connect could time out) and no flow may ever be opened.
fn assert_refused(cfg: UserNetConfig, ip: [u8; 4], port: u16) {
    let mut net = Net::new(cfg);
    let start = Instant::now();
    let h = net.connect(Ipv4Addr::from(ip), port, 4096);
    net.run_until(5, "rst", |n| {
        assert_eq!(n.net.stats().tcp_flows, 0, "a host connect was started");
        n.tcp(h).state() == State::Closed
    });
    assert!(start.elapsed() < Duration::from_secs(2));
}

fn node_policy() -> UserNetConfig {
    UserNetConfig {
        node_addrs: vec![Ipv4Addr::new(185, 69, 166, 7)],
        deny: vec!["185.69.166.8:443".parse().unwrap()],
        ..UserNetConfig::default()
    }
}

// Port 0, other hosts of the gateway network, multicast and broadcast cannot be asked for by a
// well-behaved guest stack (smoltcp will not connect to port 0, ARPs on-link hosts, which the
// gateway does not answer, and sends multicast and broadcast to group MACs, which the frame
// filter drops): their refusal is in the classification tables of `usernet::policy`.
macro_rules! refused {
    ($($name:ident: $ip:expr, $port:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_refused(node_policy(), $ip, $port);
        }
    )*};
}

refused! {
    refuses_the_gateway: [10, 200, 0, 1], 22;
    refuses_the_control_endpoint: [185, 69, 166, 8], 443;
    refuses_a_node_address: [185, 69, 166, 7], 22;
    refuses_aws_gcp_metadata: [169, 254, 169, 254], 80;
    refuses_alibaba_metadata: [100, 100, 100, 200], 80;
    refuses_azure_wire_server: [168, 63, 129, 16], 80;
    refuses_loopback: [127, 0, 0, 1], 80;
    refuses_rfc1918_10: [10, 0, 2, 2], 80;
    refuses_rfc1918_172: [172, 16, 0, 1], 80;
    refuses_rfc1918_192: [192, 168, 1, 1], 80;
    refuses_cgnat: [100, 64, 0, 1], 80;
    refuses_link_local: [169, 254, 1, 1], 80;
    refuses_this_network: [0, 1, 2, 3], 80;
    refuses_documentation_range: [192, 0, 2, 10], 80;
    refuses_reserved_240: [240, 0, 0, 1], 80;
}

#[test]
fn loopback_listener_reached_only_through_an_allow_rule() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Another port of the same address is not opened by the rule.
    let allow = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    assert_refused(
        UserNetConfig {
            allow: allow.clone(),
            ..UserNetConfig::default()
        },
        [127, 0, 0, 1],
        port.wrapping_add(1).max(1),
    );
    assert!(listener.accept().is_err(), "nothing reached the listener");
    let mut net = Net::new(UserNetConfig {
        allow,
        ..UserNetConfig::default()
    });
    let h = net.connect(Ipv4Addr::LOCALHOST, port, 4096);
    net.run_until(10, "established", |n| {
        n.tcp(h).state() == State::Established
    });
}

#[test]
fn syn_rate_limit_refuses_beyond_the_burst_then_refills() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut net = Net::new(UserNetConfig {
        syn_rate: 2,
        syn_burst: 3,
        ..test_config()
    });
    let handles: Vec<_> = (0..6)
        .map(|_| net.connect(Ipv4Addr::LOCALHOST, port, 4096))
        .collect();
    net.run_until(5, "every SYN answered", |n| {
        handles
            .iter()
            .all(|&h| matches!(n.tcp(h).state(), State::Established | State::Closed))
    });
    let established = handles
        .iter()
        .filter(|&&h| net.tcp(h).state() == State::Established)
        .count();
    assert_eq!(established, 3, "the burst");
    assert_eq!(net.net.stats().syns_limited, 3);
    // Two tokens a second: after 600 ms one more connect goes through.
    net.run_for(Duration::from_millis(600));
    let h = net.connect(Ipv4Addr::LOCALHOST, port, 4096);
    net.run_until(10, "refilled", |n| n.tcp(h).state() == State::Established);
}

#[test]
fn idle_flow_is_reset_on_both_sides() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut net = Net::new(UserNetConfig {
        idle_timeout: Duration::from_millis(400),
        ..test_config()
    });
    let h = net.connect(Ipv4Addr::LOCALHOST, port, 4096);
    net.run_until(10, "established", |n| {
        n.tcp(h).state() == State::Established
    });
    let (mut s, _) = listener.accept().unwrap();
    let start = Instant::now();
    net.run_until(5, "guest reset", |n| n.tcp(h).state() == State::Closed);
    assert!(start.elapsed() >= Duration::from_millis(300));
    net.run_until(5, "flow cleaned up", |n| n.net.stats().tcp_flows == 0);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let err = s.read(&mut [0; 16]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

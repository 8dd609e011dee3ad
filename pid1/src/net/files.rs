//! The resolver files glibc reads: `/etc/resolv.conf`, `/etc/hosts`, `/etc/nsswitch.conf`.
//!
//! `init` is a static glibc binary; since glibc 2.34 the `files` and `dns` NSS modules are built
//! into libc, so name lookups work in the bare initramfs once these files exist.

use std::net::Ipv4Addr;

use super::dhcp::Lease;

/// resolv.conf keeps at most this many name servers (glibc's MAXNS).
const MAX_NAMESERVERS: usize = 3;

/// `/etc/resolv.conf` for a lease; `None` if the lease names no DNS server.
pub fn resolv_conf(lease: &Lease) -> Option<String> {
    if lease.dns.is_empty() {
        return None;
    }
    let mut out = String::from("# written by nullos init from the DHCP lease\n");
    for server in lease.dns.iter().take(MAX_NAMESERVERS) {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if let Some(domain) = &lease.domain {
        out.push_str(&format!("search {domain}\n"));
    }
    // Bounded lookups: 2 s per try, 2 tries per server.
    out.push_str("options timeout:2 attempts:2\n");
    Some(out)
}

/// `/etc/hosts`: localhost, plus the leased address under the node's host name.
pub fn hosts(hostname: &str, address: Option<Ipv4Addr>) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match address {
        Some(ip) => out.push_str(&format!("{ip}\t{hostname}\n")),
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    out
}

/// `/etc/nsswitch.conf`: look in /etc/hosts before asking DNS (glibc's default without the
/// file is the other way round, which would send `localhost` to the DHCP server's resolver).
pub const NSSWITCH_CONF: &str = "hosts: files dns\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(dns: Vec<Ipv4Addr>, domain: Option<&str>) -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns,
            domain: domain.map(str::to_owned),
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_secs: Some(86_400),
            renewal_secs: None,
            rebinding_secs: None,
            acquired_ms: 0,
        }
    }

    #[test]
    fn resolv_conf_lists_servers_and_domain() {
        let text = resolv_conf(&lease(
            vec![Ipv4Addr::new(10, 0, 2, 3)],
            Some("example.org"),
        ));
        assert_eq!(
            text.unwrap(),
            "# written by nullos init from the DHCP lease\nnameserver 10.0.2.3\nsearch example.org\noptions timeout:2 attempts:2\n"
        );
    }

    #[test]
    fn resolv_conf_caps_servers_and_needs_one() {
        let many = (1..=5).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let text = resolv_conf(&lease(many, None)).unwrap();
        assert_eq!(text.matches("nameserver").count(), 3);
        assert!(!text.contains("search"));
        assert_eq!(resolv_conf(&lease(vec![], None)), None);
    }

    #[test]
    fn hosts_always_has_localhost() {
        let with = hosts("nullos", Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert!(with.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(with.ends_with("10.0.2.15\tnullos\n"));
        assert!(hosts("nullos", None).contains("127.0.1.1\tnullos\n"));
    }
}

//! Network bring-up without external tools: rtnetlink for links, addresses and routes, and a
//! DHCPv4 client of our own on top of `dhcproto`'s wire format.
//!
//! - [`netlink`]: the synchronous rtnetlink channel.
//! - [`link`]: list links, set them up, add addresses and routes.
//! - [`dhcp`]: the pure DHCP client state machine and lease keeper (T1/T2 renewal); [`dhcp_io`]
//!   runs the exchange on sockets, [`keep`] keeps each lease on a thread of its own.
//! - [`files`]: resolv.conf, hosts and nsswitch.conf contents.
//!
//! Every wait of the bring-up is bounded: carrier for [`CARRIER_WAIT`], DHCP by
//! [`dhcp::Timing::total_ms`]. Then each lease is renewed at T1, rebound at T2, and its address
//! removed if it is lost ([`keep`]).

pub mod dhcp;
pub mod dhcp_io;
pub mod files;
pub mod keep;
pub mod link;
pub mod netlink;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use self::dhcp::{Lease, Timing};
use self::dhcp_io::Iface;
use self::link::Link;
use self::netlink::{Netlink, NetlinkError};

/// Longest wait for carrier on the interfaces after setting them up.
pub const CARRIER_WAIT: Duration = Duration::from_secs(5);
/// How often carrier is re-checked.
const CARRIER_POLL: Duration = Duration::from_millis(100);
/// The node's host name (until nodes have identities).
pub const HOSTNAME: &str = "nullos";

/// Why the network could not be set up at all.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// rtnetlink failed where nothing else can be done.
    #[error("list network interfaces")]
    Links(#[source] NetlinkError),
    /// Opening rtnetlink failed.
    #[error("open rtnetlink")]
    Open(#[source] NetlinkError),
}

/// The address configured on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// Interface name.
    pub iface: String,
    /// The lease behind it.
    pub lease: Lease,
}

/// Brings links up, waits for carrier, runs DHCP, configures addresses, the default route and
/// the resolver files. Returns the configured interfaces, the first one being the primary.
pub fn bring_up() -> Result<Vec<Configured>, NetError> {
    let mut nl = Netlink::open().map_err(NetError::Open)?;
    let links = link::list_links(&mut nl).map_err(NetError::Links)?;
    for l in &links {
        if !l.up {
            if let Err(e) = link::set_up(&mut nl, l.index) {
                crate::warn!("network: set {} up: {}", l.name, crate::error_chain(&e));
            }
        }
    }
    let candidates = wait_for_carrier(&mut nl);
    let mut configured = Vec::new();
    if candidates.is_empty() {
        crate::info!("network: no interface with carrier; no DHCP");
    } else {
        let ifaces: Vec<Iface> = candidates
            .iter()
            .filter_map(|l| {
                Some(Iface {
                    index: l.index,
                    name: l.name.clone(),
                    mac: l.mac?,
                })
            })
            .collect();
        let results = dhcp_io::acquire(&ifaces, Timing::default());
        for (iface, result) in ifaces.iter().zip(results) {
            match result {
                Ok(lease) => {
                    let primary = configured.is_empty();
                    if configure(&mut nl, iface, &lease, primary) {
                        keep::start(iface.clone(), lease.clone(), primary);
                        configured.push(Configured {
                            iface: iface.name.clone(),
                            lease,
                        });
                    }
                }
                Err(e) => crate::warn!("dhcp: {} no lease: {}", iface.name, crate::error_chain(&e)),
            }
        }
    }
    write_resolver_files(configured.first());
    // `nl` is dropped here: no netlink socket stays open.
    Ok(configured)
}

/// Waits (bounded) until every non-loopback Ethernet link has carrier; returns those that do.
fn wait_for_carrier(nl: &mut Netlink) -> Vec<Link> {
    let start = Instant::now();
    loop {
        let links = match link::list_links(nl) {
            Ok(links) => links,
            Err(e) => {
                crate::warn!("network: list links: {}", crate::error_chain(&e));
                return Vec::new();
            }
        };
        let ethernet: Vec<Link> = links
            .into_iter()
            .filter(|l| !l.loopback && l.mac.is_some())
            .collect();
        let all_have_carrier = ethernet.iter().all(|l| l.carrier);
        if all_have_carrier || start.elapsed() >= CARRIER_WAIT {
            for l in ethernet.iter().filter(|l| !l.carrier) {
                crate::info!(
                    "network: {} has no carrier after {} ms",
                    l.name,
                    start.elapsed().as_millis()
                );
            }
            return ethernet.into_iter().filter(|l| l.carrier).collect();
        }
        std::thread::sleep(CARRIER_POLL);
    }
}

/// Puts a lease on its interface; the primary interface also gets the default route.
/// Returns whether the address was configured.
fn configure(nl: &mut Netlink, iface: &Iface, lease: &Lease, primary: bool) -> bool {
    if let Err(e) = link::add_address(
        nl,
        iface.index,
        lease.address,
        lease.prefix_len,
        lease.broadcast(),
    ) {
        crate::error!(
            "dhcp: {} add address {}/{}: {}",
            iface.name,
            lease.address,
            lease.prefix_len,
            crate::error_chain(&e)
        );
        return false;
    }
    crate::info!("{}", lease_line(&iface.name, lease));
    match dhcp::renew::LeaseTimes::of(lease) {
        Some(times) => crate::info!(
            "dhcp: {} lease time {} s: renewing after {} s, rebinding after {} s",
            iface.name,
            lease.lease_secs.unwrap_or(0),
            times.renew_ms.saturating_sub(lease.acquired_ms) / 1000,
            times.rebind_ms.saturating_sub(lease.acquired_ms) / 1000
        ),
        None => crate::debug!("dhcp: {} lease never ends", iface.name),
    }
    if let Some(router) = lease.router {
        if primary {
            if let Err(e) = link::add_default_route(nl, iface.index, router) {
                crate::error!(
                    "dhcp: {} default route via {router}: {}",
                    iface.name,
                    crate::error_chain(&e)
                );
            }
        } else {
            crate::info!(
                "dhcp: {} router {router} not used: the default route is on the primary interface",
                iface.name
            );
        }
    }
    true
}

/// `dhcp: eth0 leased 10.0.2.15/24 via 10.0.2.2 dns 10.0.2.3` (the contract's words).
pub fn lease_line(iface: &str, lease: &Lease) -> String {
    let mut line = format!(
        "dhcp: {iface} leased {}/{} via ",
        lease.address, lease.prefix_len
    );
    match lease.router {
        Some(r) => {
            let _ = write!(line, "{r}");
        }
        None => line.push_str("none"),
    }
    line.push_str(" dns ");
    if lease.dns.is_empty() {
        line.push_str("none");
    } else {
        let dns: Vec<String> = lease.dns.iter().map(ToString::to_string).collect();
        line.push_str(&dns.join(","));
    }
    line
}

fn write_resolver_files(primary: Option<&Configured>) {
    if let Err(e) = std::fs::create_dir_all("/etc") {
        crate::warn!("network: create /etc: {e}");
        return;
    }
    let write = |path: &str, text: &str| {
        if let Err(e) = std::fs::write(path, text) {
            crate::warn!("network: write {path}: {e}");
        }
    };
    write(
        "/etc/hosts",
        &files::hosts(HOSTNAME, primary.map(|c| c.lease.address)),
    );
    write("/etc/nsswitch.conf", files::NSSWITCH_CONF);
    if let Some(text) = primary.and_then(|c| files::resolv_conf(&c.lease)) {
        write("/etc/resolv.conf", &text);
    }
    if let Err(e) = nix::unistd::sethostname(HOSTNAME) {
        crate::warn!("network: set host name: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn lease_line_matches_the_contract() {
        let mut lease = Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix_len: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            domain: None,
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_secs: Some(86_400),
            renewal_secs: None,
            rebinding_secs: None,
            acquired_ms: 0,
        };
        assert_eq!(
            lease_line("eth0", &lease),
            "dhcp: eth0 leased 10.0.2.15/24 via 10.0.2.2 dns 10.0.2.3"
        );
        lease.router = None;
        lease.dns.clear();
        assert_eq!(
            lease_line("eth1", &lease),
            "dhcp: eth1 leased 10.0.2.15/24 via none dns none"
        );
    }
}

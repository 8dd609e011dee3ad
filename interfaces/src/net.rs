//! The micro-VMs' network: fixed for every guest, 10.200.0.0/24. The guest is .2 and
//! configures itself from the kernel's `ip=` parameter (the node's `init` puts it on the guest's
//! command line, the guest's `init` reads it); the vmm's user-mode network (`usernet`) is the
//! gateway and DNS server at .1 and accepts no other guest address.

use std::net::Ipv4Addr;

/// The guest network's address.
pub const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 0);
/// Prefix length of the guest network.
pub const PREFIX_LEN: u8 = 24;
/// The guest's address.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The gateway: the vmm's user-mode network stack.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The guest's DNS server: the gateway, which forwards to the node's resolver.
pub const DNS_IP: Ipv4Addr = GATEWAY_IP;
/// The guest's network interface.
pub const GUEST_INTERFACE: &str = "eth0";
/// The kernel parameter that configures the guest
/// (`ip=<client>::<gateway>:<netmask>::<device>:off:<dns>`, the kernel's nfsroot syntax).
/// [`kernel_ip_param`] spells the same from the constants above; a test keeps them equal.
pub const KERNEL_IP_PARAM: &str = "ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off:10.200.0.1";

/// The netmask of [`PREFIX_LEN`].
pub fn netmask() -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(PREFIX_LEN))
            .unwrap_or(0),
    )
}

/// [`KERNEL_IP_PARAM`], made from the addresses.
pub fn kernel_ip_param() -> String {
    format!(
        "ip={GUEST_IP}::{GATEWAY_IP}:{}::{GUEST_INTERFACE}:off:{DNS_IP}",
        netmask()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_parameter_spells_the_constants() {
        assert_eq!(KERNEL_IP_PARAM, kernel_ip_param());
        assert_eq!(netmask(), Ipv4Addr::new(255, 255, 255, 0));
    }

    #[test]
    fn guest_and_gateway_are_hosts_of_the_network() {
        let mask = u32::from(netmask());
        for host in [GUEST_IP, GATEWAY_IP, DNS_IP] {
            assert_eq!(u32::from(host) & mask, u32::from(NETWORK), "{host}");
        }
        assert_ne!(GUEST_IP, GATEWAY_IP);
    }
}

//! The few system calls the benchmark's two PID 1s make (`bench-node-init`, `bench-guest-init`):
//! mounts, module loading, interface addresses through rtnetlink (the `pid1` crate's helpers),
//! power-off.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// `::pid1` is the crate; this module is `crate::pid1`.
use ::pid1::net::link::{add_address, add_default_route, list_links, set_up};
use ::pid1::net::netlink::{Netlink, NetlinkError};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};

/// A set-up step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Pid1Error {
    /// mount(2) failed.
    #[error("mount {fstype} on {target}")]
    Mount {
        /// Mount point.
        target: String,
        /// Filesystem type.
        fstype: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The module file cannot be opened.
    #[error("open module {path}")]
    OpenModule {
        /// The .ko file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// finit_module(2) refused the module.
    #[error("load module {path}")]
    LoadModule {
        /// The .ko file.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// An rtnetlink request failed.
    #[error("rtnetlink")]
    Netlink(#[from] NetlinkError),
    /// The interface did not appear in time.
    #[error("no interface {name} after {waited:?}")]
    NoLink {
        /// Interface name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
}

/// Mounts `fstype` at `target` (created if missing), with no source device.
pub fn mount_fs(fstype: &str, target: &str) -> Result<(), Pid1Error> {
    // A missing mount point makes mount(2) fail with ENOENT, which the error reports.
    let _ = std::fs::create_dir_all(target);
    mount(
        Some(fstype),
        target,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| Pid1Error::Mount {
        target: target.to_string(),
        fstype: fstype.to_string(),
        source,
    })
}

/// Loads one module file with finit_module(2); an already loaded module counts as loaded.
pub fn insmod(path: &Path) -> Result<(), Pid1Error> {
    let file = File::open(path).map_err(|source| Pid1Error::OpenModule {
        path: path.to_path_buf(),
        source,
    })?;
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
        Err(source) => Err(Pid1Error::LoadModule {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Waits up to `timeout` for interface `name` and returns its index.
pub fn wait_for_link(
    netlink: &mut Netlink,
    name: &str,
    timeout: Duration,
) -> Result<u32, Pid1Error> {
    let started = Instant::now();
    loop {
        if let Some(link) = list_links(netlink)?.into_iter().find(|l| l.name == name) {
            return Ok(link.index);
        }
        if started.elapsed() >= timeout {
            return Err(Pid1Error::NoLink {
                name: name.to_string(),
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Brings interface `name` up with `address/prefix`, and a default route via `gateway` if given.
pub fn configure_interface(
    name: &str,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    timeout: Duration,
) -> Result<(), Pid1Error> {
    let mut netlink = Netlink::open()?;
    let index = wait_for_link(&mut netlink, name, timeout)?;
    set_up(&mut netlink, index)?;
    let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let broadcast = Ipv4Addr::from(u32::from(address) | host_mask);
    add_address(&mut netlink, index, address, prefix, broadcast)?;
    if let Some(gateway) = gateway {
        add_default_route(&mut netlink, index, gateway)?;
    }
    Ok(())
}

/// The kernel's `local` routing table (`RT_TABLE_LOCAL` in linux/rtnetlink.h).
const RT_TABLE_LOCAL: u8 = 255;

/// Brings interface `name` up and makes `address` local to the node through a `local` route on
/// it (`ip route add local <address>/32 dev <name>`), without giving any interface the address: the node accepts
/// and binds it, yet it is not among the node's interface addresses (getifaddrs(3)), which the
/// user-mode network refuses to its guests whatever the policy allows.
pub fn add_local_route(name: &str, address: Ipv4Addr, timeout: Duration) -> Result<(), Pid1Error> {
    let mut netlink = Netlink::open()?;
    let index = wait_for_link(&mut netlink, name, timeout)?;
    set_up(&mut netlink, index)?;
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = 32;
    message.header.table = RT_TABLE_LOCAL;
    message.header.protocol = RouteProtocol::Static;
    message.header.scope = RouteScope::Host;
    message.header.kind = RouteType::Local;
    message.attributes = vec![
        RouteAttribute::Destination(RouteAddress::Inet(address)),
        RouteAttribute::Oif(index),
    ];
    netlink.execute(
        RouteNetlinkMessage::NewRoute(message),
        NLM_F_CREATE | NLM_F_REPLACE,
    )?;
    Ok(())
}

/// Syncs and powers the machine off; retries forever, since PID 1 must not return.
pub fn power_off() -> ! {
    nix::unistd::sync();
    loop {
        // reboot(2) only returns on failure; nothing better to do than try again.
        let _ = reboot(RebootMode::RB_POWER_OFF);
        std::thread::sleep(Duration::from_secs(1));
    }
}

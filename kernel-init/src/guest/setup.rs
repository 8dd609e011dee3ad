//! The guest's set-up steps that touch the system: modules, disks, mounts, network, files.
//!
//! Each step either succeeds or returns the one error that the guest reports before powering
//! off with [`super::SETUP_FAILED`]. Every wait is bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::MsFlags;

use super::config::GuestConfig;
use super::ip::IpConfig;
use super::plan::{PlannedMount, Purpose, NEW_ROOT};
use super::GuestError;
use crate::modules::{self, LoadError, LoadEvent, Loader, SysKmod};
use crate::net::link;
use crate::net::netlink::Netlink;

/// Longest wait for the disks after the block driver loaded.
pub const DISK_WAIT: Duration = Duration::from_secs(10);
/// Longest wait for the network interface after the network driver loaded.
pub const LINK_WAIT: Duration = Duration::from_secs(5);
/// How often disks and links are looked for.
const POLL: Duration = Duration::from_millis(20);

/// The modules a guest needs, in load order: pvpanic first (from then on a kernel panic ends
/// the VM as one, vmm exit 12), the virtio-mmio transport (it finds the devices in ACPI), then
/// the drivers and filesystems.
pub fn wanted_modules(config: &GuestConfig) -> Vec<&'static str> {
    let mut names = vec!["pvpanic_mmio", "virtio_mmio", "virtio_blk"];
    if config.network {
        names.push("virtio_net");
    }
    names.extend(["squashfs", "overlay"]);
    if !config.volumes.is_empty() {
        // Built into Debian's cloud kernel; loaded when another kernel (the generic one of
        // metal nodes) has it as a module, with the crc32c ext4 asks the crypto API for (its
        // `softdep` names the algorithm, not a module, and a guest has no modprobe).
        names.extend(["crc32c_generic", "ext4"]);
    }
    names
}

/// Loads `names` with their dependencies from the image's index. A module the index does not
/// know is assumed built in (the mount or wait that needs it reports it otherwise); a module
/// that is in the index and fails to load is a set-up error.
pub fn load_modules(names: &[&str]) -> Result<(), GuestError> {
    let Some(index) = modules::read_index() else {
        return Ok(());
    };
    let mut loader = Loader::new();
    for name in names {
        for event in loader.load(&index, &mut SysKmod, name) {
            match event {
                LoadEvent::Failed {
                    name,
                    error: LoadError::Index(why),
                } => crate::debug!("module {name} is not in the index ({why}); assuming built in"),
                LoadEvent::Failed { name, error } => {
                    return Err(GuestError::Module {
                        name,
                        source: error,
                    })
                }
                loaded => modules::log_event(&loaded),
            }
        }
    }
    Ok(())
}

/// Waits until every disk (`vda`, ...) has its `/sys/block` entry and `/dev` node.
pub fn wait_for_disks(disks: &[String]) -> Result<(), GuestError> {
    let start = Instant::now();
    for (i, disk) in disks.iter().enumerate() {
        loop {
            let present = Path::new("/sys/block").join(disk).exists()
                && Path::new("/dev").join(disk).exists();
            if present {
                break;
            }
            if start.elapsed() >= DISK_WAIT {
                return Err(GuestError::NoDisk {
                    what: if i == 0 {
                        "root disk".to_owned()
                    } else {
                        format!("volume disk {i}")
                    },
                    disk: disk.clone(),
                    waited: DISK_WAIT,
                });
            }
            std::thread::sleep(POLL);
        }
    }
    crate::debug!(
        "guest: disks {} present after {} ms",
        disks.join(" "),
        start.elapsed().as_millis()
    );
    Ok(())
}

/// Performs one planned mount (creating its directories first).
pub fn mount(planned: &PlannedMount) -> Result<(), GuestError> {
    for dir in &planned.create {
        std::fs::create_dir_all(dir).map_err(|source| GuestError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    }
    nix::mount::mount(
        Some(planned.source.as_str()),
        planned.target.as_str(),
        Some(planned.fstype),
        planned.flags,
        planned.data.as_deref(),
    )
    .map_err(|source| GuestError::Mount {
        what: describe(&planned.purpose),
        fstype: planned.fstype,
        source_path: planned.source.clone(),
        target: planned.target.clone(),
        source,
    })?;
    let read_only = if planned.flags.contains(MsFlags::MS_RDONLY) {
        ", read-only"
    } else {
        ""
    };
    match &planned.purpose {
        Purpose::RootImage | Purpose::Volume(_) => crate::info!(
            "guest: {} {} on {} ({}{read_only})",
            describe(&planned.purpose),
            planned.source,
            planned.target,
            planned.fstype
        ),
        _ => crate::debug!("guest: mounted {} on {}", planned.fstype, planned.target),
    }
    Ok(())
}

fn describe(purpose: &Purpose) -> String {
    match purpose {
        Purpose::RootImage => "root image".to_owned(),
        Purpose::Scratch => "overlay scratch".to_owned(),
        Purpose::Overlay => "overlay root".to_owned(),
        Purpose::Api => "filesystem".to_owned(),
        Purpose::Volume(name) => format!("volume {name}"),
    }
}

/// Brings up `lo` and the configured interface with its address and default route (the
/// same rtnetlink calls the node's DHCP path uses).
pub fn configure_network(ip: &IpConfig) -> Result<(), GuestError> {
    let network = |step: &'static str| {
        move |source| GuestError::Network {
            step,
            device: ip.device.clone(),
            source,
        }
    };
    let mut nl = Netlink::open().map_err(network("open rtnetlink"))?;
    let start = Instant::now();
    let (lo, dev) = loop {
        let links = link::list_links(&mut nl).map_err(network("list links"))?;
        let lo = links.iter().find(|l| l.loopback).map(|l| l.index);
        let dev = links.iter().find(|l| l.name == ip.device).map(|l| l.index);
        if let Some(dev) = dev {
            break (lo, dev);
        }
        if start.elapsed() >= LINK_WAIT {
            return Err(GuestError::NoInterface {
                device: ip.device.clone(),
                waited: LINK_WAIT,
            });
        }
        std::thread::sleep(POLL);
    };
    if let Some(lo) = lo {
        link::set_up(&mut nl, lo).map_err(network("set lo up"))?;
    }
    link::set_up(&mut nl, dev).map_err(network("set up"))?;
    link::add_address(&mut nl, dev, ip.address, ip.prefix_len, ip.broadcast())
        .map_err(network("add address"))?;
    if let Some(gateway) = ip.gateway {
        link::add_default_route(&mut nl, dev, gateway).map_err(network("add default route"))?;
    }
    crate::info!("{}", ip.summary());
    Ok(())
}

/// Writes `/etc/hosts` (and `/etc/resolv.conf` when there is a DNS server) in the new root,
/// and sets the host name.
pub fn write_network_files(hostname: &str, ip: &IpConfig) -> Result<(), GuestError> {
    let etc = format!("{NEW_ROOT}/etc");
    std::fs::create_dir_all(&etc).map_err(|source| GuestError::CreateDir {
        path: etc.clone(),
        source,
    })?;
    let write = |name: &str, text: &str| {
        let path = format!("{etc}/{name}");
        std::fs::write(&path, text).map_err(|source| GuestError::WriteFile { path, source })
    };
    write(
        "hosts",
        &crate::net::files::hosts(hostname, Some(ip.address)),
    )?;
    if let Some(text) = ip.resolv_conf() {
        write("resolv.conf", &text)?;
    }
    if !Path::new(&etc).join("nsswitch.conf").exists() {
        write("nsswitch.conf", crate::net::files::NSSWITCH_CONF)?;
    }
    Ok(())
}

//! What the node offers, probed from `/proc` and `/sys`: online CPUs, memory, the disk its
//! volumes live on, network interfaces. The parsers take text; [`probe`] reads the files under
//! a root folder (`/` on the node, a temporary folder in tests).

use std::path::Path;

use trust::grid::{Capacity, Disk, Nic};

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// A file could not be read.
    #[error("read {path}")]
    Read {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A file does not say what it should.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Counts the CPUs in a kernel CPU list (`/sys/devices/system/cpu/online`: `0-3,5,7-8`).
pub fn parse_cpu_list(text: &str) -> Option<u32> {
    let mut count: u32 = 0;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if last < first {
            return None;
        }
        count = count.checked_add(last - first + 1)?;
    }
    (count > 0).then_some(count)
}

/// `MemTotal` of `/proc/meminfo`, in MiB.
pub fn parse_mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib / 1024)
}

/// A MAC address as `/sys/class/net/*/address` writes it (`52:54:00:12:34:56`).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn read(root: &Path, path: &str) -> Result<String, CapacityError> {
    std::fs::read_to_string(root.join(path.trim_start_matches('/'))).map_err(|source| {
        CapacityError::Read {
            path: path.to_owned(),
            source,
        }
    })
}

/// Probes the node under `root`. `volume_disk` is where workload volumes live: the data disk's
/// name and size in MiB, or `("tmpfs", size)` when the node has none.
pub fn probe(root: &Path, volume_disk: Disk) -> Result<Capacity, CapacityError> {
    let online = "/sys/devices/system/cpu/online";
    let cpus = parse_cpu_list(&read(root, online)?).ok_or(CapacityError::Parse {
        path: online.into(),
        reason: "not a CPU list",
    })?;
    let meminfo = "/proc/meminfo";
    let memory_mib = parse_mem_total_mib(&read(root, meminfo)?).ok_or(CapacityError::Parse {
        path: meminfo.into(),
        reason: "no MemTotal in kB",
    })?;
    let mut nics = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("sys/class/net")) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "lo" && trust::grid::node::check_device_name(n).is_ok())
            .filter(|n| n.len() <= 15)
            .collect();
        names.sort();
        for name in names {
            let address = read(root, &format!("/sys/class/net/{name}/address"));
            if let Some(mac) = address.ok().as_deref().and_then(parse_mac) {
                nics.push(Nic { name, mac });
            }
            if nics.len() == 16 {
                break;
            }
        }
    }
    Ok(Capacity {
        cpus,
        memory_mib: memory_mib.max(1),
        disks: vec![Disk {
            size_mib: volume_disk.size_mib.max(1),
            ..volume_disk
        }],
        nics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-3"), Some(4));
        assert_eq!(parse_cpu_list("0-3,5,7-8\n"), Some(7));
        for bad in ["", "a", "3-1", "0-", "-1", "0,,x"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn meminfo_and_mac_parse_strictly() {
        let meminfo = "MemTotal:        2030348 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total_mib(meminfo), Some(1982));
        assert_eq!(parse_mem_total_mib("MemTotal: 12\n"), None);
        assert_eq!(parse_mem_total_mib("MemFree: 1 kB\n"), None);
        assert_eq!(
            parse_mac("52:54:00:12:34:56\n"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        for bad in [
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "5:54:00:12:34:56",
            "zz:54:00:12:34:56",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_probe_reads_cpus_memory_and_interfaces_but_not_lo() {
        let root = tempfile::tempdir().unwrap();
        let put = |path: &str, text: &str| {
            let p = root.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("sys/devices/system/cpu/online", "0-1\n");
        put("proc/meminfo", "MemTotal: 1048576 kB\n");
        put("sys/class/net/lo/address", "00:00:00:00:00:00\n");
        put("sys/class/net/eth0/address", "52:54:00:12:34:56\n");
        let capacity = probe(
            root.path(),
            Disk {
                name: "vdb".into(),
                size_mib: 512,
            },
        )
        .unwrap();
        assert_eq!(capacity.cpus, 2);
        assert_eq!(capacity.memory_mib, 1024);
        assert_eq!(capacity.disk_mib(), 512);
        assert_eq!(capacity.nics.len(), 1);
        assert_eq!(capacity.nics[0].name, "eth0");
        put("proc/meminfo", "nothing\n");
        let err = probe(
            root.path(),
            Disk {
                name: "vdb".into(),
                size_mib: 1,
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "/proc/meminfo: no MemTotal in kB");
    }
}

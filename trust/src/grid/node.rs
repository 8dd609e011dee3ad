//! A node's registration: its key, its farm, its capacity and the release it runs.
//!
//! Body, in order: format (varint u32, = 1), sequence (varint u64, ≥ 1), node (32-byte key),
//! farm (32-byte key: the farm's id is its farmer's key), cpus (varint u32, 1 to 4096),
//! memory_mib (varint u64, ≥ 1), disks (count ≤ 16, then per disk: name (device name), size_mib
//! (varint u64, ≥ 1)), nics (count ≤ 16, then per interface: name (device name), mac (6 raw
//! bytes)), release_version (varint u64), release_manifest (32 bytes: BLAKE3 of the body of the
//! signed release manifest the node booted). Device names are 1 to 15 bytes from
//! `A-Z a-z 0-9 . _ -`, unique among the node's disks and among its interfaces. At most 4 KiB.

use alloc::string::String;
use alloc::vec::Vec;

use super::limits::{
    MAX_DEVICE_NAME_BYTES, MAX_NODE_CPUS, MAX_NODE_DISKS, MAX_NODE_NICS,
    MAX_NODE_REGISTRATION_BYTES,
};
use super::supersession::{Stream, Supersedes, Supersession};
use super::{checked_text, invalid, put_key, read, read_counter, read_digest, read_key, writer};
use crate::digest::Digest;
use crate::document::DocumentKind;
use crate::keys::PublicKey;
use crate::limits::{DecodeError, Reader};
use crate::signed::{NamedSigner, SignedBody};

/// One disk the node offers, by the name the node gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Device name, e.g. `vdb`, `nvme0n1`.
    pub name: String,
    /// Size in MiB.
    pub size_mib: u64,
}

/// One network interface of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// MAC address.
    pub mac: [u8; 6],
}

/// What a node offers to workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// CPUs (vCPUs of workloads are counted against these one for one).
    pub cpus: u32,
    /// Memory for workloads, in MiB.
    pub memory_mib: u64,
    /// Disks for workload volumes.
    pub disks: Vec<Disk>,
    /// Network interfaces.
    pub nics: Vec<Nic>,
}

impl Capacity {
    /// The sum of the disks' sizes, in MiB.
    pub fn disk_mib(&self) -> u64 {
        self.disks
            .iter()
            .fold(0u64, |sum, d| sum.saturating_add(d.size_mib))
    }
}

/// A node's registration, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    /// Grows with every registration the node sends (at boot, on a capacity change).
    pub sequence: u64,
    /// The node's key (its identity, kept on its data disk).
    pub node: PublicKey,
    /// The farm the node belongs to: the farmer's key.
    pub farm: PublicKey,
    /// What the node offers.
    pub capacity: Capacity,
    /// The version of the release the node runs.
    pub release_version: u64,
    /// BLAKE3 of the body of the signed release manifest the node runs.
    pub release_manifest: Digest,
}

impl SignedBody for NodeRegistration {
    const KIND: DocumentKind = DocumentKind::NodeRegistration;
    const MAX_BYTES: usize = MAX_NODE_REGISTRATION_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut w = writer();
        w.put(&self.sequence);
        put_key(&mut w, &self.node);
        put_key(&mut w, &self.farm);
        w.put(&self.capacity.cpus);
        w.put(&self.capacity.memory_mib);
        w.count(self.capacity.disks.len());
        for d in &self.capacity.disks {
            w.text(&d.name);
            w.put(&d.size_mib);
        }
        w.count(self.capacity.nics.len());
        for n in &self.capacity.nics {
            w.text(&n.name);
            w.array(&n.mac);
        }
        w.put(&self.release_version);
        w.array(self.release_manifest.as_bytes());
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read(bytes, |r| {
            let sequence = read_counter(r, "sequence")?;
            let node = read_key(r, "node")?;
            let farm = read_key(r, "farm")?;
            let at = r.position();
            let cpus: u32 = r.take("cpus")?;
            if cpus == 0 || cpus > MAX_NODE_CPUS {
                return Err(invalid("cpus", at, "must be 1 to 4096"));
            }
            let at = r.position();
            let memory_mib: u64 = r.take("memory_mib")?;
            if memory_mib == 0 {
                return Err(invalid("memory_mib", at, "must be at least 1"));
            }
            let count = r.count("disk count", MAX_NODE_DISKS)?;
            let mut disks: Vec<Disk> = Vec::with_capacity(count);
            for _ in 0..count {
                let at = r.position();
                let name = device_name(r, "disk name")?;
                if disks.iter().any(|d| d.name == name) {
                    return Err(invalid("disk name", at, "two disks have the same name"));
                }
                let at = r.position();
                let size_mib: u64 = r.take("disk size_mib")?;
                if size_mib == 0 {
                    return Err(invalid("disk size_mib", at, "must be at least 1"));
                }
                disks.push(Disk { name, size_mib });
            }
            let count = r.count("nic count", MAX_NODE_NICS)?;
            let mut nics: Vec<Nic> = Vec::with_capacity(count);
            for _ in 0..count {
                let at = r.position();
                let name = device_name(r, "nic name")?;
                if nics.iter().any(|n| n.name == name) {
                    return Err(invalid("nic name", at, "two interfaces have the same name"));
                }
                let mac = r.array::<6>("nic mac")?;
                nics.push(Nic { name, mac });
            }
            Ok(NodeRegistration {
                sequence,
                node,
                farm,
                capacity: Capacity {
                    cpus,
                    memory_mib,
                    disks,
                    nics,
                },
                release_version: r.take("release version")?,
                release_manifest: read_digest(r, "release manifest")?,
            })
        })
    }
}

fn device_name(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    checked_text(r, field, MAX_DEVICE_NAME_BYTES, check_device_name)
}

/// Disk and interface names: 1 to 15 bytes from `A-Z a-z 0-9 . _ -`.
pub fn check_device_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err("may only contain A-Z, a-z, 0-9, '.', '_' and '-'");
    }
    Ok(())
}

impl NamedSigner for NodeRegistration {
    const SIGNER_ROLE: &'static str = "node";

    fn signer(&self) -> PublicKey {
        self.node
    }
}

impl Supersedes for NodeRegistration {
    fn supersession(&self) -> Supersession {
        Supersession {
            stream: Stream::Node(self.node),
            version: self.sequence,
        }
    }
}

//! Which disk is the node's data disk: one rule, read by stage 0 (which reads and raises the
//! version floor on it) and by the node's `init` (which claims, formats and mounts it).
//!
//! Both sides read a disk's first and last bytes and call [`classify`]: empty (all zero at both
//! ends), ours (an ext4 superblock labelled [`DATA_FILESYSTEM`], with its filesystem UUID), or
//! foreign (anything else: never written). Then [`choose`] picks among the disks:
//!
//! - **Pinned** (a UUID recorded by stage 0 on the farmer's stick, passed to the node as
//!   `nullos.data=<uuid>`): only the disk of ours with that UUID is the data disk. Other disks
//!   labelled like ours are refused (one line naming them), and when the pinned disk is missing
//!   an empty disk is not formatted in its place: the node runs without a data disk.
//! - **Not pinned** (a PXE boot, a stick that has not seen a data disk yet): the one disk of
//!   ours is preferred over an empty one; two or more disks of ours are an ambiguity, refused
//!   with one line naming them, and none is taken; the first empty disk is formatted only when
//!   none is ours.
//!
//! No I/O: the bytes and the disks' names are given, so every case is a unit test with plain
//! buffers.

use crate::labels::DATA_FILESYSTEM;

/// How much of each end of a disk is read to classify it (a GPT's backup header is in the
/// last sector; the ext4 superblock ends at 2048).
pub const PROBE_BYTES: usize = 1 << 20;
/// The ext4 superblock's offset on the disk.
const SUPERBLOCK: usize = 1024;
/// Offset of the ext4 superblock magic (`s_magic`).
const EXT4_MAGIC_OFFSET: usize = SUPERBLOCK + 0x38;
/// The ext4 superblock magic.
const EXT4_MAGIC: [u8; 2] = 0xEF53u16.to_le_bytes();
/// Offset of the filesystem UUID (`s_uuid`, 16 bytes).
const EXT4_UUID_OFFSET: usize = SUPERBLOCK + 0x68;
/// Offset of the volume label (`s_volume_name`, 16 bytes, NUL-padded).
const EXT4_LABEL_OFFSET: usize = SUPERBLOCK + 0x78;

/// An ext4 filesystem UUID, as `blkid` and `nullos.data=` write it: 36 lowercase characters,
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FsUuid(pub [u8; 16]);

impl FsUuid {
    /// Parses the 36-character form (either case); `None` for anything else.
    pub fn parse(text: &str) -> Option<FsUuid> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut nibbles = Vec::with_capacity(32);
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if *b != b'-' {
                    return None;
                }
                continue;
            }
            nibbles.push(char::from(*b).to_digit(16)?);
        }
        for (byte, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
            let (high, low) = (pair.first()?, pair.get(1)?);
            *byte = u8::try_from(high * 16 + low).ok()?;
        }
        Some(FsUuid(out))
    }
}

impl std::fmt::Display for FsUuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a disk holds, judged from its first and last bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// All zero at both ends: nothing anyone could miss.
    Empty,
    /// An ext4 filesystem labelled [`DATA_FILESYSTEM`]: made by a NullOS node (or labelled so).
    Ours(FsUuid),
    /// Anything else: never written.
    Foreign,
}

/// The UUID of the ext4 filesystem labelled [`DATA_FILESYSTEM`] whose superblock is in
/// `first` (a disk's first bytes, at least 2048), or `None`.
pub fn data_filesystem(first: &[u8]) -> Option<FsUuid> {
    let magic = first.get(EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2)?;
    let label = first.get(EXT4_LABEL_OFFSET..EXT4_LABEL_OFFSET + 16)?;
    let uuid = first.get(EXT4_UUID_OFFSET..EXT4_UUID_OFFSET + 16)?;
    let len = label.iter().position(|b| *b == 0).unwrap_or(label.len());
    if magic != EXT4_MAGIC || label.get(..len) != Some(DATA_FILESYSTEM.as_bytes()) {
        return None;
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(uuid);
    Some(FsUuid(out))
}

/// Classifies a disk from the bytes at its start and its end (ours whatever the end holds:
/// ext4 uses the whole disk).
pub fn classify(first: &[u8], last: &[u8]) -> DiskState {
    if let Some(uuid) = data_filesystem(first) {
        return DiskState::Ours(uuid);
    }
    if first.iter().chain(last).all(|b| *b == 0) {
        return DiskState::Empty;
    }
    DiskState::Foreign
}

/// Whether a `/sys/block` name is a whole disk a node may use: `vd*`, `sd*` or `nvme<N>n<M>`
/// (not loop, ram, optical, or partitions).
pub fn is_disk_name(name: &str) -> bool {
    let letters = |rest: &str| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase());
    if let Some(rest) = name.strip_prefix("vd").or_else(|| name.strip_prefix("sd")) {
        return letters(rest);
    }
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    name.strip_prefix("nvme")
        .and_then(|rest| rest.split_once('n'))
        .is_some_and(|(controller, namespace)| digits(controller) && digits(namespace))
}

/// A disk that may be the data disk: its name (`vdb`, `nvme0n1`) and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The `/sys/block` name.
    pub name: String,
    /// What [`classify`] said.
    pub state: DiskState,
}

/// What to do with the disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Mount this disk of ours (an index into the candidates).
    Ours(usize),
    /// Format this empty disk, then mount it (an index into the candidates).
    Format(usize),
    /// No data disk this boot.
    Nothing,
}

/// [`choose`]'s decision, and the one warning line to print for disks refused, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The disk taken.
    pub take: Take,
    /// `disks labelled NULLOS-DATA refused: …` when disks of ours were left alone.
    pub refused: Option<String>,
}

/// The data disk among `candidates` (in the order they were found), with `pin` the UUID of
/// the pinned data disk if there is one (see the module's rule).
pub fn choose(candidates: &[Candidate], pin: Option<FsUuid>) -> Choice {
    let ours: Vec<(usize, FsUuid)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.state {
            DiskState::Ours(uuid) => Some((i, uuid)),
            _ => None,
        })
        .collect();
    let names = |which: &[(usize, FsUuid)]| {
        which
            .iter()
            .filter_map(|(i, uuid)| Some(format!("/dev/{} ({uuid})", candidates.get(*i)?.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(pin) = pin {
        let taken = ours.iter().find(|(_, uuid)| *uuid == pin).map(|(i, _)| *i);
        let others: Vec<(usize, FsUuid)> =
            ours.iter().copied().filter(|(_, u)| *u != pin).collect();
        let refused = (!others.is_empty()).then(|| {
            format!(
                "disks labelled {DATA_FILESYSTEM} refused: {}: not the pinned data disk {pin}",
                names(&others)
            )
        });
        return Choice {
            take: taken.map_or(Take::Nothing, Take::Ours),
            refused,
        };
    }
    match ours.as_slice() {
        [] => Choice {
            take: candidates
                .iter()
                .position(|c| c.state == DiskState::Empty)
                .map_or(Take::Nothing, Take::Format),
            refused: None,
        },
        [(i, _)] => Choice {
            take: Take::Ours(*i),
            refused: None,
        },
        several => Choice {
            take: Take::Nothing,
            refused: Some(format!(
                "disks labelled {DATA_FILESYSTEM} refused: {}: more than one and none pinned, so none is taken",
                names(several)
            )),
        },
    }
}

#[cfg(test)]
mod tests;

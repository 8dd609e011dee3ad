//! The cpio "new ASCII" (newc) header: magic `070701`, then thirteen 8-digit hex fields.
//!
//! A member is the 110-byte header, the NUL-terminated name padded so that header and name end
//! on a 4-byte boundary, then the data padded to 4 bytes. An archive ends with a member named
//! [`TRAILER`]. This is the format the kernel unpacks into its rootfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`).

/// Length of the fixed header.
pub const HEADER_LEN: usize = 110;
/// The newc magic.
pub const MAGIC: &[u8; 6] = b"070701";
/// The newc-with-checksum magic (same layout; read, never written).
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// The name of the member that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The largest name size (with its NUL) the kernel unpacks: `PATH_MAX`.
pub const MAX_NAME_SIZE: u32 = 4096;

/// File type mask of `mode`.
pub const S_IFMT: u32 = 0o170_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link (the data is the target).
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;

/// The header fields, in their order on the wire.
pub const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// Why 110 bytes are not a newc header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first six bytes are not `070701` (or `070702`).
    #[error("not a newc header (magic is not 070701)")]
    Magic,
    /// A field is not eight hex digits.
    #[error("header field {0} is not 8 hex digits")]
    Field(&'static str),
}

/// One member's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Inode number (our writer: 1, 2, … in archive order; 0 for the trailer).
    pub ino: u32,
    /// File type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u32,
    /// Data length in bytes.
    pub filesize: u32,
    /// Device of the file's filesystem, major (0 in our archives).
    pub dev_major: u32,
    /// Device of the file's filesystem, minor (0 in our archives).
    pub dev_minor: u32,
    /// For a device node, its major.
    pub rdev_major: u32,
    /// For a device node, its minor.
    pub rdev_minor: u32,
    /// Name length including its NUL.
    pub namesize: u32,
    /// Checksum (`070702` only; 0 otherwise).
    pub check: u32,
}

impl Header {
    fn fields(&self) -> [u32; 13] {
        [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            self.dev_major,
            self.dev_minor,
            self.rdev_major,
            self.rdev_minor,
            self.namesize,
            self.check,
        ]
    }

    /// The 110 header bytes (magic `070701`, lower-case hex).
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; HEADER_LEN];
        out[..6].copy_from_slice(MAGIC);
        for (i, value) in self.fields().into_iter().enumerate() {
            let field = &mut out[6 + 8 * i..14 + 8 * i];
            for (j, digit) in field.iter_mut().enumerate() {
                *digit = HEX[((value >> (28 - 4 * j)) & 0xf) as usize];
            }
        }
        out
    }

    /// Parses the first [`HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
        if &bytes[..6] != MAGIC && &bytes[..6] != MAGIC_CRC {
            return Err(HeaderError::Magic);
        }
        let mut v = [0u32; 13];
        for (i, (slot, name)) in v.iter_mut().zip(FIELDS).enumerate() {
            let field = &bytes[6 + 8 * i..14 + 8 * i];
            *slot = field.iter().try_fold(0u32, |acc, &b| {
                let digit = char::from(b).to_digit(16).ok_or(HeaderError::Field(name))?;
                Ok((acc << 4) | digit)
            })?;
        }
        Ok(Header {
            ino: v[0],
            mode: v[1],
            uid: v[2],
            gid: v[3],
            nlink: v[4],
            mtime: v[5],
            filesize: v[6],
            dev_major: v[7],
            dev_minor: v[8],
            rdev_major: v[9],
            rdev_minor: v[10],
            namesize: v[11],
            check: v[12],
        })
    }
}

/// Zero bytes that bring `len` to a multiple of 4.
pub fn padding(len: u64) -> usize {
    match len % 4 {
        0 => 0,
        1 => 3,
        2 => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_and_parse_round_trip_every_field() {
        let h = Header {
            ino: 1,
            mode: 0o100_755,
            uid: 2,
            gid: 3,
            nlink: 4,
            mtime: 0x6543_21ff,
            filesize: 0xffff_ffff,
            dev_major: 5,
            dev_minor: 6,
            rdev_major: 7,
            rdev_minor: 8,
            namesize: 9,
            check: 10,
        };
        let bytes = h.emit();
        assert_eq!(&bytes[..22], b"07070100000001000081ed");
        assert_eq!(Header::parse(&bytes), Ok(h));
    }

    #[test]
    fn bad_magic_and_fields_are_errors() {
        let mut bytes = Header::default().emit();
        bytes[0] = b'1';
        assert_eq!(Header::parse(&bytes), Err(HeaderError::Magic));
        let mut bytes = Header::default().emit();
        bytes[6 + 8 * 6] = b'+';
        assert_eq!(Header::parse(&bytes), Err(HeaderError::Field("filesize")));
        let mut upper = Header::default().emit();
        upper[6..14].copy_from_slice(b"0000ABCD");
        assert_eq!(Header::parse(&upper).map(|h| h.ino), Ok(0xabcd));
    }

    #[test]
    fn padding_rounds_up_to_four() {
        assert_eq!(
            [0, 1, 2, 3, 4, 5].map(padding),
            [0, 3, 2, 1, 0, 3],
            "bytes needed after 0..=5"
        );
    }
}

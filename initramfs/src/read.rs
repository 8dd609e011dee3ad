//! [`Reader`]: a bounded reader of newc archives held in memory, for inspection and tests.
//!
//! It reads concatenated archives as the kernel does (zero bytes may separate them; each
//! starts 4-byte aligned) and yields every member but the trailers. Nothing is allocated from
//! a declared size: names and data are slices of the input, a size is checked against the
//! bytes left before it is used, and every failure is an error naming its byte offset.

use crate::newc::{self, Header, HeaderError, HEADER_LEN, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT};
use crate::newc::{MAX_NAME_SIZE, S_IFREG};

/// Why bytes are not a (complete) newc archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A header, name, data or padding runs past the end of the input.
    #[error("cpio {what} at offset {offset} runs past the end of the archive")]
    Truncated {
        /// Where the part starts.
        offset: usize,
        /// Which part.
        what: &'static str,
    },
    /// The 110 header bytes do not parse.
    #[error("cpio header at offset {offset}")]
    Header {
        /// Where the header starts.
        offset: usize,
        /// Which field.
        #[source]
        source: HeaderError,
    },
    /// A name size of 0 or 1 (no name) or over `PATH_MAX`.
    #[error("cpio name size {size} at offset {offset} is not 2..=4096")]
    NameSize {
        /// Where the header starts.
        offset: usize,
        /// The declared size.
        size: u32,
    },
    /// A name that is not UTF-8 ended by its only NUL.
    #[error("cpio name at offset {offset} is not UTF-8 ended by one NUL")]
    Name {
        /// Where the name starts.
        offset: usize,
    },
    /// A following archive does not start on a 4-byte boundary.
    #[error("cpio archive at offset {offset} is not 4-byte aligned")]
    Misaligned {
        /// Where it starts.
        offset: usize,
    },
    /// The input ends (or is empty) before a trailer.
    #[error("cpio archive has no trailer (input ends at offset {offset})")]
    NoTrailer {
        /// The input's length.
        offset: usize,
    },
}

/// One member of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Offset of its header in the input.
    pub offset: usize,
    /// The header.
    pub header: Header,
    /// The name (no leading `/`, no NUL).
    pub name: &'a str,
    /// The data (a symlink's target, a file's contents).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.header.mode & S_IFMT == S_IFDIR
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.header.mode & S_IFMT == S_IFREG
    }

    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.header.mode & S_IFMT == S_IFLNK
    }

    /// A character device.
    pub fn is_char_device(&self) -> bool {
        self.header.mode & S_IFMT == S_IFCHR
    }
}

/// The members of the archives in `bytes`, in order; an iterator of `Result`s that stops after
/// the first error.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Inside an archive (its trailer not read yet).
    inside: bool,
    /// At least one archive read to its trailer.
    seen_trailer: bool,
    failed: bool,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            inside: false,
            seen_trailer: false,
            failed: false,
        }
    }

    /// The next member; `None` at the end of the input after a trailer.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'a>>, ReadError> {
        loop {
            if !self.inside {
                let zeros = self.rest().iter().take_while(|&&b| b == 0).count();
                self.pos += zeros;
                if self.pos == self.bytes.len() && self.seen_trailer {
                    return Ok(None);
                }
                if self.pos % 4 != 0 {
                    return Err(ReadError::Misaligned { offset: self.pos });
                }
                self.inside = true;
            }
            if self.pos == self.bytes.len() {
                return Err(ReadError::NoTrailer { offset: self.pos });
            }
            let entry = self.member()?;
            if entry.name == newc::TRAILER {
                self.inside = false;
                self.seen_trailer = true;
                continue;
            }
            return Ok(Some(entry));
        }
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// Reads the member at `pos` and moves past it.
    fn member(&mut self) -> Result<Entry<'a>, ReadError> {
        let offset = self.pos;
        let truncated = |at: usize, what| ReadError::Truncated { offset: at, what };
        let raw: &[u8; HEADER_LEN] = self
            .rest()
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(truncated(offset, "header"))?;
        let header = Header::parse(raw).map_err(|source| ReadError::Header { offset, source })?;
        if !(2..=MAX_NAME_SIZE).contains(&header.namesize) {
            return Err(ReadError::NameSize {
                offset,
                size: header.namesize,
            });
        }
        let name_at = offset + HEADER_LEN;
        // namesize ≤ 4096 and filesize < 2^32: no overflow of usize on 64-bit, checked anyway.
        let name_end = name_at
            .checked_add(header.namesize as usize)
            .ok_or(truncated(name_at, "name"))?;
        let name = self
            .bytes
            .get(name_at..name_end)
            .ok_or(truncated(name_at, "name"))?;
        let name = match name.split_last() {
            Some((0, name)) if !name.contains(&0) => {
                std::str::from_utf8(name).map_err(|_| ReadError::Name { offset: name_at })?
            }
            _ => return Err(ReadError::Name { offset: name_at }),
        };
        let data_at = align4(name_end).ok_or(truncated(name_end, "name padding"))?;
        if data_at > self.bytes.len() {
            return Err(truncated(name_end, "name padding"));
        }
        let data_end = data_at
            .checked_add(header.filesize as usize)
            .ok_or(truncated(data_at, "data"))?;
        let data = self
            .bytes
            .get(data_at..data_end)
            .ok_or(truncated(data_at, "data"))?;
        let next = align4(data_end).ok_or(truncated(data_end, "data padding"))?;
        if next > self.bytes.len() {
            return Err(truncated(data_end, "data padding"));
        }
        self.pos = next;
        Ok(Entry {
            offset,
            header,
            name,
            data,
        })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_entry() {
            Ok(entry) => entry.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

#[cfg(test)]
mod tests;

//! The initramfs format, in one place: what goes into an initramfs and how it is written,
//! read back and checked.
//!
//! Layering, bottom up:
//! - [`newc`] — the cpio "new ASCII" header ([`newc::Header`]): its 110 bytes, parsed and emitted.
//! - [`write`] — [`Writer`], the one newc writer: members in the caller's order, each missing
//!   parent directory written before its child, inode numbers in archive order, uid/gid 0, one
//!   mtime, 4-byte padding, the `TRAILER!!!` member. File contents are bytes in memory or a
//!   file on disk copied while writing (never loaded whole).
//! - [`tree`] — [`Tree`], the pure path tree: paths checked and sorted, parents added, each path
//!   once; written through the [`Writer`], so the same tree gives the same bytes.
//! - [`read`] — [`Reader`], a bounded reader of (concatenated) newc archives for inspection and
//!   tests; every failure names its byte offset.
//! - [`audit`] — [`audit::shell_problems`]: the no-shell rule every image's initramfs passes.
//! - [`elf`] — [`check_static_executable`]: an x86-64 ELF executable without a program
//!   interpreter, i.e. one that can run in an initramfs that has no libc.
//!
//! Users: image-builder (node and boot images), the node's init (each workload's guest
//! initramfs, built at run time), the benchmarks' fixtures, and the tests.
//!
//! ```
//! let mut tree = initramfs::Tree::new();
//! tree.add_file("/init", b"\x7fELF...".to_vec(), 0o755)?;
//! tree.add_char_device("/dev/console", 5, 1, 0o600)?;
//! let archive = tree.to_cpio(0)?;
//! let names: Vec<String> = initramfs::Reader::new(&archive)
//!     .map(|entry| entry.map(|e| e.name.to_owned()))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(names, ["dev", "dev/console", "init"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
pub mod elf;
pub mod newc;
pub mod read;
pub mod tree;
pub mod write;

pub use elf::{check_static_executable, ElfError};
pub use read::{Entry, ReadError, Reader};
pub use tree::{Contents, Node, Tree};
pub use write::{Error, Writer};

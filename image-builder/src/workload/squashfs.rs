//! The root image: a squashfs 4.0 filesystem, zstd-compressed, written with `backhand`.
//!
//! Reproducible: entries are written in sorted order, every owner is 0:0, every mtime (and the
//! superblock's) is the build's `mtime` except the root directory's, which backhand keeps at 0,
//! and backhand is built without its thread pool so block order never depends on scheduling.
//!
//! What the Debian 6.1 kernel needs (fs/squashfs/super.c), and what we write: magic `hsqs`,
//! version 4.0, compression id 6 (zstd, `CONFIG_SQUASHFS_ZSTD=y` in the cloud and generic
//! kernels), block size 128 KiB with a matching block_log, no compression options (the
//! kernel's zstd decompressor takes none), and an image padded to a multiple of 4 KiB so a
//! block device of whole sectors holds it.

use std::io::{Seek, Write};

use backhand::compression::Compressor;
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader, DEFAULT_BLOCK_SIZE};

use super::tree::{Node, RootTree};

/// Why the squashfs image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    /// backhand refused an entry.
    #[error("cannot add {path} to the squashfs image")]
    Add {
        /// The path in the image.
        path: String,
        /// backhand's error.
        #[source]
        source: backhand::BackhandError,
    },
    /// backhand could not write the image.
    #[error("cannot write the squashfs image")]
    Write(#[source] backhand::BackhandError),
}

/// Writes `tree` as a squashfs image to `out`; returns the number of bytes written.
pub fn write(tree: &RootTree, mtime: u32, out: impl Write + Seek) -> Result<u64, SquashfsError> {
    let mut fs = FilesystemWriter::default();
    let compressor =
        FilesystemCompressor::new(Compressor::Zstd, None).map_err(SquashfsError::Write)?;
    fs.set_compressor(compressor);
    fs.set_block_size(DEFAULT_BLOCK_SIZE);
    fs.set_time(mtime);
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_only_root_id();
    for (path, node) in tree.entries() {
        let header = NodeHeader::new(node.mode(path), 0, 0, mtime);
        let added = match node {
            Node::Dir => fs.push_dir(path, header),
            Node::File { source, .. } => fs.push_file_from_path(source.clone(), path, header),
            Node::Symlink { target } => fs.push_symlink(target, path, header),
        };
        added.map_err(|source| SquashfsError::Add {
            path: path.to_owned(),
            source,
        })?;
    }
    let (_superblock, written) = fs.write(out).map_err(SquashfsError::Write)?;
    Ok(written)
}

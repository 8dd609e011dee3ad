//! The artifact cache on the data disk: blobs named by their BLAKE3 digest, fetched from the
//! notary's blob store streamed into a `.partial` file, size-bounded and hashed while written
//! (`notary_client::Client::get_blob`), renamed into place only when the digest matched. One
//! file per digest, so contracts that use the same manifest or root image share it.
//!
//! A cached file is hashed again before it is handed out: the disk is not trusted more than
//! the network.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use notary_client::{Client, ClientError};
use trust::{Digest, Hasher};

/// Why a blob could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The notary did not give it (down, refused, or bytes that do not match the digest).
    #[error("fetch from the notary's blob store")]
    Fetch {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The cache could not be written or read.
    #[error("blob cache {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

impl BlobError {
    /// Whether trying again later may help (the notary was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BlobError::Fetch {
                source: ClientError::Transport { .. },
                ..
            }
        )
    }
}

/// The cache folder.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    /// A cache in `dir` (made if missing).
    pub fn new(dir: &Path) -> Result<BlobCache, BlobError> {
        std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(BlobCache {
            dir: dir.to_owned(),
        })
    }

    /// Where blob `digest` is kept.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// The blob's file: from the cache if it is there and still hashes to its name, else fetched
    /// (at most `max` bytes). Returns the path and whether it was fetched now.
    pub fn get(
        &self,
        client: &Client,
        digest: &Digest,
        max: u64,
    ) -> Result<(PathBuf, bool), BlobError> {
        let path = self.path(digest);
        if hashes_to(&path, digest, max) {
            return Ok((path, false));
        }
        let partial = self.dir.join(format!("{}.partial", digest.to_hex()));
        let io = |source| BlobError::Io {
            path: partial.clone(),
            source,
        };
        let mut file = File::create(&partial).map_err(io)?;
        let fetched = client.get_blob(digest, max, &mut file);
        if let Err(source) = fetched {
            drop(file);
            let _ = std::fs::remove_file(&partial);
            return Err(BlobError::Fetch {
                digest: *digest,
                source,
            });
        }
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&partial, &path).map_err(io)?;
        Ok((path, true))
    }

    /// Removes blobs no longer wanted (every file not named in `keep`).
    pub fn prune(&self, keep: &[Digest]) {
        let keep: Vec<String> = keep.iter().map(Digest::to_hex).collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Whether the file at `path` exists and its bytes (at most `max`) hash to `digest`.
fn hashes_to(path: &Path, digest: &Digest, max: u64) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut reader = file.take(max.saturating_add(1));
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut total: u64 = 0;
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                hasher.update(buffer.get(..n).unwrap_or(&[]));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    total <= max && hasher.finalize() == *digest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_counts_only_while_it_hashes_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path()).unwrap();
        let digest = Digest::of(b"root image");
        std::fs::write(cache.path(&digest), b"root image").unwrap();
        assert!(hashes_to(&cache.path(&digest), &digest, 100));
        assert!(
            !hashes_to(&cache.path(&digest), &digest, 5),
            "over the bound"
        );
        std::fs::write(cache.path(&digest), b"root imagE").unwrap();
        assert!(!hashes_to(&cache.path(&digest), &digest, 100));
        cache.prune(&[]);
        assert!(!cache.path(&digest).exists());
    }
}

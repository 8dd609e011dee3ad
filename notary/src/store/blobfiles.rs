//! Blobs as files, for the embedded backend: `<dir>/<64 hex>`, written to a temporary file in
//! the same directory, hashed while writing, synced, and renamed into place only when the
//! digest matches (so a reader never sees a partial or wrong blob).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use trust::Digest;

use super::{check_digest, stream_hashed, BlobError, BlobReader, StoreError};

/// A directory of content-addressed files.
#[derive(Debug)]
pub struct BlobFiles {
    dir: PathBuf,
}

impl BlobFiles {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<BlobFiles, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::backend("create the blob directory", e))?;
        Ok(BlobFiles {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// See [`Store::put_blob`](super::Store::put_blob).
    pub fn put(&self, digest: &Digest, reader: &mut dyn Read, max: u64) -> Result<u64, BlobError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&self.dir)
            .map_err(|e| StoreError::backend("create a blob upload file", e))?;
        let (found, len) = stream_hashed(reader, max, |chunk| {
            tmp.write_all(chunk)
                .map_err(|e| StoreError::backend("write a blob", e).into())
        })?;
        // On any error `tmp` is dropped, which deletes the partial upload.
        check_digest(digest, found)?;
        let path = self.path(digest);
        if path.exists() {
            return Ok(len);
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::backend("sync a blob", e))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::backend("rename a blob into place", e.error))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::backend("sync the blob directory", e))?;
        Ok(len)
    }

    /// See [`Store::get_blob`](super::Store::get_blob).
    pub fn get(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        match File::open(self.path(digest)) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(|e| StoreError::backend("read a blob's length", e))?
                    .len();
                Ok(Some(BlobReader {
                    len,
                    reader: Box::new(file),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::backend("open a blob", e)),
        }
    }
}

//! Initramfs compression, checked against what the kernel can unpack.

use std::io::{Read, Write};

/// Why compressing or decompressing failed, or a compressor was refused.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// The configuration names a compressor we do not produce.
    #[error("unsupported initrd compression '{0}' (supported: zstd, gzip, xz, none)")]
    Unsupported(String),
    /// The level is outside the compressor's range.
    #[error("compression level {level} is out of range for {name} ({min}..={max})")]
    Level {
        /// Compressor name.
        name: &'static str,
        /// Requested level.
        level: i32,
        /// Lowest level.
        min: i32,
        /// Highest level.
        max: i32,
    },
    /// The kernel's configuration cannot unpack this format.
    #[error("the kernel cannot unpack a {name} initramfs ({symbol} is not set in its config); choose another initrd.compression")]
    KernelLacks {
        /// Compressor name.
        name: &'static str,
        /// The kernel config symbol that would be needed.
        symbol: &'static str,
    },
    /// The compressor failed.
    #[error("{0} compression failed")]
    Compress(&'static str, #[source] std::io::Error),
    /// The data could not be decompressed.
    #[error("cannot decompress {0} data")]
    Decompress(&'static str, #[source] std::io::Error),
    /// Decompressed data is larger than the caller allows.
    #[error("decompressed data exceeds {0} bytes")]
    TooLarge(u64),
}

/// How the initramfs is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Zstandard (the default): fast to unpack, the kernel's `CONFIG_RD_ZSTD`.
    Zstd {
        /// 1..=19.
        level: i32,
    },
    /// gzip (`CONFIG_RD_GZIP`).
    Gzip {
        /// 1..=9.
        level: i32,
    },
    /// xz with CRC32 checks, the only xz check the kernel's unpacker supports (`CONFIG_RD_XZ`).
    Xz {
        /// 0..=9.
        level: i32,
    },
    /// Plain cpio.
    None,
}

/// zstd's compression uses this many worker threads. A fixed number, not the machine's core
/// count, so that the output does not depend on the build machine.
const ZSTD_WORKERS: u32 = 4;

impl Compression {
    /// From the config's `initrd.compression` and optional `initrd.level`.
    pub fn from_config(name: &str, level: Option<i32>) -> Result<Compression, CompressError> {
        let check = |name: &'static str, level: i32, min: i32, max: i32| {
            if (min..=max).contains(&level) {
                Ok(level)
            } else {
                Err(CompressError::Level {
                    name,
                    level,
                    min,
                    max,
                })
            }
        };
        Ok(match name {
            "zstd" => Compression::Zstd {
                level: check("zstd", level.unwrap_or(19), 1, 19)?,
            },
            "gzip" => Compression::Gzip {
                level: check("gzip", level.unwrap_or(9), 1, 9)?,
            },
            "xz" => Compression::Xz {
                level: check("xz", level.unwrap_or(6), 0, 9)?,
            },
            "none" => Compression::None,
            other => return Err(CompressError::Unsupported(other.to_owned())),
        })
    }

    /// The compressor's name.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::Zstd { .. } => "zstd",
            Compression::Gzip { .. } => "gzip",
            Compression::Xz { .. } => "xz",
            Compression::None => "none",
        }
    }

    /// The level, for the compressors that have one.
    pub fn level(&self) -> Option<i32> {
        match *self {
            Compression::Zstd { level }
            | Compression::Gzip { level }
            | Compression::Xz { level } => Some(level),
            Compression::None => None,
        }
    }

    /// The kernel config symbol that must be `y` for the kernel to unpack this format.
    pub fn kernel_symbol(&self) -> Option<&'static str> {
        match self {
            Compression::Zstd { .. } => Some("CONFIG_RD_ZSTD"),
            Compression::Gzip { .. } => Some("CONFIG_RD_GZIP"),
            Compression::Xz { .. } => Some("CONFIG_RD_XZ"),
            Compression::None => None,
        }
    }

    /// Refuses a compressor the kernel (given its `.config` text) cannot unpack.
    pub fn check_kernel_config(&self, kernel_config: &str) -> Result<(), CompressError> {
        let Some(symbol) = self.kernel_symbol() else {
            return Ok(());
        };
        let wanted = format!("{symbol}=y");
        if kernel_config.lines().any(|l| l.trim() == wanted) {
            Ok(())
        } else {
            Err(CompressError::KernelLacks {
                name: self.name(),
                symbol,
            })
        }
    }

    /// Compresses `data`. Deterministic: the same bytes in give the same bytes out.
    pub fn compress(&self, data: &[u8]) -> Result<Vec<u8>, CompressError> {
        let name = self.name();
        let err = |e| CompressError::Compress(name, e);
        match *self {
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::Encoder::new(Vec::new(), level).map_err(err)?;
                enc.include_checksum(true).map_err(err)?;
                enc.multithread(ZSTD_WORKERS).map_err(err)?;
                enc.set_pledged_src_size(Some(data.len() as u64))
                    .map_err(err)?;
                enc.write_all(data).map_err(err)?;
                enc.finish().map_err(err)
            }
            Compression::Gzip { level } => {
                // flate2's GzEncoder writes mtime 0 and no file name: nothing host-specific.
                let level = flate2::Compression::new(level.unsigned_abs());
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
                enc.write_all(data).map_err(err)?;
                enc.finish().map_err(err)
            }
            Compression::Xz { level } => {
                let stream = xz2::stream::Stream::new_easy_encoder(
                    level.unsigned_abs(),
                    xz2::stream::Check::Crc32,
                )
                .map_err(|e| err(e.into()))?;
                let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
                enc.write_all(data).map_err(err)?;
                enc.finish().map_err(err)
            }
            Compression::None => Ok(data.to_vec()),
        }
    }
}

/// Decompresses an initramfs of any format we produce, recognised by its magic bytes, refusing
/// to produce more than `limit` bytes. Plain cpio is returned as it is.
pub fn decompress_any(data: &[u8], limit: u64) -> Result<Vec<u8>, CompressError> {
    fn bounded(name: &'static str, r: impl Read, limit: u64) -> Result<Vec<u8>, CompressError> {
        let mut out = Vec::new();
        r.take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| CompressError::Decompress(name, e))?;
        if out.len() as u64 > limit {
            return Err(CompressError::TooLarge(limit));
        }
        Ok(out)
    }
    match data {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let dec = zstd::stream::Decoder::new(data)
                .map_err(|e| CompressError::Decompress("zstd", e))?;
            bounded("zstd", dec, limit)
        }
        [0x1f, 0x8b, ..] => bounded("gzip", flate2::read::GzDecoder::new(data), limit),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
            bounded("xz", xz2::read::XzDecoder::new(data), limit)
        }
        _ => bounded("cpio", data, limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips_deterministically() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for name in ["zstd", "gzip", "xz", "none"] {
            let c = Compression::from_config(name, None).unwrap();
            let a = c.compress(&data).unwrap();
            let b = c.compress(&data).unwrap();
            assert_eq!(a, b, "{name} output must be deterministic");
            assert_eq!(decompress_any(&a, 1 << 30).unwrap(), data, "{name}");
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let c = Compression::from_config("zstd", Some(1)).unwrap();
        let packed = c.compress(&[0u8; 100_000]).unwrap();
        assert!(matches!(
            decompress_any(&packed, 1000),
            Err(CompressError::TooLarge(1000))
        ));
    }

    #[test]
    fn refuses_what_the_kernel_cannot_unpack() {
        let config = "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n";
        let zstd = Compression::from_config("zstd", None).unwrap();
        let err = zstd.check_kernel_config(config).unwrap_err();
        assert!(err.to_string().contains("CONFIG_RD_ZSTD"), "{err}");
        assert!(Compression::from_config("gzip", None)
            .unwrap()
            .check_kernel_config(config)
            .is_ok());
        assert!(Compression::None.check_kernel_config("").is_ok());
        assert!(matches!(
            Compression::from_config("lz4", None),
            Err(CompressError::Unsupported(_))
        ));
        assert!(matches!(
            Compression::from_config("zstd", Some(22)),
            Err(CompressError::Level { .. })
        ));
    }
}

//! `debian.lock` lines: the pinned Debian packages an image's files come from.
//!
//! The lock file (written by `make lock`, read by the fetch scripts) has one package a line:
//! `<role> <package> <version> <sha256 of the .deb>`; `#` starts a comment line. The tools'
//! sysroot keeps the lines it was unpacked from in [`SYSROOT_PACKAGES`], which the builder reads
//! to name those packages in the release manifest.

use std::path::{Path, PathBuf};

use trust::BuildPackage;

/// The file in a tools sysroot naming the packages it was unpacked from (lock lines).
pub const SYSROOT_PACKAGES: &str = "packages.lock";

/// Why a lock file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The file could not be read.
    #[error("cannot read {path} (run `make sysroot`)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `<role> <package> <version> <sha256>`.
    #[error("{path} line {line}: {problem}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// What it is for: `kernel:<name>` or `tools`.
    pub role: String,
    /// The package as the release manifest names it.
    pub package: BuildPackage,
}

/// Parses lock-file text; `path` only names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Pinned>, LockError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |problem| LockError::Malformed {
            path: path.to_owned(),
            line: index + 1,
            problem,
        };
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [role, name, version, sha] = fields[..] else {
            return Err(malformed(
                "expected four fields: <role> <package> <version> <sha256>",
            ));
        };
        let sha256 =
            sha256_from_hex(sha).ok_or_else(|| malformed("SHA-256 is not 64 hex digits"))?;
        out.push(Pinned {
            role: role.to_owned(),
            package: BuildPackage {
                name: name.to_owned(),
                version: version.to_owned(),
                sha256,
            },
        });
    }
    Ok(out)
}

/// The packages a tools sysroot was unpacked from, in lock order.
pub fn sysroot_packages(sysroot: &Path) -> Result<Vec<BuildPackage>, LockError> {
    let path = sysroot.join(SYSROOT_PACKAGES);
    let text = std::fs::read_to_string(&path).map_err(|source| LockError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(parse(&text, &path)?
        .into_iter()
        .map(|p| p.package)
        .collect())
}

fn sha256_from_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    // from_str_radix alone would take a sign ("+e").
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "fedd424691c08ef0739729026be298e7be8236337bf8e031b3c7ec66794e6fc2";

    #[test]
    fn lines_parse_and_comments_are_skipped() {
        let text = format!("# header\n\nkernel:cloud linux-image-6.1.0-57-cloud-amd64 6.1.192-3 {SHA}\ntools e2fsprogs 1.47.0-2+b2 {SHA}\n");
        let pinned = parse(&text, Path::new("debian.lock")).unwrap();
        assert_eq!(pinned.len(), 2);
        assert_eq!(pinned[0].role, "kernel:cloud");
        assert_eq!(pinned[1].package.name, "e2fsprogs");
        assert_eq!(pinned[1].package.version, "1.47.0-2+b2");
        assert_eq!(pinned[1].package.sha256[..2], [0xfe, 0xdd]);
        assert_eq!(pinned[1].package.sha256[31], 0xc2);
    }

    #[test]
    fn bad_lines_are_named() {
        let short = parse("tools e2fsprogs 1.47\n", Path::new("l")).unwrap_err();
        assert_eq!(
            short.to_string(),
            "l line 1: expected four fields: <role> <package> <version> <sha256>"
        );
        let sha = parse(
            &format!("# x\ntools e2fsprogs 1 {}\n", &SHA[1..]),
            Path::new("l"),
        );
        assert!(sha
            .unwrap_err()
            .to_string()
            .starts_with("l line 2: SHA-256"));
        let sign = format!("tools e2fsprogs 1 +{}", &SHA[1..]);
        assert!(parse(&sign, Path::new("l")).is_err());
    }

    #[test]
    fn a_sysroot_without_its_package_list_says_how_to_make_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = sysroot_packages(dir.path()).unwrap_err();
        assert!(err.to_string().contains("make sysroot"), "{err}");
        std::fs::write(
            dir.path().join(SYSROOT_PACKAGES),
            format!("tools libc6 2.36 {SHA}\n"),
        )
        .unwrap();
        let packages = sysroot_packages(dir.path()).unwrap();
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].name, "libc6");
    }
}

//! What a boot image (stage 0) was built for, baked into it by image-builder at
//! [`crate::paths::BOOT_IMAGE_CONFIG`] and read by `boot`: the release profile and target it
//! boots (a release of another profile or target is refused, so a dev release never boots on
//! a metal boot image) and the lowest release version it accepts (a version floor that no
//! missing or wiped state file can lower).
//!
//! Text, one `key = value` a line, `#` comments:
//!
//! ```text
//! # Written by image-builder; read by boot (stage 0).
//! profile = metal
//! target = x86_64
//! min_version = 3
//! ```
//!
//! Stage 0 reads it without the `toml` feature, so the format is this small one of its own;
//! every key is required once, and anything else is an error.

use core::fmt;

/// Largest file read.
pub const MAX_BYTES: u64 = 4096;

/// The boot image's own facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootImageConfig {
    /// The release profile it boots (`dev`, `metal`).
    pub profile: String,
    /// The release target it boots (`x86_64`).
    pub target: String,
    /// The lowest release version it accepts.
    pub min_version: u64,
}

/// Why the text is not a boot image config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootImageConfigError {
    /// A line is not `key = value` with a known key.
    #[error("line {line}: expected profile, target or min_version = <value>")]
    BadLine {
        /// 1-based.
        line: usize,
    },
    /// A key appears twice.
    #[error("line {line}: {key} given twice")]
    Duplicate {
        /// 1-based.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A value is not a word of printable ASCII, or not a number for `min_version`.
    #[error("line {line}: bad value for {key}")]
    BadValue {
        /// 1-based.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// A key is missing.
    #[error("{0} is missing")]
    Missing(&'static str),
}

impl BootImageConfig {
    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "# Written by image-builder; read by boot (stage 0).\n\
             profile = {}\ntarget = {}\nmin_version = {}\n",
            self.profile, self.target, self.min_version
        )
    }

    /// Reads the file's text.
    pub fn parse(text: &str) -> Result<BootImageConfig, BootImageConfigError> {
        let (mut profile, mut target, mut min_version) = (None, None, None);
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or(BootImageConfigError::BadLine { line: line_no })?;
            let (key, slot): (&'static str, &mut Option<String>) = match key {
                "profile" => ("profile", &mut profile),
                "target" => ("target", &mut target),
                "min_version" => ("min_version", &mut min_version),
                _ => return Err(BootImageConfigError::BadLine { line: line_no }),
            };
            if slot.is_some() {
                return Err(BootImageConfigError::Duplicate { line: line_no, key });
            }
            let bad = BootImageConfigError::BadValue { line: line_no, key };
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad);
            }
            if key == "min_version" && value.parse::<u64>().is_err() {
                return Err(bad);
            }
            *slot = Some(value.to_owned());
        }
        let min_version = min_version
            .ok_or(BootImageConfigError::Missing("min_version"))?
            .parse()
            .map_err(|_| BootImageConfigError::Missing("min_version"))?;
        Ok(BootImageConfig {
            profile: profile.ok_or(BootImageConfigError::Missing("profile"))?,
            target: target.ok_or(BootImageConfigError::Missing("target"))?,
            min_version,
        })
    }
}

impl fmt::Display for BootImageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "profile={} target={} min_version={}",
            self.profile, self.target, self.min_version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = BootImageConfig {
            profile: "metal".into(),
            target: "x86_64".into(),
            min_version: 7,
        };
        assert_eq!(BootImageConfig::parse(&c.to_text()), Ok(c));
    }

    #[test]
    fn refuses_what_is_not_exactly_the_format() {
        let good = "profile = dev\ntarget = x86_64\nmin_version = 1\n";
        assert!(BootImageConfig::parse(good).is_ok());
        for (text, error) in [
            ("profile = dev\ntarget = x86_64\n", "min_version is missing"),
            (
                &*format!("{good}profile = metal\n"),
                "line 4: profile given twice",
            ),
            (
                &*format!("{good}floor = 2\n"),
                "line 4: expected profile, target or min_version = <value>",
            ),
            (
                "profile = dev\ntarget = x86_64\nmin_version = -1\n",
                "line 3: bad value for min_version",
            ),
            (
                "profile = a b\ntarget = x86_64\nmin_version = 1\n",
                "line 1: bad value for profile",
            ),
            (
                "profile\n",
                "line 1: expected profile, target or min_version = <value>",
            ),
        ] {
            assert_eq!(
                BootImageConfig::parse(text).unwrap_err().to_string(),
                error,
                "{text}"
            );
        }
    }
}

//! The farmer's settings for a node booted from a NullOS stick: the file [`FARMER_FILE`] on
//! the stick's release partition (FAT, so the farmer can write it on any computer; `image-builder
//! farm-stick` writes it). Everyone flashes the same signed image, so the farm a node belongs to
//! cannot be baked in: it comes from here on a stick, and from `nullos.farm=` on the kernel
//! command line of the farmer's `boot.ipxe` over PXE.
//!
//! ```text
//! # NullOS: this machine's farm (the farmer's public key) and, optionally, its notary.
//! farm = nullos-ed25519 0123…cdef
//! notary = http://10.0.2.2:7878
//! channel = http://releases.example/metal/release
//! ```
//!
//! Stage 0 reads it ([`FarmerSettings::parse`]: bounded, strict, one error naming the line) and
//! passes it to the node as the same `nullos.farm=<64 hex>`, `nullos.notary=<url>` and
//! `nullos.channel=<url>` words a PXE farmer writes ([`FarmerSettings::cmdline_words`]), through
//! its allow-list. The channel is the release folder the node watches for self-updates (see
//! `kernel-init`'s `update`). Neither key is ever taken from here: the node pins the notary key
//! and the release policy baked into the signed image, so a URL from the farmer can only choose
//! where signed documents are fetched from.

/// The file's name on the release partition.
pub const FARMER_FILE: &str = "nullos-node";
/// Largest file read.
pub const MAX_FARMER_FILE_BYTES: u64 = 4096;
/// Longest notary URL (the node's command-line values are at most 255 bytes).
pub const MAX_NOTARY_BYTES: usize = 200;
/// Longest release channel URL.
pub const MAX_CHANNEL_BYTES: usize = 200;
/// The prefix of a public key line (`trust`'s key text format).
const KEY_PREFIX: &str = "nullos-ed25519 ";

/// Why a farmer file was refused: one line, naming the line of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FarmerFileError {
    /// More than [`MAX_FARMER_FILE_BYTES`].
    #[error("{FARMER_FILE}: longer than {MAX_FARMER_FILE_BYTES} bytes")]
    TooLong,
    /// Not UTF-8 text.
    #[error("{FARMER_FILE}: not UTF-8 text")]
    NotText,
    /// A line that is not `key = value` with a known key.
    #[error("{FARMER_FILE} line {line}: {why}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// The farmer's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FarmerSettings {
    /// The farm: the farmer's public key, 64 lowercase hex digits.
    pub farm: Option<String>,
    /// The notary's URL, `http://host[:port]`, overriding the image's.
    pub notary: Option<String>,
    /// The release channel, `http://host[:port]/path`, overriding the image's `[update]`.
    pub channel: Option<String>,
}

/// Whether `text` is an `http://host[:port]` URL whose every byte may be on the node's command
/// line (ASCII letters, digits and `.-:[]`, the URL's `/`s).
pub fn is_notary_url(text: &str) -> bool {
    let Some(authority) = text.strip_prefix("http://") else {
        return false;
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    !authority.is_empty()
        && text.len() <= MAX_NOTARY_BYTES
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Whether `text` is an `http://host[:port]/path` release folder URL whose every byte may be on
/// the node's command line: the authority as [`is_notary_url`] has it, a path of ASCII letters,
/// digits and `._-/`.
pub fn is_channel_url(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    text.len() <= MAX_CHANNEL_BYTES
        && is_notary_url(&format!("http://{authority}"))
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

/// Whether `text` is a farm key as the command line carries it: 64 hex digits.
pub fn is_farm_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FarmerSettings {
    /// Reads the file's bytes (at most [`MAX_FARMER_FILE_BYTES`]): `#` comments and blank
    /// lines, `farm = <public key line or 64 hex>`, `notary = http://host[:port]`,
    /// `channel = http://host[:port]/path`, each once.
    pub fn parse(bytes: &[u8]) -> Result<FarmerSettings, FarmerFileError> {
        if bytes.len() as u64 > MAX_FARMER_FILE_BYTES {
            return Err(FarmerFileError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| FarmerFileError::NotText)?;
        let mut out = FarmerSettings::default();
        for (index, raw) in text.lines().enumerate() {
            let bad = |why: String| FarmerFileError::Line {
                line: index + 1,
                why,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| bad("not key = value".into()))?;
            let slot = match key {
                "farm" => {
                    let hex = value.strip_prefix(KEY_PREFIX).unwrap_or(value).trim();
                    if !is_farm_hex(hex) {
                        return Err(bad(
                            "farm is not a public key (nullos-ed25519 and 64 hex digits)".into(),
                        ));
                    }
                    (&mut out.farm, hex.to_ascii_lowercase())
                }
                "notary" => {
                    if !is_notary_url(value) {
                        return Err(bad(format!(
                            "notary is not http://host[:port] (at most {MAX_NOTARY_BYTES} bytes)"
                        )));
                    }
                    (&mut out.notary, value.trim_end_matches('/').to_owned())
                }
                "channel" => {
                    if !is_channel_url(value) {
                        return Err(bad(format!(
                            "channel is not http://host[:port]/path (letters, digits, ._-/; at most {MAX_CHANNEL_BYTES} bytes)"
                        )));
                    }
                    (&mut out.channel, value.trim_end_matches('/').to_owned())
                }
                _ => return Err(bad("unknown key (farm, notary, channel)".into())),
            };
            if slot.0.is_some() {
                return Err(bad(format!("{key} appears twice")));
            }
            *slot.0 = Some(slot.1);
        }
        Ok(out)
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# NullOS: this machine's farm (the farmer's public key) and, optionally, its notary.\n",
        );
        if let Some(farm) = &self.farm {
            text.push_str(&format!("farm = {KEY_PREFIX}{farm}\n"));
        }
        if let Some(notary) = &self.notary {
            text.push_str(&format!("notary = {notary}\n"));
        }
        if let Some(channel) = &self.channel {
            text.push_str(&format!("channel = {channel}\n"));
        }
        text
    }

    /// The node's command-line words: `nullos.farm=<hex>`, `nullos.notary=<url>`,
    /// `nullos.channel=<url>`.
    pub fn cmdline_words(&self) -> Vec<String> {
        let mut words = Vec::new();
        if let Some(farm) = &self.farm {
            words.push(format!("nullos.farm={farm}"));
        }
        if let Some(notary) = &self.notary {
            words.push(format!("nullos.notary={notary}"));
        }
        if let Some(channel) = &self.channel {
            words.push(format!("nullos.channel={channel}"));
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn the_file_round_trips_into_command_line_words() {
        let settings = FarmerSettings {
            farm: Some(HEX.into()),
            notary: Some("http://10.0.2.2:7878".into()),
            channel: Some("http://10.0.2.2:8080/metal/release".into()),
        };
        assert_eq!(
            FarmerSettings::parse(settings.to_text().as_bytes()),
            Ok(settings.clone())
        );
        assert_eq!(
            settings.cmdline_words(),
            [
                format!("nullos.farm={HEX}"),
                "nullos.notary=http://10.0.2.2:7878".into(),
                "nullos.channel=http://10.0.2.2:8080/metal/release".into(),
            ]
        );
        // The key as the farmer's .pub file has it, or bare; upper case hex; a trailing slash.
        let text = format!(
            "\n  # x\nfarm={}\nnotary = http://n.example/\n",
            HEX.to_uppercase()
        );
        let read = FarmerSettings::parse(text.as_bytes()).unwrap();
        assert_eq!(read.farm.as_deref(), Some(HEX));
        assert_eq!(read.notary.as_deref(), Some("http://n.example"));
        assert_eq!(FarmerSettings::parse(b""), Ok(FarmerSettings::default()));
    }

    #[test]
    fn every_mistake_is_one_error_naming_its_line() {
        let cases: [(&[u8], &str); 11] = [
            (
                b"farm = abc",
                "nullos-node line 1: farm is not a public key (nullos-ed25519 and 64 hex digits)",
            ),
            (
                b"# c\nnotary = https://x",
                "nullos-node line 2: notary is not http://host[:port] (at most 200 bytes)",
            ),
            (
                b"notary = http://a b",
                "nullos-node line 1: notary is not http://host[:port] (at most 200 bytes)",
            ),
            (
                b"notary = http://a/x",
                "nullos-node line 1: notary is not http://host[:port] (at most 200 bytes)",
            ),
            (
                b"notary_key = x",
                "nullos-node line 1: unknown key (farm, notary, channel)",
            ),
            (
                b"channel = http://r.example/a b",
                "nullos-node line 1: channel is not http://host[:port]/path (letters, digits, ._-/; at most 200 bytes)",
            ),
            (
                b"channel = http://r.example/a?x=1",
                "nullos-node line 1: channel is not http://host[:port]/path (letters, digits, ._-/; at most 200 bytes)",
            ),
            (
                b"channel = http://r.example/a\nchannel = http://r.example/b",
                "nullos-node line 2: channel appears twice",
            ),
            (b"farm", "nullos-node line 1: not key = value"),
            (
                b"notary = http://a\nnotary = http://b",
                "nullos-node line 2: notary appears twice",
            ),
            (b"\xff", "nullos-node: not UTF-8 text"),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                FarmerSettings::parse(bytes).unwrap_err().to_string(),
                want,
                "{bytes:?}"
            );
        }
        let long = vec![b'#'; usize::try_from(MAX_FARMER_FILE_BYTES).unwrap() + 1];
        assert_eq!(FarmerSettings::parse(&long), Err(FarmerFileError::TooLong));
        let url = format!("http://{}", "a".repeat(MAX_NOTARY_BYTES));
        assert!(!is_notary_url(&url));
        assert!(!is_channel_url(&format!(
            "http://r/{}",
            "a".repeat(MAX_CHANNEL_BYTES)
        )));
        assert!(is_channel_url("http://[fd00::1]:8080/release"));
        assert!(is_channel_url("http://r.example"));
        assert!(!is_channel_url("https://r.example/release"));
    }
}

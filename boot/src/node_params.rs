//! The node kernel's command line: the release's signed line, then the few parameters of
//! stage 0's own command line that belong to the node (the machine owner's settings), chosen
//! from an allow-list.
//!
//! Whoever sets stage 0's command line (the PXE server's script, the firmware's load options)
//! must not be able to add anything else to the node kernel's line. So the filter works on
//! the parameters exactly as the kernel split them ([`pid1::cmdline::split`]: its spaces include
//! 0xa0, its quotes group), and passes a parameter only if its name is one of
//! [`NODE_PARAMETERS`] and its value is 1 to [`MAX_VALUE_BYTES`] bytes of [`is_value_byte`]
//! (printable ASCII without spaces, quotes, `=` or backslashes). Such a parameter is one word
//! to the node kernel too, so the node kernel sees exactly the release's parameters and then
//! these (the property test in `node_params/tests.rs` holds this against a model of the
//! kernel's rules on arbitrary bytes). Every other `nullos.*` parameter is dropped with a
//! console line; the rest are stage 0's own kernel's (`console=`, `usb-storage.delay_use=`...)
//! and are not passed.

use pid1::cmdline::{escape, split, Param};

use crate::verify::{Refusal, CMDLINE_FILE};

/// The parameters stage 0 passes from its own command line (and from the stick: the farmer's
/// file, the pinned data disk) to the node kernel.
pub const NODE_PARAMETERS: [&str; 6] = [
    "nullos.control",
    "nullos.loglevel",
    "nullos.farm",
    "nullos.notary",
    "nullos.channel",
    "nullos.data",
];
/// Longest value passed.
pub const MAX_VALUE_BYTES: usize = 255;

/// The node kernel's command line, and what of stage 0's was not passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCmdline {
    /// The line for `kexec_file_load`.
    pub line: String,
    /// Each `nullos.*` parameter dropped: the parameter (escaped to printable ASCII) and why.
    pub dropped: Vec<(String, &'static str)>,
}

impl NodeCmdline {
    /// The console line for each dropped parameter:
    /// `nullos: dropped boot parameter <parameter>: <reason>`.
    pub fn dropped_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.dropped
            .iter()
            .map(|(word, why)| format!("nullos: dropped boot parameter {word}: {why}"))
    }
}

/// Whether `byte` may be in a passed value: ASCII letters, digits and `.-_:/[]@,+%`.
pub const fn is_value_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'.' | b'-' | b'_' | b':' | b'/' | b'[' | b']' | b'@' | b',' | b'+' | b'%'
        )
}

/// Why `param` (a `nullos.*` parameter) is not passed, or `None` if it is.
pub fn refusal_reason(param: &Param<'_>) -> Option<&'static str> {
    if !NODE_PARAMETERS
        .iter()
        .any(|name| name.as_bytes() == param.name)
    {
        return Some("not a parameter the node takes from stage 0");
    }
    let Some(value) = param.value else {
        return Some("no value");
    };
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Some("value empty or longer than 255 bytes");
    }
    if !value.iter().all(|b| is_value_byte(*b)) {
        return Some("value has a byte outside A-Z a-z 0-9 . - _ : / [ ] @ , + %");
    }
    None
}

/// The node kernel's command line: the release's verified `release` line, then the allowed
/// parameters of stage 0's own command line `boot_cmdline` (its bytes, as `/proc/cmdline`
/// holds them). Refuses a release line that is not one line of UTF-8 text, or to which
/// parameters cannot be appended as parameters (an open double quote, a bare `--`).
pub fn node_cmdline(release: &[u8], boot_cmdline: &[u8]) -> Result<NodeCmdline, Refusal> {
    let text =
        std::str::from_utf8(release).map_err(|_| Refusal::new(CMDLINE_FILE, "not UTF-8 text"))?;
    if text.trim_end_matches('\n').contains(['\0', '\n']) {
        return Err(Refusal::new(CMDLINE_FILE, "not a single line"));
    }
    // Only ASCII spaces are trimmed: the kernel reads bytes, and U+00A0 is the two bytes C2 A0,
    // of which only A0 is a space to it (trimming the character would drop the C2 the kernel
    // reads as part of the last parameter's value).
    let release_line = text.trim_matches(|c: char| {
        u8::try_from(c).is_ok_and(|b| b.is_ascii() && pid1::cmdline::is_kernel_space(b))
    });
    if release_line.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
        return Err(Refusal::new(
            CMDLINE_FILE,
            "an unclosed double quote (the node's parameters would be inside it)",
        ));
    }
    if split::split(release_line.as_bytes()).after_dashes.is_some() {
        return Err(Refusal::new(
            CMDLINE_FILE,
            "a bare -- (the node's parameters would be init's arguments)",
        ));
    }
    let mut line = release_line.to_owned();
    let mut dropped = Vec::new();
    for param in split::split(boot_cmdline).params {
        if !param.name.starts_with(b"nullos.") {
            continue;
        }
        // `nullos.release=` is stage 0's own: where the release came from, not the node's.
        if param.name == crate::network::CMDLINE_KEY.as_bytes() {
            continue;
        }
        match (refusal_reason(&param), param.value) {
            (None, Some(value)) => {
                // Checked above: the name is one of ours and the value is ASCII.
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&String::from_utf8_lossy(param.name));
                line.push('=');
                line.push_str(&String::from_utf8_lossy(value));
            }
            (reason, _) => {
                let word = match param.value {
                    Some(v) => format!("{}={}", escape(param.name), escape(v)),
                    None => escape(param.name),
                };
                dropped.push((word, reason.unwrap_or("no value")));
            }
        }
    }
    Ok(NodeCmdline { line, dropped })
}

#[cfg(test)]
mod tests;

//! The kernel command line split into parameters exactly as Linux splits it (`parse_args` and
//! `next_arg` in `lib/cmdline.c`, `isspace` from `lib/ctype.c`), so that a PID 1 of ours sees
//! the same words the kernel saw, whatever bytes the line holds.
//!
//! The kernel's rules, restated:
//! - Space is any byte its `isspace` names: 0x09–0x0d, 0x20 and 0xa0 (Latin-1's no-break space;
//!   so `à` in UTF-8, `c3 a0`, ends a word in its middle). Leading spaces are skipped.
//! - A word ends at a space outside double quotes or at the end of the line; every `"` in the
//!   word toggles "inside quotes", and a word that starts with `"` starts inside them.
//! - The parameter name runs up to the first `=` that is not the word's first byte (after a
//!   leading quote); without such an `=` the word has no value.
//! - Quotes removed: the word's leading `"`; a `"` right after the `=` and, then, a `"` that is
//!   the word's last byte; the word's last byte if it is `"` and the word started with one.
//!   Every other quote stays in the name or value.
//! - A parameter named `--` without a value ends the parameters: the rest is init's.
//!
//! The property test holds [`split`] to a transliteration of the C (the `reference` module,
//! feature `cmdline-reference`) on arbitrary bytes.

/// Whether the kernel's `isspace` is true for `byte` (its `_S` class in `lib/ctype.c`).
pub const fn is_kernel_space(byte: u8) -> bool {
    matches!(byte, 0x09..=0x0d | 0x20 | 0xa0)
}

/// One parameter as the kernel's `next_arg` yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// Everything before the first `=` (quotes removed as the kernel removes them).
    pub name: &'a [u8],
    /// Everything after it, or `None` without an `=`.
    pub value: Option<&'a [u8]>,
}

/// A command line as the kernel reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelArgs<'a> {
    /// The parameters before a bare `--`, in order.
    pub params: Vec<Param<'a>>,
    /// What follows a bare `--` (init's arguments), leading spaces skipped; `None` without one.
    pub after_dashes: Option<&'a [u8]>,
}

/// Splits `line` as the kernel does. The line ends at its first NUL byte, as a C string does.
pub fn split(line: &[u8]) -> KernelArgs<'_> {
    let line = match line.iter().position(|b| *b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let mut out = KernelArgs::default();
    let mut rest = skip_spaces(line);
    while !rest.is_empty() {
        let (param, next) = next_param(rest);
        rest = next;
        if param.value.is_none() && param.name == b"--" {
            out.after_dashes = Some(rest);
            break;
        }
        out.params.push(param);
    }
    out
}

/// `line` without its leading kernel spaces.
fn skip_spaces(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !is_kernel_space(*b))
        .unwrap_or(line.len());
    &line[start..]
}

/// The first parameter of `rest` (which does not start with a space) and what follows it.
fn next_param(rest: &[u8]) -> (Param<'_>, &[u8]) {
    let quoted = rest.first() == Some(&b'"');
    let word_and_rest = if quoted { &rest[1..] } else { rest };
    let mut in_quotes = quoted;
    let mut equals = None;
    let mut end = word_and_rest.len();
    for (i, byte) in word_and_rest.iter().enumerate() {
        if is_kernel_space(*byte) && !in_quotes {
            end = i;
            break;
        }
        if equals.is_none() && *byte == b'=' && i > 0 {
            equals = Some(i);
        }
        if *byte == b'"' {
            in_quotes = !in_quotes;
        }
    }
    let word = &word_and_rest[..end];
    // The byte that ended the word (a space) is consumed with it.
    let after = word_and_rest.get(end + 1..).unwrap_or_default();
    let ends_in_quote = word.last() == Some(&b'"');
    let param = match equals {
        None => Param {
            name: if quoted && ends_in_quote {
                &word[..word.len() - 1]
            } else {
                word
            },
            value: None,
        },
        Some(eq) => {
            let mut value = &word[eq + 1..];
            let mut trailing_quote_removed = false;
            if value.first() == Some(&b'"') {
                value = &value[1..];
                if ends_in_quote {
                    // The closing quote; when the value was only `"`, it was the opening one,
                    // and the value is empty.
                    value = value.get(..value.len().wrapping_sub(1)).unwrap_or_default();
                    trailing_quote_removed = true;
                }
            }
            if quoted && ends_in_quote && !trailing_quote_removed {
                value = &value[..value.len() - 1];
            }
            Param {
                name: &word[..eq],
                value: Some(value),
            }
        }
    };
    (param, skip_spaces(after))
}

#[cfg(test)]
mod tests;

//! A reference model of how Linux splits its command line, for property tests only (feature
//! `cmdline-reference`): `parse_args`, `next_arg` and `skip_spaces` of `lib/cmdline.c` and
//! `kernel/params.c`, and `isspace` from the `_ctype` table of `lib/ctype.c`, restated step by
//! step on a NUL-terminated byte buffer that is cut with NUL bytes the way the C cuts it. It is
//! deliberately unlike [`super::split`] (indices into one mutable buffer, C strings read back
//! at the end), so the two can be held against each other.

/// `lib/ctype.c`: the characters in class `_S` (space): HT, LF, VT, FF, CR, SP and, in the
/// Latin-1 upper half, NBSP (160).
fn c_isspace(c: u8) -> bool {
    const SPACE_CLASS: [u8; 7] = [9, 10, 11, 12, 13, 32, 160];
    SPACE_CLASS.contains(&c)
}

/// The C string starting at `at` in `buf` (up to the next NUL).
fn c_str(buf: &[u8], at: usize) -> Vec<u8> {
    buf[at..].iter().take_while(|b| **b != 0).copied().collect()
}

fn skip_spaces(buf: &[u8], mut at: usize) -> usize {
    while c_isspace(buf[at]) {
        at += 1;
    }
    at
}

/// One `next_arg` call at `args`: returns (param offset, value offset or none, next offset).
fn next_arg(buf: &mut [u8], mut args: usize) -> (usize, Option<usize>, usize) {
    let mut equals: usize = 0;
    let mut in_quote = false;
    let mut quoted = false;
    if buf[args] == b'"' {
        args += 1;
        in_quote = true;
        quoted = true;
    }
    let mut i = 0;
    while buf[args + i] != 0 {
        if c_isspace(buf[args + i]) && !in_quote {
            break;
        }
        if equals == 0 && buf[args + i] == b'=' {
            equals = i;
        }
        if buf[args + i] == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    let param = args;
    let mut val = None;
    if equals != 0 {
        buf[args + equals] = 0;
        let mut v = args + equals + 1;
        if buf[v] == b'"' {
            v += 1;
            if buf[args + i - 1] == b'"' {
                buf[args + i - 1] = 0;
            }
        }
        val = Some(v);
    }
    if quoted && i > 0 && buf[args + i - 1] == b'"' {
        buf[args + i - 1] = 0;
    }
    let next = if buf[args + i] != 0 {
        buf[args + i] = 0;
        args + i + 1
    } else {
        args + i
    };
    (param, val, skip_spaces(buf, next))
}

/// The parameters (name, value) before a bare `--`, and what follows it if there is one.
pub type Split = (Vec<(Vec<u8>, Option<Vec<u8>>)>, Option<Vec<u8>>);

/// `parse_args` over `line` (cut at its first NUL, like a C string).
pub fn parse_args(line: &[u8]) -> Split {
    let mut buf: Vec<u8> = line.iter().take_while(|b| **b != 0).copied().collect();
    buf.push(0);
    let mut params = Vec::new();
    let mut args = skip_spaces(&buf, 0);
    while buf[args] != 0 {
        let (param, val, next) = next_arg(&mut buf, args);
        args = next;
        // The C reads the strings only after the next call has cut the buffer again; reading
        // them now gives the same bytes, since a later cut never reaches back into this word.
        let name = c_str(&buf, param);
        let value = val.map(|v| c_str(&buf, v));
        if value.is_none() && name == b"--" {
            return (params, Some(c_str(&buf, args)));
        }
        params.push((name, value));
    }
    (params, None)
}

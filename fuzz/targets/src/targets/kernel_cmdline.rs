//! The kernel command line as our PID 1s split it (`pid1::cmdline::split`) and the node's line
//! stage 0 makes from it (`boot::node_params::node_cmdline`): the split is the kernel's (held
//! against the step-by-step model of `lib/cmdline.c`), and whatever stage 0's own line holds,
//! the node kernel sees the release's parameters and then only allowed ones.
//!
//! Input: the release's command line, a 0x00 byte, stage 0's command line (without a 0x00,
//! the whole input is stage 0's line and the release line is `console=ttyS0`).

use boot::node_params::{node_cmdline, refusal_reason};
use pid1::cmdline::{reference, split, Param};

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let (release, boot) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"console=ttyS0"[..], data),
    };
    let ours = split::split(boot);
    let model = reference::parse_args(boot);
    let ours_owned: Vec<(Vec<u8>, Option<Vec<u8>>)> = ours
        .params
        .iter()
        .map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(ours_owned, model.0, "parameters differ from the kernel's");
    assert_eq!(ours.after_dashes.map(<[u8]>::to_vec), model.1);
    let Ok(node) = node_cmdline(release, boot) else {
        return;
    };
    let (release_params, _) = reference::parse_args(release);
    let (node_params, node_rest) = reference::parse_args(node.line.as_bytes());
    assert_eq!(node_rest, None);
    assert!(node_params.starts_with(&release_params));
    let passed = &node_params[release_params.len()..];
    for (name, value) in passed {
        let param = Param {
            name,
            value: value.as_deref(),
        };
        assert!(refusal_reason(&param).is_none(), "{param:?} passed");
    }
    let allowed: Vec<(Vec<u8>, Option<Vec<u8>>)> = ours
        .params
        .iter()
        .filter(|p| p.name.starts_with(b"nullos.") && refusal_reason(p).is_none())
        .map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(passed, &allowed[..], "the node kernel would see other parameters");
}

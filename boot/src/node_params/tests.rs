use pid1::cmdline::reference;
use proptest::prelude::*;

use super::*;

fn node(release: &str, boot: &[u8]) -> NodeCmdline {
    node_cmdline(release.as_bytes(), boot).unwrap()
}

#[test]
fn the_release_line_then_the_nodes_parameters() {
    let n = node(
        "console=ttyS0 quiet\n",
        b"console=ttyS0 quiet usb-storage.delay_use=0 nullos.control=10.0.2.2:7878 nullos.loglevel=debug -- nullos.loglevel=info",
    );
    assert_eq!(
        n.line,
        "console=ttyS0 quiet nullos.control=10.0.2.2:7878 nullos.loglevel=debug"
    );
    assert!(n.dropped.is_empty());
    assert_eq!(node("a b", b"").line, "a b");
    assert_eq!(
        node("", b"nullos.loglevel=warn").line,
        "nullos.loglevel=warn"
    );
}

/// Found by the `kernel_cmdline` fuzz target: a release line ending in U+00A0 (bytes C2 A0)
/// keeps its C2, which the kernel reads as part of the last value (A0 alone is its space).
#[test]
fn a_release_line_ending_in_a_no_break_space_keeps_its_bytes() {
    let n = node("con/soo=\u{a0}", b"nullos.loglevel=debug");
    assert_eq!(n.line, "con/soo=\u{a0} nullos.loglevel=debug");
    let (release, _) = reference::parse_args("con/soo=\u{a0}".as_bytes());
    let (node_params, _) = reference::parse_args(n.line.as_bytes());
    assert!(node_params.starts_with(&release));
    assert_eq!(release[0].1.as_deref(), Some(&b"\xc2"[..]));
}

#[test]
fn the_release_url_stays_with_stage_0() {
    let n = node(
        "console=ttyS0\n",
        b"quiet nullos.release=http://10.0.2.2:8080/release nullos.loglevel=debug",
    );
    assert_eq!(n.line, "console=ttyS0 nullos.loglevel=debug");
    assert!(n.dropped.is_empty());
}

/// Issue 14: `nullos.x=à` (c3 a0) followed by `init=/bin/sh` was one word to stage 0 and two to
/// the node kernel, so whoever set stage 0's command line could add any node parameter.
#[test]
fn a_word_split_by_0xa0_is_refused_and_adds_nothing() {
    let boot = "nullos.x=àinit=/bin/sh nullos.control=a:1àrdinit=/x nullos.loglevel=debug";
    let n = node("console=ttyS0", boot.as_bytes());
    assert_eq!(n.line, "console=ttyS0 nullos.loglevel=debug");
    let lines: Vec<String> = n.dropped_lines().collect();
    assert_eq!(
        lines,
        [
            "nullos: dropped boot parameter nullos.x=\\xc3: not a parameter the node takes from stage 0",
            "nullos: dropped boot parameter nullos.control=a:1\\xc3: value has a byte outside A-Z a-z 0-9 . - _ : / [ ] @ , + %",
        ]
    );
    // A lone 0xa0 (not UTF-8) splits the same way.
    let n = node("q", b"nullos.loglevel=debug\xa0init=/bin/sh");
    assert_eq!(n.line, "q nullos.loglevel=debug");
}

#[test]
fn quotes_and_foreign_values_are_dropped() {
    let n = node(
        "q",
        br#"nullos.control="a:1 init=/bin/sh" nullos.role=guest nullos.loglevel nullos.control="#,
    );
    assert_eq!(n.line, "q");
    let words: Vec<&str> = n.dropped.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        words,
        [
            "nullos.control=a:1 init=/bin/sh",
            "nullos.role=guest",
            "nullos.loglevel",
            "nullos.control="
        ]
    );
}

#[test]
fn values_with_quotes_equals_or_backslashes_are_dropped() {
    let n = node(
        "q",
        br#"nullos.loglevel=a"" nullos.control=a=b nullos.control=a\b nullos.control=a:1"#,
    );
    assert_eq!(n.line, "q nullos.control=a:1");
    assert_eq!(n.dropped.len(), 3, "{:?}", n.dropped);
}

#[test]
fn release_lines_that_would_swallow_the_parameters_are_refused() {
    for bad in [&b"a=\"b"[..], b"a -- b", b"a\nb", b"a\0", &[0xff]] {
        let r = node_cmdline(bad, b"nullos.loglevel=debug").unwrap_err();
        assert_eq!(r.artifact, CMDLINE_FILE, "{bad:?}");
    }
    // Balanced quotes are fine.
    assert_eq!(
        node(r#"a="b c""#, b"nullos.loglevel=debug").line,
        r#"a="b c" nullos.loglevel=debug"#
    );
}

/// Bytes that matter to the kernel's splitting and to the filter.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(vec![b' ', b'"', b'=', 0xa0, b'\t', b'\n', b'-', 0xc3, b'\\']),
        2 => prop::sample::select(vec![b'a', b':', b'.', b'1']),
        1 => any::<u8>(),
    ]
}

/// Values that are nearly allowed: allowed bytes with a few that are not.
fn near_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            b'a', b'1', b':', b'.', b'[', b'-', b'"', b'=', b'\\', 0xe9,
        ]),
        0..8,
    )
}

/// Stage 0 command lines: a mix of the words an attacker would try and arbitrary bytes, run
/// together or apart.
fn boot_cmdline() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        near_value().prop_map(|v| [b"nullos.control=".to_vec(), v].concat()),
        near_value().prop_map(|v| [b"nullos.loglevel=".to_vec(), v].concat()),
        Just(b"nullos.x=".to_vec()),
        Just(b"init=/bin/sh".to_vec()),
        Just(b"--".to_vec()),
        prop::collection::vec(byte(), 0..12),
    ];
    let separator = prop::sample::select(vec![&b" "[..], b"", b"\xa0", b"\t"]);
    prop::collection::vec((word, separator), 0..8).prop_map(|words| {
        words
            .into_iter()
            .flat_map(|(w, s)| [w, s.to_vec()])
            .collect::<Vec<_>>()
            .concat()
    })
}

/// Release lines: printable text with spaces, quotes and `à`.
fn release_line() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b=", " ", "\"", "à", "--", "=", "\t"]),
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// What the node kernel sees is exactly the release's parameters, then the allowed ones of
    /// stage 0's line as stage 0's kernel saw them, each allowed; never anything else.
    #[test]
    fn the_node_kernel_sees_the_release_then_only_allowed_parameters(
        release in release_line(),
        boot in boot_cmdline(),
    ) {
        let Ok(node) = node_cmdline(release.as_bytes(), &boot) else {
            let (_, after) = reference::parse_args(release.as_bytes());
            prop_assert!(release.matches('"').count() % 2 == 1 || after.is_some());
            return Ok(());
        };
        let (release_params, release_rest) = reference::parse_args(release.as_bytes());
        prop_assert_eq!(release_rest, None);
        let (boot_params, _) = reference::parse_args(&boot);
        let allowed: Vec<(Vec<u8>, Option<Vec<u8>>)> = boot_params
            .into_iter()
            .filter(|(name, value)| {
                let param = Param { name, value: value.as_deref() };
                name.starts_with(b"nullos.") && refusal_reason(&param).is_none()
            })
            .collect();
        let (node_params, node_rest) = reference::parse_args(node.line.as_bytes());
        prop_assert_eq!(node_rest, None);
        let mut expected = release_params;
        expected.extend(allowed.iter().cloned());
        prop_assert_eq!(&node_params, &expected);
        for (name, value) in &allowed {
            prop_assert!(NODE_PARAMETERS.iter().any(|n| n.as_bytes() == name.as_slice()));
            let value = value.as_deref().unwrap_or_default();
            prop_assert!(value.iter().all(|b| b.is_ascii_graphic() && !b"\"=\\".contains(b)));
        }
    }
}

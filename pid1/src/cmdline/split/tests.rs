use proptest::prelude::*;

use super::*;
use crate::cmdline::reference;

/// `split`'s answer in the reference's shape.
fn ours(line: &[u8]) -> reference::Split {
    let args = split(line);
    let params = args
        .params
        .iter()
        .map(|p| (p.name.to_vec(), p.value.map(<[u8]>::to_vec)))
        .collect();
    (params, args.after_dashes.map(<[u8]>::to_vec))
}

fn names(line: &[u8]) -> Vec<Vec<u8>> {
    split(line).params.iter().map(|p| p.name.to_vec()).collect()
}

#[test]
fn spaces_are_the_kernels() {
    for byte in 0..=255u8 {
        let expected = matches!(byte, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0xa0);
        assert_eq!(is_kernel_space(byte), expected, "byte {byte:#04x}");
    }
    assert_eq!(
        names(b"a\xa0b\x0bc"),
        [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    // The finding of issue 14: `nullos.x=à` then `init=/bin/sh` is two parameters.
    let args = split("nullos.x=à init=/bin/sh".as_bytes());
    assert_eq!(args.params.len(), 2);
    assert_eq!(args.params[0].value, Some(&b"\xc3"[..]));
}

#[test]
fn quotes_are_removed_only_where_the_kernel_removes_them() {
    fn one(line: &[u8]) -> (&[u8], Option<&[u8]>) {
        let args = split(line);
        assert_eq!(args.params.len(), 1, "{line:?}");
        (args.params[0].name, args.params[0].value)
    }
    assert_eq!(one(br#"a="x y""#), (&b"a"[..], Some(&b"x y"[..])));
    assert_eq!(one(br#""a=x y""#), (&b"a"[..], Some(&b"x y"[..])));
    assert_eq!(one(br#""a b""#), (&b"a b"[..], None));
    assert_eq!(one(br#"a=x"y z"w"#), (&b"a"[..], Some(&br#"x"y z"w"#[..])));
    assert_eq!(one(br#"a""#), (&br#"a""#[..], None));
    assert_eq!(one(br#"a=""#), (&b"a"[..], Some(&b""[..])));
    assert_eq!(one(br#"=a=b"#), (&b"=a"[..], Some(&b"b"[..])));
    // An open quote runs to the end of the line.
    assert_eq!(one(br#"a="x y z"#), (&b"a"[..], Some(&b"x y z"[..])));
}

#[test]
fn a_bare_double_dash_ends_the_parameters() {
    let args = split(b" a -- b c");
    assert_eq!(args.params.len(), 1);
    assert_eq!(args.after_dashes, Some(&b"b c"[..]));
    assert_eq!(split(b"--=x b").params.len(), 2);
    assert_eq!(split(br#""--" b"#).after_dashes, Some(&b"b"[..]));
    assert_eq!(split(b"a\0 b").params.len(), 1, "a C string ends at NUL");
}

/// Bytes that matter to the kernel's splitting, and some that do not.
fn cmdline_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(vec![b' ', b'"', b'=', 0xa0, b'\t', b'\n', b'-', 0xc3]),
        3 => prop::sample::select(vec![b'a', b'b', b'.', b'/']),
        1 => any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn splits_as_the_kernel_does(line in prop::collection::vec(cmdline_byte(), 0..48)) {
        prop_assert_eq!(ours(&line), reference::parse_args(&line));
    }
}

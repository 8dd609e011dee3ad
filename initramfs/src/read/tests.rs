use super::*;
use crate::{Tree, Writer};

fn sample() -> Vec<u8> {
    let mut t = Tree::new();
    t.add_file("/init", b"\x7fELF init".to_vec(), 0o755)
        .unwrap();
    t.add_char_device("/dev/console", 5, 1, 0o600).unwrap();
    t.add_symlink("/sbin", "bin").unwrap();
    t.add_file("/etc/a", b"abc".to_vec(), 0o644).unwrap();
    t.to_cpio(42).unwrap()
}

#[test]
fn a_written_tree_reads_back() {
    let archive = sample();
    let entries: Vec<Entry> = Reader::new(&archive).collect::<Result<_, _>>().unwrap();
    let summary: Vec<(&str, u32, &[u8])> = entries
        .iter()
        .map(|e| (e.name, e.header.mode, e.data))
        .collect();
    assert_eq!(
        summary,
        [
            ("dev", 0o040_755, &b""[..]),
            ("dev/console", 0o020_600, b""),
            ("etc", 0o040_755, b""),
            ("etc/a", 0o100_644, b"abc"),
            ("init", 0o100_755, b"\x7fELF init"),
            ("sbin", 0o120_777, b"bin"),
        ]
    );
    assert!(entries[0].is_dir() && entries[1].is_char_device());
    assert!(entries[3].is_file() && entries[5].is_symlink());
}

#[test]
fn concatenated_archives_read_in_order_with_zero_padding_between() {
    let mut both = sample();
    both.extend_from_slice(&[0; 8]);
    let mut w = Writer::new(Vec::new(), 0);
    w.file("/etc/nullos/guest.toml", 0o644, b"name = \"x\"\n")
        .unwrap();
    let second = w.finish().unwrap();
    let second_at = both.len();
    both.extend_from_slice(&second);
    both.extend_from_slice(&[0; 4]);
    let entries: Vec<Entry> = Reader::new(&both).collect::<Result<_, _>>().unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    assert_eq!(
        &names[names.len() - 3..],
        ["etc", "etc/nullos", "etc/nullos/guest.toml"]
    );
    assert_eq!(entries[names.len() - 3].offset, second_at);

    let mut misaligned = sample();
    misaligned.push(0);
    misaligned.extend_from_slice(&second);
    assert_eq!(
        Reader::new(&misaligned).last(),
        Some(Err(ReadError::Misaligned {
            offset: sample().len() + 1
        }))
    );
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let archive = sample();
    for len in 0..archive.len() {
        let result: Result<Vec<Entry>, ReadError> = Reader::new(&archive[..len]).collect();
        assert!(result.is_err(), "prefix of {len} bytes read as complete");
    }
    assert_eq!(
        Reader::new(&[]).next(),
        Some(Err(ReadError::NoTrailer { offset: 0 }))
    );
    assert_eq!(
        Reader::new(&archive[..100]).next(),
        Some(Err(ReadError::Truncated {
            offset: 0,
            what: "header"
        }))
    );
}

#[test]
fn bad_headers_and_names_name_their_offset() {
    let archive = sample();
    let second = Reader::new(&archive).nth(1).unwrap().unwrap().offset;

    let mut bad = archive.clone();
    bad[second + 6 + 8] = b'x'; // mode
    let err = Reader::new(&bad).find_map(Result::err).unwrap();
    assert_eq!(
        err,
        ReadError::Header {
            offset: second,
            source: HeaderError::Field("mode")
        }
    );
    assert!(err.to_string().contains(&second.to_string()), "{err}");

    let mut huge = archive.clone();
    huge[second + 94..second + 102].copy_from_slice(b"ffffffff"); // namesize
    assert_eq!(
        Reader::new(&huge).find_map(Result::err),
        Some(ReadError::NameSize {
            offset: second,
            size: u32::MAX
        })
    );

    let mut no_nul = archive.clone();
    // "dev/console" + NUL: make the NUL a letter.
    no_nul[second + 110 + 11] = b'x';
    assert_eq!(
        Reader::new(&no_nul).find_map(Result::err),
        Some(ReadError::Name {
            offset: second + 110
        })
    );

    let mut big_file = archive.clone();
    big_file[second + 54..second + 62].copy_from_slice(b"7fffffff"); // filesize
    assert!(matches!(
        Reader::new(&big_file).find_map(Result::err),
        Some(ReadError::Truncated { what: "data", .. })
    ));
    assert!(Reader::new(b"garbage").next().unwrap().is_err());
}

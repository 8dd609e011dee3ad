use std::io::Write as _;

use super::*;
use crate::Reader;

/// The bytes the `cpio` crate's newc builder wrote for this archive (the writer the tree used
/// before this crate): `dev` (dir), `dev/console` (5:1), `init` (5 bytes), mtime 0x1234.
fn golden() -> Vec<u8> {
    let mut g = Vec::new();
    let member = |g: &mut Vec<u8>, fields: &str, name: &str, pad: usize, data: &[u8]| {
        g.extend_from_slice(b"070701");
        g.extend_from_slice(fields.as_bytes());
        g.extend_from_slice(name.as_bytes());
        g.push(0);
        g.extend(std::iter::repeat_n(0, pad));
        g.extend_from_slice(data);
    };
    #[rustfmt::skip]
    member(&mut g, concat!("00000001", "000041ed", "00000000", "00000000", "00000002", "00001234",
        "00000000", "00000000", "00000000", "00000000", "00000000", "00000004", "00000000"), "dev", 2, b"");
    #[rustfmt::skip]
    member(&mut g, concat!("00000002", "00002180", "00000000", "00000000", "00000001", "00001234",
        "00000000", "00000000", "00000000", "00000005", "00000001", "0000000c", "00000000"), "dev/console", 2, b"");
    #[rustfmt::skip]
    member(&mut g, concat!("00000003", "000081ed", "00000000", "00000000", "00000001", "00001234",
        "00000005", "00000000", "00000000", "00000000", "00000000", "00000005", "00000000"), "init", 1, b"\x7fELF!\0\0\0");
    #[rustfmt::skip]
    member(&mut g, concat!("00000000", "00000000", "00000000", "00000000", "00000001", "00000000",
        "00000000", "00000000", "00000000", "00000000", "00000000", "0000000b", "00000000"), "TRAILER!!!", 3, b"");
    g
}

#[test]
fn bytes_are_those_of_the_previous_writer() {
    let mut w = Writer::new(Vec::new(), 0x1234);
    w.char_device("dev/console", 5, 1, 0o600).unwrap();
    w.file("/init", 0o755, b"\x7fELF!").unwrap();
    assert_eq!(w.finish().unwrap(), golden());
}

#[test]
fn every_member_and_the_archive_are_padded_to_four_bytes() {
    for name_len in 1..=5 {
        for data_len in 0..=5 {
            let name = "n".repeat(name_len);
            let data = vec![0xa5; data_len];
            let mut w = Writer::new(Vec::new(), 0);
            w.file(&format!("d/{name}"), 0o644, &data).unwrap();
            w.file("z", 0o644, b"").unwrap();
            let archive = w.finish().unwrap();
            assert_eq!(archive.len() % 4, 0);
            let entries: Vec<_> = Reader::new(&archive).collect::<Result<_, _>>().unwrap();
            assert!(entries.iter().all(|e| e.offset % 4 == 0));
            assert_eq!(entries[1].data, data.as_slice());
            assert_eq!(entries[2].name, "z");
        }
    }
}

#[test]
fn members_keep_the_callers_order_after_their_parents() {
    let mut w = Writer::new(Vec::new(), 0);
    w.char_device("/dev/console", 5, 1, 0o600).unwrap();
    w.dir("proc", 0o755).unwrap();
    w.file("/usr/bin/a", 0o755, b"a").unwrap();
    w.file("/usr/lib/b", 0o644, b"b").unwrap();
    w.dir("/usr/lib/", 0o755).unwrap();
    w.dir("usr", 0o700).unwrap();
    let archive = w.finish().unwrap();
    let entries: Vec<_> = Reader::new(&archive).collect::<Result<_, _>>().unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "dev",
            "dev/console",
            "proc",
            "usr",
            "usr/bin",
            "usr/bin/a",
            "usr/lib",
            "usr/lib/b"
        ]
    );
    let inos: Vec<u32> = entries.iter().map(|e| e.header.ino).collect();
    assert_eq!(inos, [1, 2, 3, 4, 5, 6, 7, 8]);
    // The directory written first keeps its mode.
    assert_eq!(entries[3].header.mode, 0o040_755);
}

#[test]
fn duplicates_and_files_as_parents_are_refused() {
    let mut w = Writer::new(Vec::new(), 0);
    w.file("a", 0o644, b"").unwrap();
    assert!(matches!(w.file("/a", 0o644, b""), Err(Error::Duplicate(p)) if p == "/a"));
    assert!(matches!(w.file("a/b", 0o644, b""), Err(Error::Duplicate(p)) if p == "/a"));
    assert!(matches!(w.dir("a", 0o755), Err(Error::Duplicate(_))));
    assert!(matches!(w.symlink("l", ""), Err(Error::BadTarget(_))));
    assert!(matches!(w.file("../x", 0o644, b""), Err(Error::BadPath(_))));
    let long = "x".repeat(4096);
    assert!(matches!(w.file(&long, 0o644, b""), Err(Error::BadPath(_))));
    assert!(matches!(
        w.char_device("c", 1, 3, 0o020_600),
        Err(Error::BadMode {
            mode: 0o020_600,
            ..
        })
    ));
}

#[test]
fn streaming_from_a_file_equals_writing_its_bytes() {
    // Larger than one copy chunk and not a multiple of 4.
    let data: Vec<u8> = (0..COPY_CHUNK * 2 + 7)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let mut source = tempfile::NamedTempFile::new().unwrap();
    source.write_all(&data).unwrap();
    source.flush().unwrap();

    let mut from_disk = Writer::new(Vec::new(), 7);
    from_disk
        .file_from_disk("/lib/big", 0o644, source.path())
        .unwrap();
    let mut in_memory = Writer::new(Vec::new(), 7);
    in_memory.file("/lib/big", 0o644, &data).unwrap();
    assert_eq!(from_disk.finish().unwrap(), in_memory.finish().unwrap());
}

#[test]
fn sources_that_are_not_regular_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(Vec::new(), 0);
    let err = w.file_from_disk("x", 0o644, dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::ReadSource { path, .. } if path == dir.path()),
        "{err}"
    );
}

#[test]
fn the_trailer_ends_the_archive() {
    let archive = Writer::new(Vec::new(), 99).finish().unwrap();
    assert_eq!(archive.len(), 124);
    let header = crate::newc::Header::parse(archive[..110].try_into().unwrap()).unwrap();
    assert_eq!((header.ino, header.nlink, header.mtime), (0, 1, 0));
    assert_eq!(&archive[110..121], b"TRAILER!!!\0");
    assert_eq!(Reader::new(&archive).count(), 0);
}

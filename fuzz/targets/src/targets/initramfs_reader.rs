//! The newc reader (`image-builder inspect`, the tests, the benchmarks' unpacking): never panic;
//! every member read has its declared size and starts 4-byte aligned; and whatever the writer
//! accepts of those members, it writes as an archive the reader reads back whole.

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let mut writer = initramfs::Writer::new(Vec::new(), 0);
    for entry in initramfs::Reader::new(data) {
        let Ok(entry) = entry else {
            break;
        };
        assert_eq!(entry.offset % 4, 0);
        assert_eq!(entry.data.len() as u64, u64::from(entry.header.filesize));
        let perm = entry.header.mode & 0o7777;
        let _ = if entry.is_dir() {
            writer.dir(entry.name, perm)
        } else {
            writer.file(entry.name, perm, entry.data)
        };
    }
    let archive = writer.finish().expect("writing to memory cannot fail");
    for entry in initramfs::Reader::new(&archive) {
        assert!(entry.is_ok(), "the writer wrote what the reader refuses");
    }
}

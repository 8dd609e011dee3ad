//! The fuzz seed of `fuzz/fuzz_targets/initramfs_reader.rs`, generated from the writer so it
//! always matches the format: two concatenated archives (as the node's guest initramfs is),
//! with a directory, files, a symlink and a device node.
//!
//! Check: `cargo test -p initramfs --test fuzz_seeds`. Regenerate after a format change:
//! `NULLOS_WRITE_FUZZ_SEEDS=1 cargo test -p initramfs --test fuzz_seeds`.

use std::path::PathBuf;

use initramfs::{Tree, Writer};

fn seed() -> Vec<u8> {
    let mut tree = Tree::new();
    tree.add_file("/init", b"\x7fELF init".to_vec(), 0o755)
        .unwrap();
    tree.add_char_device("/dev/console", 5, 1, 0o600).unwrap();
    tree.add_dir("/proc").unwrap();
    tree.add_symlink("/bin", "usr/bin").unwrap();
    tree.add_file(
        "/lib/modules/nullos.index",
        b"nullos-module-index v1\n".to_vec(),
        0o644,
    )
    .unwrap();
    let mut archive = tree.to_cpio(0).unwrap();
    let mut second = Writer::new(Vec::new(), 0);
    second
        .file("etc/nullos/guest.toml", 0o644, b"name = \"hello\"\n")
        .unwrap();
    archive.extend(second.finish().unwrap());
    archive
}

#[test]
fn the_seed_is_the_writers_output() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/initramfs_reader/seed-1");
    if std::env::var_os("NULLOS_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, seed()).unwrap();
    }
    let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        stored == seed(),
        "{} is stale: regenerate it (see this file's header)",
        path.display()
    );
    assert_eq!(initramfs::Reader::new(&stored).count(), 11);
}

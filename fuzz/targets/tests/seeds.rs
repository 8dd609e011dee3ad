//! Writes the seed of `stage0_medium` (a FAT volume like a release partition), or checks the
//! committed one is what this code makes: `NULLOS_WRITE_SEEDS=1 cargo test --test seeds`.

use std::io::{Cursor, Write};
use std::path::Path;

use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};

fn release_volume() -> Vec<u8> {
    let mut image = Cursor::new(vec![0u8; 64 * 1024]);
    fatfs::format_volume(
        &mut image,
        FormatVolumeOptions::new()
            .volume_id(0x4e55_4c4c)
            .volume_label(*b"NULLOS-REL "),
    )
    .expect("format");
    {
        let fs = FileSystem::new(&mut image, FsOptions::new()).expect("open");
        let root = fs.root_dir();
        for (name, text) in [
            (
                "release.manifest",
                &b"not a signed manifest, but a file of that name"[..],
            ),
            ("kernel", &[0x4d, 0x5a, 0, 0, 1, 2, 3, 4][..]),
            ("initrd", &b"070701"[..]),
            ("cmdline", &b"console=ttyS0 nullos.role=node"[..]),
            ("nullos-state", boot::state::format(5).as_bytes()),
        ] {
            let mut file = root.create_file(name).expect("create");
            file.write_all(text).expect("write");
        }
        let dir = root.create_dir("EFI").expect("mkdir");
        dir.create_file("BOOTX64.EFI").expect("create");
    }
    image.into_inner()
}

#[test]
fn stage0_medium_seed_is_current() {
    let seed = release_volume();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/stage0_medium/seed-1");
    if std::env::var_os("NULLOS_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
        std::fs::write(&path, &seed).expect("write seed");
    }
    let committed =
        std::fs::read(&path).expect("the committed seed (NULLOS_WRITE_SEEDS=1 writes it)");
    assert!(
        committed == seed,
        "seed-1 differs from what this test makes"
    );
}

//! The built images carry no path of the machine that built them: not the checkout, not cargo's
//! home (dependencies' panic locations name their registry sources), not HOME. Otherwise the
//! same sources give another image under another user, checkout folder or `CARGO_HOME`
//! (the Makefile's `--remap-path-prefix` flags are what keeps them out).
//!
//! Looked at: every file of `build/dev` and `build/metal`, the contents of every initramfs in
//! them (the release's and stage 0's boot initrd, decompressed), the workload root images inside
//! (squashfs, file by file), and `build/workloads/`.

use std::path::{Path, PathBuf};

use backhand::{FilesystemReader, InnerNode};
use image_builder::compress::decompress_any;
use image_builder::initrd::file_contents;
use system_tests::*;

/// The build machine's paths that must not appear, as bytes. HOME is searched with a `/` after
/// it (a path inside it): a bare `/root` is also the kernel's own mount point, in every kernel.
fn needles() -> Vec<(&'static str, Vec<u8>)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let mut out = vec![("the checkout", repo_root())];
    if let Ok(real) = repo_root().canonicalize() {
        out.push(("the checkout", real));
    }
    out.extend(cargo_home.map(|c| ("CARGO_HOME", c)));
    out.extend(home.map(|h| ("HOME", h.join(""))));
    out.into_iter()
        .map(|(what, path)| (what, path.into_os_string().into_encoded_bytes()))
        // A path of one or two characters (HOME=/) would match anything.
        .filter(|(_, bytes)| bytes.len() > 2)
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every build path found in `bytes`, named by `what` (a file, or a file inside one), and in
/// whatever `bytes` hold: an initramfs's files, a squashfs image's files.
fn scan(what: &str, bytes: &[u8], needles: &[(&str, Vec<u8>)], found: &mut Vec<String>) {
    for (name, needle) in needles {
        if contains(bytes, needle) {
            found.push(format!(
                "{what} contains {name} ({})",
                String::from_utf8_lossy(needle)
            ));
        }
    }
    if bytes.starts_with(b"hsqs") {
        let fs = FilesystemReader::from_reader(std::io::Cursor::new(bytes))
            .unwrap_or_else(|e| panic!("{what}: not a readable squashfs: {e}"));
        for node in fs.files() {
            if let InnerNode::File(file) = &node.inner {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut fs.file(file).reader(), &mut data)
                    .unwrap_or_else(|e| panic!("{what}: {}: {e}", node.fullpath.display()));
                let inner = format!("{what}:{}", node.fullpath.display());
                scan(&inner, &data, needles, found);
            }
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn built_images_name_no_path_of_the_build_machine() {
    let needles = needles();
    assert!(
        needles.iter().any(|(what, _)| *what == "the checkout"),
        "{needles:?}"
    );
    let build = build_dir();
    let mut files = Vec::new();
    for dir in ["dev", "metal"] {
        let dir = build.join(dir);
        assert!(
            dir.join("release.manifest").is_file(),
            "{} has no built image: run `make image PROFILE=dev` and `PROFILE=metal`",
            dir.display()
        );
        files_under(&dir, &mut files);
    }
    let workloads = build.join("workloads");
    if workloads.is_dir() {
        files_under(&workloads, &mut files);
    }
    let mut found = Vec::new();
    let mut initrds = 0;
    for path in &files {
        let name = path
            .strip_prefix(&build)
            .unwrap_or(path)
            .display()
            .to_string();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        scan(&name, &bytes, &needles, &mut found);
        if path.file_name().is_some_and(|n| n == "initrd") {
            let cpio = decompress_any(&bytes, 1 << 30).unwrap_or_else(|e| panic!("{name}: {e}"));
            let entries = file_contents(&cpio).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                entries.iter().any(|(p, _)| p == "init"),
                "{name} has no /init"
            );
            for (inner, data) in entries {
                scan(&format!("{name}:/{inner}"), &data, &needles, &mut found);
            }
            initrds += 1;
        }
    }
    // dev and metal each: initrd, pxe/release/initrd, boot/initrd, pxe/initrd.
    assert!(initrds >= 8, "only {initrds} initramfs found in {files:?}");
    assert!(
        found.is_empty(),
        "build paths in the images:\n{}",
        found.join("\n")
    );
}

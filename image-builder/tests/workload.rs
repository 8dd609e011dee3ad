//! `image-builder workload`: the real binary on small workload folders, and the images read back
//! by backhand and (when installed) by squashfs-tools' `unsquashfs`, an independent reader.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use backhand::{FilesystemReader, InnerNode};
use common::{builder_with_umask, host_tool, static_executable, stderr, stdout};
use trust::{verify_workload, RestartPolicy, SecretKey, SignerPolicy};

const TOML: &str = r#"
name = "hello"
version = 3
entrypoint = ["/bin/hello", "--once"]
env = { GREETING = "hi" }
vcpus = 2
memory_mib = 256
network = true
restart = "on-failure"
[[volume]]
name = "data"
mount = "/data"
size_mib = 16
[files]
"/bin/hello" = "build/hello"
"#;

fn key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

/// A workload source folder under `root`: workload.toml, the entrypoint in build/, a rootfs/
/// with a text file, an executable and a symlink. Returns (source folder, key file).
fn source(root: &Path, toml: &str) -> (PathBuf, PathBuf) {
    let src = root.join("src");
    fs::create_dir_all(src.join("build")).unwrap();
    fs::create_dir_all(src.join("rootfs/etc")).unwrap();
    fs::create_dir_all(src.join("rootfs/usr/libexec")).unwrap();
    fs::write(src.join("workload.toml"), toml).unwrap();
    write_mode(&src.join("build/hello"), &static_executable(), 0o755);
    write_mode(&src.join("rootfs/etc/motd"), b"welcome\n", 0o664);
    write_mode(
        &src.join("rootfs/usr/libexec/tool"),
        b"#!/bin/hello\n",
        0o775,
    );
    symlink("../usr/libexec/tool", src.join("rootfs/etc/tool")).unwrap();
    let key_file = root.join("dev.key");
    fs::write(&key_file, key().to_text("test key")).unwrap();
    (src, key_file)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn build(src: &Path, out: &Path, key: &Path, umask: Option<&str>) -> Output {
    builder_with_umask(
        Path::new("/"),
        &[
            "workload",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
        umask,
    )
}

/// Builds the standard fixture; returns (temp dir guard, output folder).
fn built() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, key) = source(tmp.path(), TOML);
    let out = tmp.path().join("out");
    let run = build(&src, &out, &key, None);
    assert!(run.status.success(), "build failed: {}", stderr(&run));
    (tmp, out)
}

/// Asserts a run that failed with `code` and exactly one stderr line holding every needle.
fn assert_one_line(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} does not contain {n:?}");
    }
}

#[test]
fn two_builds_are_byte_identical_whatever_the_folder_and_umask() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (src_a, key_a) = source(a.path(), TOML);
    let (src_b, key_b) = source(&b.path().join("elsewhere/deeper"), TOML);
    let out_a = a.path().join("out");
    let out_b = b.path().join("out");
    assert!(build(&src_a, &out_a, &key_a, Some("022")).status.success());
    assert!(build(&src_b, &out_b, &key_b, Some("077")).status.success());
    for file in ["root.img", "workload.manifest"] {
        let (x, y) = (
            fs::read(out_a.join(file)).unwrap(),
            fs::read(out_b.join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs between the two builds");
    }
    let mut names: Vec<_> = fs::read_dir(&out_a)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["root.img", "workload.manifest"]);
}

#[test]
fn the_manifest_verifies_and_names_the_image() {
    let (_tmp, out) = built();
    let file = fs::read(out.join("workload.manifest")).unwrap();
    let m = verify_workload(&file, &SignerPolicy::single(key().public())).expect("verifies");
    let image = fs::read(out.join("root.img")).unwrap();
    assert_eq!(m.root.check("root.img", &image), Ok(()));
    assert_eq!(m.root.size, image.len() as u64);
    assert_eq!(m.name, "hello");
    assert_eq!(m.version, 3);
    assert_eq!(m.entrypoint, ["/bin/hello", "--once"]);
    assert_eq!(m.env, [("GREETING".to_string(), "hi".to_string())]);
    assert_eq!(m.workdir, "/");
    assert_eq!((m.vcpus, m.memory_mib, m.network), (2, 256, true));
    assert_eq!(m.restart, RestartPolicy::OnFailure);
    assert_eq!(m.volumes.len(), 1);
    assert_eq!((m.kernel, m.initrd), (None, None));
    let other = SignerPolicy::single(SecretKey::from_seed([8; 32]).public());
    assert!(verify_workload(&file, &other).is_err());
}

#[test]
fn the_image_reads_back_with_files_modes_and_owners() {
    let (_tmp, out) = built();
    let file = fs::File::open(out.join("root.img")).unwrap();
    let fs_reader = FilesystemReader::from_reader(std::io::BufReader::new(file)).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for node in fs_reader.files() {
        let path = node.fullpath.to_str().unwrap().to_owned();
        assert_eq!((node.header.uid, node.header.gid), (0, 0), "{path}");
        let kind = match &node.inner {
            InnerNode::Dir(_) => "dir".to_string(),
            InnerNode::File(f) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut fs_reader.file(f).reader(), &mut bytes).unwrap();
                if path == "/bin/hello" {
                    assert_eq!(bytes, static_executable());
                }
                format!("file {}", bytes.len())
            }
            InnerNode::Symlink(s) => format!("-> {}", s.link.display()),
            _ => "other".to_string(),
        };
        seen.insert(path, (kind, node.header.permissions));
    }
    let get = |p: &str| {
        seen.get(p)
            .unwrap_or_else(|| panic!("{p} missing: {seen:?}"))
    };
    assert_eq!(get("/bin/hello"), &("file 128".to_string(), 0o755));
    assert_eq!(get("/etc/motd"), &("file 8".to_string(), 0o644));
    assert_eq!(get("/usr/libexec/tool"), &("file 13".to_string(), 0o755));
    assert_eq!(get("/etc/tool").0, "-> ../usr/libexec/tool");
    for dir in ["/data", "/dev", "/etc", "/proc", "/run", "/sys"] {
        assert_eq!(get(dir), &("dir".to_string(), 0o755), "{dir}");
    }
    assert_eq!(get("/tmp"), &("dir".to_string(), 0o1777));
}

/// What the Debian 6.1 kernel's squashfs_fill_super checks, read from the raw superblock.
#[test]
fn the_superblock_is_what_the_debian_kernel_mounts() {
    let (_tmp, out) = built();
    let image = fs::read(out.join("root.img")).unwrap();
    let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(image[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(image[o..o + 8].try_into().unwrap());
    assert_eq!(&image[..4], b"hsqs", "magic");
    assert_eq!((u16_at(28), u16_at(30)), (4, 0), "version 4.0");
    assert_eq!(
        u16_at(20),
        6,
        "compression id 6 = zstd (CONFIG_SQUASHFS_ZSTD=y)"
    );
    assert_eq!(u32_at(12), 128 * 1024, "block size");
    assert_eq!(u16_at(22), 17, "block_log matches the block size");
    assert_eq!(u32_at(8), 1_700_000_000, "mtime from SOURCE_DATE_EPOCH");
    assert!(u32_at(4) > 10, "inode count");
    assert!(u16_at(26) >= 1, "the id table has root");
    assert!(
        u64_at(40) <= image.len() as u64,
        "bytes_used within the image"
    );
    assert_eq!(image.len() % 4096, 0, "padded to whole 4 KiB blocks");
}

#[test]
fn unsquashfs_lists_the_files() {
    let present = Command::new("unsquashfs").arg("-help").output().is_ok();
    if !host_tool("unsquashfs", "squashfs-tools", present) {
        return;
    }
    let (_tmp, out) = built();
    let image = out.join("root.img");
    let listing = Command::new("unsquashfs")
        .args(["-lln", "-d", ""])
        .arg(&image)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", stderr(&listing));
    let listing = stdout(&listing);
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")) || l.contains(&format!(" {path} -> ")))
            .unwrap_or_else(|| panic!("{path} not listed:\n{listing}"))
            .to_owned()
    };
    assert!(
        line("/bin/hello").starts_with("-rwxr-xr-x 0/0"),
        "{listing}"
    );
    assert!(line("/etc/motd").starts_with("-rw-r--r-- 0/0"), "{listing}");
    assert!(line("/etc/tool").starts_with("lrwxrwxrwx 0/0"), "{listing}");
    assert!(line("/tmp").starts_with("drwxrwxrwt 0/0"), "{listing}");
    for dir in ["/data", "/proc", "/sys", "/dev", "/run"] {
        assert!(line(dir).starts_with("drwxr-xr-x 0/0"), "{listing}");
    }
    let stats = Command::new("unsquashfs")
        .arg("-s")
        .arg(&image)
        .output()
        .unwrap();
    let stats = stdout(&stats);
    assert!(stats.contains("Compression zstd"), "{stats}");
    assert!(stats.contains("Block size 131072"), "{stats}");
}

#[test]
fn a_bad_toml_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, key) = source(
        tmp.path(),
        &TOML.replace("vcpus = 2", "vcpus = 2\ncolour = \"red\""),
    );
    let run = build(&src, &tmp.path().join("out"), &key, None);
    assert_one_line(
        &run,
        2,
        &["workload.toml", "line 7", "unknown field `colour`"],
    );
    assert!(!tmp.path().join("out").exists(), "nothing is written");

    let (src, key) = source(
        &tmp.path().join("b"),
        &TOML.replace("size_mib = 16", "size_mib = 0"),
    );
    let run = build(&src, &tmp.path().join("out"), &key, None);
    assert_one_line(&run, 2, &["workload.toml", "size_mib = 0"]);
}

#[test]
fn a_missing_entrypoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = TOML.replace("[\"/bin/hello\", \"--once\"]", "[\"/bin/nothere\"]");
    let (src, key) = source(tmp.path(), &toml);
    let run = build(&src, &tmp.path().join("out"), &key, None);
    assert_one_line(
        &run,
        1,
        &["refused: entrypoint /bin/nothere is not in the image"],
    );
    assert!(!tmp.path().join("out/workload.manifest").exists());
}

#[test]
fn a_dynamic_entrypoint_without_its_interpreter_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, key) = source(tmp.path(), TOML);
    // The test binary itself is dynamically linked against glibc.
    let me = fs::read(std::env::current_exe().unwrap()).unwrap();
    write_mode(&src.join("build/hello"), &me, 0o755);
    let run = build(&src, &tmp.path().join("out"), &key, None);
    assert_one_line(
        &run,
        1,
        &["entrypoint /bin/hello is dynamically linked", "crt-static"],
    );
}

#[test]
fn a_non_executable_entrypoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, key) = source(tmp.path(), TOML);
    fs::set_permissions(src.join("build/hello"), fs::Permissions::from_mode(0o644)).unwrap();
    let run = build(&src, &tmp.path().join("out"), &key, None);
    assert_one_line(&run, 1, &["entrypoint /bin/hello is not executable"]);
}

#[test]
fn the_key_is_required() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, _key) = source(tmp.path(), TOML);
    let run = builder_with_umask(
        Path::new("/"),
        &[
            "workload",
            src.to_str().unwrap(),
            "--out",
            "/nonexistent/out",
        ],
        &[],
        None,
    );
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("--key"));
}

#[test]
fn the_example_workload_toml_is_valid() {
    // examples/hello/workload.toml, with its binary replaced by the static fixture.
    let tmp = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/workload.toml");
    let text = fs::read_to_string(example).unwrap();
    let text = text.replace(
        "../../target/x86_64-unknown-linux-gnu/release/hello",
        "build/hello",
    );
    let (src, key_file) = source(tmp.path(), &text);
    let out = tmp.path().join("out");
    let run = build(&src, &out, &key_file, None);
    assert!(run.status.success(), "{}", stderr(&run));
    let file = fs::read(out.join("workload.manifest")).unwrap();
    let m = verify_workload(&file, &SignerPolicy::single(key().public())).unwrap();
    assert_eq!(m.entrypoint, ["/bin/hello"]);
    assert_eq!(m.volumes[0].mount, "/data");
    assert_eq!(m.volumes[0].size_mib, 16);
    assert!(m.network);
}

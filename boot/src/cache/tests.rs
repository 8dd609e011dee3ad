use std::collections::BTreeMap;

use trust::{SecretKey, SignerPolicy};

use super::*;
use crate::verify::tests::{dev_image, signed_release_files};
use crate::verify::verify;

fn signer() -> SecretKey {
    SecretKey::from_seed([1; 32])
}

fn policy() -> SignerPolicy {
    SignerPolicy::single(signer().public())
}

fn write_release(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn a_stored_release_verifies_from_the_cache_and_half_written_ones_never_count() {
    let source = tempfile::tempdir().unwrap();
    write_release(source.path(), &signed_release_files(3, &signer()));
    let verified = verify(
        &mut DirSource::new(source.path()),
        &policy(),
        &dev_image(),
        0,
    )
    .unwrap();

    let root = tempfile::tempdir().unwrap();
    // A write that was interrupted: never a candidate, removed by the next prune.
    std::fs::create_dir_all(root.path().join(CACHE_DIR).join(".incoming-3")).unwrap();
    assert!(store(root.path(), &verified).unwrap());
    assert!(!store(root.path(), &verified).unwrap(), "already cached");
    let cached = versions(root.path());
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].0, 3);
    let again = verify(
        &mut DirSource::new(&cached[0].1),
        &policy(),
        &dev_image(),
        2,
    )
    .unwrap();
    assert_eq!(again, verified, "the same bytes, verified again");
}

#[test]
fn prune_keeps_only_what_is_asked_and_ignores_foreign_names() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join(CACHE_DIR);
    for name in ["1", "2", "3", ".incoming-4", "notes", "007"] {
        std::fs::create_dir_all(cache.join(name)).unwrap();
    }
    assert_eq!(prune(root.path(), &[3, 2]).unwrap(), vec![1]);
    let mut left: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["007", "2", "3", "notes"]);
    let listed: Vec<u64> = versions(root.path()).into_iter().map(|(v, _)| v).collect();
    assert_eq!(
        listed,
        vec![3, 2],
        "highest first, names that are not versions ignored"
    );
}

#[test]
fn a_cached_file_larger_than_signed_or_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = signed_release_files(3, &signer());
    files.insert(KERNEL_FILE.into(), vec![0u8; 4096]);
    write_release(dir.path(), &files);
    let refusal = verify(&mut DirSource::new(dir.path()), &policy(), &dev_image(), 0).unwrap_err();
    assert_eq!(refusal.artifact, KERNEL_FILE);
    assert!(
        refusal.reason.contains("found 4096 bytes (not read)"),
        "{refusal}"
    );

    std::fs::remove_file(dir.path().join(KERNEL_FILE)).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, crate::verify::tests::KERNEL).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join(KERNEL_FILE)).unwrap();
    let refusal = verify(&mut DirSource::new(dir.path()), &policy(), &dev_image(), 0).unwrap_err();
    assert_eq!(refusal.artifact, KERNEL_FILE, "{refusal}");

    let mut source = DirSource::new(dir.path());
    assert!(source
        .read(MANIFEST_FILE, 10)
        .unwrap_err()
        .contains("more than the 10"));
}

#[test]
fn only_canonical_decimal_names_are_versions() {
    assert_eq!(parse_version("12"), Some(12));
    assert_eq!(parse_version("0"), Some(0));
    for name in [
        "",
        "012",
        "+1",
        "1a",
        ".incoming-1",
        "99999999999999999999999",
    ] {
        assert_eq!(parse_version(name), None, "{name}");
    }
}

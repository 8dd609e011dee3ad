use std::collections::BTreeMap;

use trust::{ArtifactRef, BuildInputs, SecretKey, SignedDocument};

use super::*;

pub(crate) const KERNEL: &[u8] = b"MZ a kernel image";
pub(crate) const INITRD: &[u8] = b"an initramfs";
pub(crate) const CMDLINE: &[u8] = b"console=ttyS0 quiet\n";

/// A release medium in memory; counts what was read.
#[derive(Default)]
struct Files {
    files: BTreeMap<String, Vec<u8>>,
    reads: Vec<String>,
}

impl Source for Files {
    fn len(&mut self, name: &str, _max: u64) -> Result<u64, String> {
        self.files
            .get(name)
            .map(|f| f.len() as u64)
            .ok_or_else(|| format!("{name} is missing"))
    }
    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        self.reads.push(name.to_owned());
        let file = self.files.get(name).ok_or("missing")?;
        if file.len() as u64 > max {
            return Err(format!("larger than {max} bytes"));
        }
        Ok(file.clone())
    }
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

/// The files of a release signed by `signer`, by name (shared with the network tests).
pub(crate) fn signed_release_files(version: u64, signer: &SecretKey) -> BTreeMap<String, Vec<u8>> {
    signed_profile_release_files(version, "dev", &[signer])
}

/// The files of a release of `profile` signed by each of `signers`.
pub(crate) fn signed_profile_release_files(
    version: u64,
    profile: &str,
    signers: &[&SecretKey],
) -> BTreeMap<String, Vec<u8>> {
    let manifest = ReleaseManifest {
        format: ReleaseManifest::FORMAT,
        version,
        profile: profile.into(),
        target: "x86_64".into(),
        kernel: ArtifactRef::of(KERNEL),
        initrd: ArtifactRef::of(INITRD),
        cmdline: ArtifactRef::of(CMDLINE),
        build: BuildInputs {
            kernel_package: "linux-image-cloud-amd64".into(),
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            packages: Vec::new(),
        },
    };
    let mut document = manifest.to_document();
    for signer in signers {
        document.sign(signer).unwrap();
    }
    [
        (MANIFEST_FILE, document.encode()),
        (KERNEL_FILE, KERNEL.to_vec()),
        (INITRD_FILE, INITRD.to_vec()),
        (CMDLINE_FILE, CMDLINE.to_vec()),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_owned(), b))
    .collect()
}

fn release(version: u64, signer: &SecretKey) -> Files {
    Files {
        files: signed_release_files(version, signer),
        reads: Vec::new(),
    }
}

fn policy() -> SignerPolicy {
    let mut policy = SignerPolicy::single(key(1).public());
    policy.members[0].name = "dev".into();
    policy
}

/// A dev boot image accepting versions from 1 on.
pub(crate) fn dev_image() -> BootImageConfig {
    BootImageConfig {
        profile: "dev".into(),
        target: "x86_64".into(),
        min_version: 1,
    }
}

fn refusal(files: &mut Files, highest: u64) -> Refusal {
    match verify(files, &policy(), &dev_image(), highest) {
        Ok(v) => panic!("accepted: {}", v.line()),
        Err(r) => r,
    }
}

#[test]
fn a_good_release_verifies_with_exactly_its_bytes() {
    let mut files = release(3, &key(1));
    let v = verify(&mut files, &policy(), &dev_image(), 3).unwrap();
    assert_eq!(v.manifest.version, 3);
    assert_eq!(v.signers, ["dev"]);
    assert_eq!(
        (&*v.kernel, &*v.initrd, &*v.cmdline),
        (KERNEL, INITRD, CMDLINE)
    );
    let line = v.line();
    assert!(line.starts_with("nullos: verified release version=3 profile=dev signers=dev kernel="));
    assert!(
        line.contains(&trust::Digest::of(KERNEL).to_string()),
        "{line}"
    );
}

#[test]
fn each_flipped_artifact_is_refused_by_name_with_both_digests() {
    for name in [KERNEL_FILE, INITRD_FILE, CMDLINE_FILE] {
        let mut files = release(1, &key(1));
        let file = files.files.get_mut(name).unwrap();
        file[2] ^= 0x01;
        let expected = trust::Digest::of(match name {
            KERNEL_FILE => KERNEL,
            INITRD_FILE => INITRD,
            _ => CMDLINE,
        });
        let actual = trust::Digest::of(file);
        let r = refusal(&mut files, 0);
        assert_eq!(r.artifact, name);
        let line = r.to_string();
        assert!(
            line.starts_with(&format!("nullos: refused {name}: expected ")),
            "{line}"
        );
        assert!(line.contains(&expected.to_string()), "{line}");
        assert!(line.contains(&actual.to_string()), "{line}");
    }
}

/// A release whose initramfs is `initrd`, large enough to be hashed on several threads.
fn release_with_initrd(initrd: &[u8]) -> Files {
    let mut files = release(1, &key(1));
    let mut manifest = trust::verify_release(&files.files[MANIFEST_FILE], &policy())
        .unwrap()
        .1;
    manifest.initrd = ArtifactRef::of(initrd);
    let mut document = manifest.to_document();
    document.sign(&key(1)).unwrap();
    files
        .files
        .insert(MANIFEST_FILE.to_owned(), document.encode());
    files.files.insert(INITRD_FILE.to_owned(), initrd.to_vec());
    files
}

#[test]
fn a_large_artifact_hashed_on_all_cores_verifies_and_a_flip_is_refused_with_the_same_line() {
    let initrd: Vec<u8> = (0..5 * 1024 * 1024 + 1)
        .map(|i: usize| u8::try_from(i % 253).unwrap())
        .collect();
    let v = verify(
        &mut release_with_initrd(&initrd),
        &policy(),
        &dev_image(),
        0,
    )
    .unwrap();
    assert_eq!(v.initrd, initrd);
    assert!(
        v.line()
            .contains(&format!("initrd={}", trust::Digest::of(&initrd))),
        "{}",
        v.line()
    );

    // A flip in the second half: the part hashed on another thread.
    let mut files = release_with_initrd(&initrd);
    let file = files.files.get_mut(INITRD_FILE).unwrap();
    file[4 * 1024 * 1024 + 17] ^= 0x01;
    let flipped = file.clone();
    // The line `ArtifactRef::check` gave before hashing moved to all cores.
    let mismatch = ArtifactRef::of(&initrd)
        .check(INITRD_FILE, &flipped)
        .unwrap_err();
    let refused = refusal(&mut files, 0);
    assert_eq!(
        refused.to_string(),
        format!(
            "nullos: refused initrd: expected {} bytes, blake3 {}, found {} bytes, blake3 {}",
            initrd.len(),
            trust::Digest::of(&initrd),
            flipped.len(),
            trust::Digest::of(&flipped)
        )
    );
    assert_eq!(
        refused.reason,
        format!("expected {}, found {}", mismatch.expected, mismatch.actual)
    );
}

#[test]
fn a_flipped_manifest_byte_is_refused_as_the_manifest() {
    let mut files = release(1, &key(1));
    let manifest = files.files.get_mut(MANIFEST_FILE).unwrap();
    let last = manifest.len() - 1;
    manifest[last] ^= 0x80;
    let r = refusal(&mut files, 0);
    assert_eq!(r.artifact, MANIFEST_FILE);
    // Nothing else is read once the manifest fails.
    assert_eq!(files.reads, [MANIFEST_FILE]);
}

#[test]
fn a_wrong_signer_is_refused_naming_the_policy() {
    let mut files = release(1, &key(2));
    let r = refusal(&mut files, 0);
    assert_eq!(r.artifact, MANIFEST_FILE);
    assert!(
        r.reason.starts_with(
            "release signatures rejected: required member 'dev' did not sign \
             (policy: threshold 1 of [dev nullos-ed25519 "
        ),
        "{r}"
    );
}

#[test]
fn an_older_version_than_accepted_is_refused_with_both_versions() {
    let mut files = release(1, &key(1));
    let r = refusal(&mut files, 2);
    assert_eq!(
        r.to_string(),
        "nullos: refused release.manifest: version 1 is older than version 2 already accepted (rollback refused)"
    );
    assert_eq!(files.reads, [MANIFEST_FILE]);
}

#[test]
fn an_artifact_of_another_size_is_refused_unread() {
    let mut files = release(1, &key(1));
    files
        .files
        .get_mut(INITRD_FILE)
        .unwrap()
        .extend_from_slice(&[0; 4096]);
    let r = refusal(&mut files, 0);
    assert_eq!(r.artifact, INITRD_FILE);
    assert!(r.reason.ends_with("(not read)"), "{r}");
    assert!(!files.reads.iter().any(|n| n == INITRD_FILE));
}

/// A source whose streams are other bytes than the files its `len` measures (a medium or server
/// that changes between the two calls).
struct Shifting {
    files: Files,
    streams: BTreeMap<String, Vec<u8>>,
}

impl Source for Shifting {
    fn len(&mut self, name: &str, max: u64) -> Result<u64, String> {
        self.files.len(name, max)
    }
    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        self.files.read(name, max)
    }
    fn open(&mut self, name: &str, _max: u64) -> Result<Box<dyn std::io::Read + '_>, String> {
        match self.streams.get(name) {
            Some(stream) => Ok(Box::new(stream.as_slice())),
            None => Err(format!("{name} has no stream")),
        }
    }
}

#[test]
fn a_stream_longer_or_shorter_than_signed_is_refused_after_the_signed_bytes() {
    let long = [INITRD, b"more"].concat();
    let short = &INITRD[..INITRD.len() - 1];
    for (stream, reason) in [
        (
            long,
            format!("longer than the {} bytes signed", INITRD.len()),
        ),
        (
            short.to_vec(),
            format!(
                "ended after {} of the {} bytes signed",
                short.len(),
                INITRD.len()
            ),
        ),
    ] {
        let mut source = Shifting {
            files: release(1, &key(1)),
            streams: [KERNEL_FILE, CMDLINE_FILE]
                .map(|n| (n.to_owned(), release(1, &key(1)).files[n].clone()))
                .into_iter()
                .chain([(INITRD_FILE.to_owned(), stream)])
                .collect(),
        };
        match verify(&mut source, &policy(), &dev_image(), 0) {
            Ok(v) => panic!("accepted: {}", v.line()),
            Err(r) => assert_eq!(r, Refusal::new(INITRD_FILE, reason)),
        }
    }
}

#[test]
fn missing_files_are_refused_by_name() {
    for name in [MANIFEST_FILE, KERNEL_FILE, INITRD_FILE, CMDLINE_FILE] {
        let mut files = release(1, &key(1));
        files.files.remove(name);
        assert_eq!(refusal(&mut files, 0).artifact, name);
    }
}

/// Issue 14: dev and metal releases are signed by the same kind of key with one version
/// counter; without this check they were interchangeable.
#[test]
fn a_dev_release_on_a_metal_boot_image_is_refused() {
    let mut files = Files {
        files: signed_profile_release_files(5, "dev", &[&key(1)]),
        reads: Vec::new(),
    };
    let metal = BootImageConfig {
        profile: "metal".into(),
        ..dev_image()
    };
    let r = verify(&mut files, &policy(), &metal, 0).unwrap_err();
    assert_eq!(
        r.to_string(),
        "nullos: refused release.manifest: a release for profile dev target x86_64; \
         this boot image boots profile metal target x86_64"
    );
    assert_eq!(files.reads, [MANIFEST_FILE], "no artifact is read");
    let other_target = BootImageConfig {
        target: "aarch64".into(),
        ..dev_image()
    };
    let r = verify(&mut files, &policy(), &other_target, 0).unwrap_err();
    assert!(r.reason.contains("boots profile dev target aarch64"), "{r}");
}

#[test]
fn a_version_below_the_boot_images_minimum_is_refused_without_any_state() {
    let mut files = release(2, &key(1));
    let image = BootImageConfig {
        min_version: 3,
        ..dev_image()
    };
    let r = verify(&mut files, &policy(), &image, 0).unwrap_err();
    assert_eq!(
        r.to_string(),
        "nullos: refused release.manifest: version 2 is below this boot image's minimum version 3 (rollback refused)"
    );
    let mut files = release(3, &key(1));
    assert!(verify(&mut files, &policy(), &image, 0).is_ok());
}

/// Issue 14: the verified line named every signature entry, verified or not.
#[test]
fn the_verified_line_names_only_the_signers_that_verified() {
    // Policy: `dev` (required) and `ci`, threshold 1. The file carries dev's good signature
    // and an entry by ci's key whose signature is over another body.
    let mut policy = policy();
    policy.members.push(trust::PolicyMember {
        name: "ci".into(),
        key: key(3).public(),
        weight: 1,
        required: false,
    });
    let mut files = release(1, &key(1));
    let good = SignedDocument::decode(&files.files[MANIFEST_FILE]).unwrap();
    let mut forged_ci = SignedDocument::new(good.kind(), b"another body".to_vec());
    forged_ci.sign(&key(3)).unwrap();
    let mut spliced = good.encode();
    // The envelope ends with the signature count and the entries (docs/TRUST-FORMATS.md):
    // append ci's entry (its 96 bytes: key, signature) and bump the count.
    let ci_entry = &forged_ci.encode()[forged_ci.encode().len() - 96..];
    let count_at = spliced.len() - 96 - 1;
    assert_eq!(spliced[count_at], 1);
    spliced[count_at] = 2;
    spliced.extend_from_slice(ci_entry);
    let decoded = SignedDocument::decode(&spliced).unwrap();
    assert_eq!(decoded.signers().count(), 2, "both entries are in the file");
    files.files.insert(MANIFEST_FILE.into(), spliced);
    let v = verify(&mut files, &policy, &dev_image(), 0).unwrap();
    assert_eq!(v.signers, ["dev"]);
    assert!(v.line().contains(" signers=dev "), "{}", v.line());
}

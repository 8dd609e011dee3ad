//! The watcher against a real HTTP server on the loopback (stage 0's HTTP source) and a real
//! release cache in a folder: what it fetches, what it leaves alone, what it refuses.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use boot::verify::{CMDLINE_FILE, INITRD_FILE, KERNEL_FILE, MANIFEST_FILE};
use interfaces::boot_state::BootState;
use trust::{ArtifactRef, BuildInputs, ReleaseManifest, SecretKey};

use super::*;

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Serves `files` at `http://127.0.0.1:<port>/rel/<name>`; records the names asked for.
fn serve(files: Files, asked: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
                    break;
                }
            }
            let name = request
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.strip_prefix("/rel/"))
                .unwrap_or("")
                .to_owned();
            asked.lock().unwrap().push(name.clone());
            let body = files.lock().unwrap().get(&name).cloned();
            let mut out = &stream;
            match body {
                Some(body) => {
                    write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .unwrap();
                    out.write_all(&body).unwrap();
                }
                None => out
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap(),
            }
        }
    });
    format!("http://127.0.0.1:{port}/rel")
}

fn key() -> SecretKey {
    SecretKey::from_seed([5; 32])
}

/// A release of `profile` at `version`, signed by [`key`].
fn release(version: u64, profile: &str) -> BTreeMap<String, Vec<u8>> {
    let (kernel, initrd, cmdline) = (
        format!("MZ kernel {version}").into_bytes(),
        version.to_le_bytes().repeat(400),
        b"console=ttyS0\n".to_vec(),
    );
    let manifest = ReleaseManifest {
        format: ReleaseManifest::FORMAT,
        version,
        profile: profile.into(),
        target: "x86_64".into(),
        kernel: ArtifactRef::of(&kernel),
        initrd: ArtifactRef::of(&initrd),
        cmdline: ArtifactRef::of(&cmdline),
        build: BuildInputs {
            kernel_package: "linux-image-cloud-amd64".into(),
            kernel_version: "6.1.0-0-cloud-amd64".into(),
            packages: Vec::new(),
        },
    };
    let mut document = manifest.to_document();
    document.sign(&key()).unwrap();
    [
        (MANIFEST_FILE, document.encode()),
        (KERNEL_FILE, kernel),
        (INITRD_FILE, initrd),
        (CMDLINE_FILE, cmdline),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_owned(), b))
    .collect()
}

struct Setup {
    watcher: Watcher,
    files: Files,
    asked: Arc<Mutex<Vec<String>>>,
    _disk: tempfile::TempDir,
}

/// A node at version 1 of profile `dev` watching a channel that serves `served`.
fn setup(served: BTreeMap<String, Vec<u8>>) -> Setup {
    let files: Files = Arc::new(Mutex::new(served));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let channel = serve(files.clone(), asked.clone());
    let disk = tempfile::tempdir().unwrap();
    let watcher = Watcher {
        channel,
        policy: SignerPolicy::single(key().public()),
        image: BootImageConfig {
            profile: "dev".into(),
            target: "x86_64".into(),
            min_version: 0,
        },
        version: 1,
        cache_root: disk.path().to_owned(),
        last_line: None,
    };
    Setup {
        watcher,
        files,
        asked,
        _disk: disk,
    }
}

fn artifacts_asked(s: &Setup) -> usize {
    let asked = s.asked.lock().unwrap();
    asked.iter().filter(|n| n.as_str() == KERNEL_FILE).count()
}

#[test]
fn the_own_version_is_nothing_to_do() {
    let mut s = setup(release(1, "dev"));
    assert_eq!(s.watcher.look(), Ok(Found::Nothing));
    assert_eq!(artifacts_asked(&s), 0, "no artifact fetched");
}

#[test]
fn a_newer_release_is_fetched_into_the_cache_once_and_verifies_there() {
    let mut s = setup(release(2, "dev"));
    assert_eq!(s.watcher.look(), Ok(Found::Cached(2)));
    assert_eq!(artifacts_asked(&s), 1);
    let cached = boot::cache::versions(&s.watcher.cache_root);
    assert_eq!(cached.len(), 1);
    let copy = verify::verify(
        &mut boot::cache::DirSource::new(&cached[0].1),
        &s.watcher.policy,
        &s.watcher.image,
        2,
    )
    .unwrap();
    assert_eq!(copy.manifest.version, 2);
    // Already cached and intact: not fetched again.
    assert_eq!(s.watcher.look(), Ok(Found::Cached(2)));
    assert_eq!(artifacts_asked(&s), 1);
    // A cached copy that no longer verifies is fetched again (stage 0 would refuse it, and
    // the node would reboot into the same refusal forever).
    std::fs::write(cached[0].1.join(KERNEL_FILE), b"MZ another kernel").unwrap();
    assert_eq!(s.watcher.look(), Ok(Found::Cached(2)));
    assert_eq!(artifacts_asked(&s), 2);
    assert_eq!(
        std::fs::read(cached[0].1.join(KERNEL_FILE)).unwrap(),
        release(2, "dev")[KERNEL_FILE]
    );
}

#[test]
fn a_release_marked_bad_is_not_fetched() {
    let mut s = setup(release(3, "dev"));
    let mut state = BootState {
        good: 1,
        ..BootState::default()
    };
    state.mark_bad(3);
    boot_state::write_in(&s.watcher.cache_root, &state).unwrap();
    assert_eq!(s.watcher.look(), Ok(Found::Nothing));
    assert_eq!(artifacts_asked(&s), 0);
    assert!(boot::cache::versions(&s.watcher.cache_root).is_empty());
}

#[test]
fn another_profile_or_a_changed_artifact_is_refused_and_nothing_is_cached() {
    let mut s = setup(release(3, "metal"));
    let refusal = s.watcher.look().unwrap_err();
    assert_eq!(refusal.artifact, MANIFEST_FILE);
    assert!(
        refusal.reason.contains(
            "a release for profile metal target x86_64; this boot image boots profile dev"
        ),
        "{refusal}"
    );
    let mut changed = release(3, "dev");
    changed.get_mut(INITRD_FILE).unwrap()[10] ^= 1;
    *s.files.lock().unwrap() = changed;
    let refusal = s.watcher.look().unwrap_err();
    assert_eq!(refusal.artifact, INITRD_FILE);
    assert!(refusal.reason.starts_with(&s.watcher.channel), "{refusal}");
    assert!(boot::cache::versions(&s.watcher.cache_root).is_empty());
}

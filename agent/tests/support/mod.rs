//! The grid tests' harness: a real `nullos-notary serve` (redb in a temporary directory), the
//! real `nullos` binary, and simulated nodes that speak the node protocol through
//! `notary-client` and `trust::grid` (registration, short leases, long-poll on `node/<key>`,
//! signed status reports) without booting anything.

#![allow(dead_code)]

pub mod node;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use trust::{PublicKey, SecretKey, WorkloadManifest};

/// The `nullos-notary` built beside this test (`cargo build --release -p notary`), refused if
/// missing or older than the notary's sources (it would test stale code).
pub fn notary_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // <target>/<profile>/deps/<test>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = profile_dir.join("nullos-notary");
    let build = "cargo build --release -p notary";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; build it first: {build}", path.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["notary/src", "trust/src", "tlog/src"] {
        if let Some(newer) = newest(&root.join(dir)).filter(|(t, _)| *t > built) {
            panic!(
                "{} is older than {}: rebuild it: {build}",
                path.display(),
                newer.1.display()
            );
        }
    }
    path
}

fn newest(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().ok()?.modified().ok().map(|t| (t, path))
        };
        if let Some(c) = candidate {
            if best.as_ref().is_none_or(|b| c.0 > b.0) {
                best = Some(c);
            }
        }
    }
    best
}

/// A running notary, killed on drop.
pub struct Notary {
    child: Child,
    pub url: String,
    pub key: PublicKey,
    pub data: PathBuf,
}

impl Notary {
    /// `nullos-notary serve --data DATA --listen 127.0.0.1:0` (grid rules).
    pub fn start(data: &Path) -> Notary {
        std::fs::create_dir_all(data).unwrap();
        let mut child = Command::new(notary_binary())
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nullos-notary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let rest = line
            .trim()
            .strip_prefix("nullos-notary listening on ")
            .unwrap_or_else(|| panic!("unexpected notary line {line:?}"));
        let (url, key) = rest.split_once(" key ").unwrap();
        Notary {
            child,
            url: url.to_owned(),
            key: PublicKey::from_text(key).unwrap(),
            data: data.to_owned(),
        }
    }

    pub fn client(&self) -> notary_client::Client {
        notary_client::Client::new(&self.url, &self.key).unwrap()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Notary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of `nullos` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }

    /// Exit status `code` with one error line on stderr; returns it.
    pub fn fails(self, code: i32) -> String {
        assert_eq!(self.code, code, "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{self:#?}");
        assert!(lines[0].starts_with("nullos: error: "), "{self:#?}");
        lines[0].to_owned()
    }

    pub fn json(&self) -> Json {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

/// A user's machine: a state directory and the notary it talks to.
pub struct User {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub key: PublicKey,
}

impl User {
    pub fn new(notary: &Notary) -> User {
        User {
            dir: tempfile::tempdir().unwrap(),
            url: notary.url.clone(),
            key: notary.key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nullos"));
        c.args(args)
            .env("NULLOS_NOTARY", &self.url)
            .env("NULLOS_NOTARY_KEY", self.key.to_text())
            .env("NULLOS_STATE", self.path("state"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run nullos");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `nullos key new --out DIR/NAME`; the secret key path and the public key.
    pub fn key(&self, name: &str) -> (PathBuf, PublicKey) {
        let path = self.path(name);
        self.run(&["key", "new", "--out", s(&path)]).ok();
        let public = std::fs::read_to_string(format!("{}.pub", path.display())).unwrap();
        (path, PublicKey::from_text(&public).unwrap())
    }

    pub fn status(&self, id: &str) -> Json {
        self.run(&["status", id, "--json"]).ok().json()
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes a built workload folder as `image-builder workload` does (workload.manifest signed
/// by a workload key, root.img); returns the manifest's BLAKE3 hex.
pub fn workload_folder(dir: &Path, root: &[u8]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let manifest = WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 1,
        root: trust::ArtifactRef::of(root),
        kernel: None,
        initrd: None,
        entrypoint: vec!["/bin/hello".into()],
        env: vec![],
        workdir: "/".into(),
        vcpus: 1,
        memory_mib: 128,
        volumes: vec![],
        network: false,
        restart: trust::RestartPolicy::OnFailure,
    };
    let mut doc = manifest.to_document();
    doc.sign(&SecretKey::from_seed([7; 32])).unwrap();
    let bytes = doc.encode();
    std::fs::write(dir.join("workload.manifest"), &bytes).unwrap();
    std::fs::write(dir.join("root.img"), root).unwrap();
    trust::Digest::of(&bytes).to_hex()
}

/// Polls `check` until it yields, failing the test after `secs` (a generous deadline, never a
/// timing assertion).
pub fn eventually<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

//! The grid tests' harness: a real `nullos-notary serve` (redb in a temporary directory), the
//! real `nullos` binary, and simulated nodes that speak the node protocol through
//! `notary-client` and `trust::grid` (registration, short leases, long-poll on `node/<key>`,
//! signed status reports) without booting anything.

#![allow(dead_code)]

pub mod node;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use trust::{PublicKey, SecretKey, WorkloadManifest};

/// A running notary, killed on drop: the one starter of every test suite, listening on
/// 127.0.0.1 (a free port) with grid rules.
pub struct Notary(pub notary::test_support::TestNotary);

impl std::ops::Deref for Notary {
    type Target = notary::test_support::TestNotary;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Notary {
    /// `nullos-notary serve --data DATA --listen 127.0.0.1:0` (grid rules).
    pub fn start(data: &Path) -> Notary {
        Notary(notary::test_support::TestNotary::start(data, "127.0.0.1:0"))
    }

    pub fn stop(self) {}
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

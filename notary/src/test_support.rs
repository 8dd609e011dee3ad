//! For tests only (feature `test-support`): a real `nullos-notary serve` process, started the
//! one way every test suite of ours starts it (the agent's, the node's and the full-system
//! tests), killed on drop.
//!
//! The binary is the one built beside the running test (`<target>/<profile>/nullos-notary`,
//! `cargo build --release -p notary`); a missing one, or one older than the notary's sources
//! (it would test stale code), fails the test with a line saying how to build it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use trust::PublicKey;

/// The sources the binary is built from, relative to the repository root.
const SOURCES: [&str; 3] = ["notary/src", "trust/src", "tlog/src"];
/// How to build it.
const BUILD: &str = "cargo build --release -p notary";

/// The newest modification time under `dir` (with the file), recursively.
pub fn newest(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
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

/// The `nullos-notary` built beside the running test, refused (panics with the command to
/// run) if missing or older than its sources.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    // <target>/<profile>/deps/<test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in a target folder", exe.display()));
    let path = profile_dir.join("nullos-notary");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; build it first: {BUILD}", path.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in SOURCES {
        if let Some(newer) = newest(&root.join(dir)).filter(|(t, _)| *t > built) {
            panic!(
                "{} is older than {}: rebuild it: {BUILD}",
                path.display(),
                newer.1.display()
            );
        }
    }
    path
}

/// A running notary, killed on drop.
#[derive(Debug)]
pub struct TestNotary {
    child: Child,
    /// `http://127.0.0.1:<port>`, as it printed it.
    pub url: String,
    /// Its checkpoint key, as it printed it.
    pub key: PublicKey,
    /// Its data folder.
    pub data: PathBuf,
}

impl TestNotary {
    /// `nullos-notary serve --data DATA --listen LISTEN` (grid rules); a port of 0 picks a
    /// free one. A `notary.key` already in `data` is its signing key.
    pub fn start(data: &Path, listen: &str) -> TestNotary {
        TestNotary::start_with(data, listen, &[])
    }

    /// [`TestNotary::start`] with `extra` arguments (e.g. `--rules unchecked`).
    pub fn start_with(data: &Path, listen: &str, extra: &[&str]) -> TestNotary {
        std::fs::create_dir_all(data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
        let binary = binary();
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let Some((url, key)) = line
            .trim()
            .strip_prefix("nullos-notary listening on ")
            .and_then(|rest| rest.split_once(" key "))
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line of nullos-notary: {line:?}");
        };
        TestNotary {
            url: url.to_owned(),
            key: PublicKey::from_text(key).unwrap_or_else(|e| panic!("notary key {key:?}: {e}")),
            data: data.to_owned(),
            child,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }

    /// A client of it, pinning its key.
    pub fn client(&self) -> notary_client::Client {
        notary_client::Client::new(&self.url, &self.key)
            .unwrap_or_else(|e| panic!("client for {}: {e}", self.url))
    }

    /// Stops it now.
    pub fn stop(self) {}
}

impl Drop for TestNotary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

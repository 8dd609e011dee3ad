//! Release verification throughput: stage 0's own code path against `b3sum` on the same files.
//!
//! Stage 0's side is [`boot::verify::verify`], the function `boot` runs on the stick: it checks
//! the manifest's signatures against the signer policy, the version, and the size and BLAKE3 of
//! the command line, kernel and initramfs (each read into a buffer of its own and hashed on all
//! cores as it is read), returning those buffers: the bytes it boots. Both sides are measured
//! the same way: a process started per round that reads the same four files from the page cache
//! (warm for both: every round reads them) and hashes them. Stage 0's process is this binary's
//! hidden `verify-files` subcommand ([`verify_files`]: the signer policy read from its file, the
//! release through a [`Source`] streaming the files of the image directory); the yardstick is
//! `b3sum` (Debian package `b3sum`) with its defaults (memory-mapped, multithreaded).
//!
//! What differs is what each must keep: stage 0 copies every byte into memory of its own (its
//! guarantee: the bytes it boots are the bytes it hashed, whatever happens to the medium
//! afterwards), where `b3sum` hashes the page cache in place through a mapping and keeps
//! nothing. Two context lines show that share: `b3sum --num-threads 1`, and `b3sum --no-mmap`,
//! which reads the files with read(2) as stage 0 does (into one small buffer it reuses, on one
//! thread).
//!
//! The blake3 crate is built with the same features as in `boot` (`std`, for its run-time CPU
//! detection): whatever SIMD stage 0 gets, this benchmark gets.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use boot::verify::{Refusal, Source, CMDLINE_FILE, INITRD_FILE, KERNEL_FILE, MANIFEST_FILE};
use interfaces::BootImageConfig;
use trust::{PublicKey, SignerPolicy};

use crate::stats;

/// The goal: stage 0 verifies at least 90 % as fast as `b3sum` hashes.
pub const GOAL_RATIO: f64 = 0.90;

/// The hidden subcommand of `nullos-bench` that runs [`verify_files`] as a process of its own.
pub const VERIFY_FILES_COMMAND: &str = "verify-files";

/// The release files, in the order both sides read them.
pub const FILES: [&str; 4] = [MANIFEST_FILE, CMDLINE_FILE, KERNEL_FILE, INITRD_FILE];

/// A verification benchmark that could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyBenchError {
    /// A release file cannot be read.
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The policy file is neither a signer policy nor a public key.
    #[error("{path} is neither a signer policy nor a public key: {reason}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// The public-key parser's complaint.
        reason: String,
    },
    /// Stage 0 refuses the release, so there is nothing to measure.
    #[error("stage 0 refuses the release: {0}")]
    Refused(Refusal),
    /// Stage 0's verification process could not be started.
    #[error("cannot run {program} {VERIFY_FILES_COMMAND}")]
    RunStage0 {
        /// The program (this benchmark's own binary).
        program: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Stage 0's verification process failed.
    #[error("{VERIFY_FILES_COMMAND} exited with {status}: {stderr}")]
    Stage0Failed {
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// `b3sum` could not be run.
    #[error("cannot run b3sum (Debian package b3sum; `make bench` installs it)")]
    RunB3sum(#[source] io::Error),
    /// `b3sum` failed.
    #[error("b3sum exited with {status}: {stderr}")]
    B3sumFailed {
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// `b3sum` printed another digest than the signed one: the sides would not hash the same.
    #[error("b3sum says {file} is {found}, the manifest says {expected}")]
    B3sumDisagrees {
        /// The file.
        file: String,
        /// Digest in the verified manifest.
        expected: String,
        /// Digest b3sum printed (or "nothing").
        found: String,
    },
}

/// The built release, in memory.
#[derive(Debug, Clone)]
pub struct Release {
    dir: PathBuf,
    policy_path: PathBuf,
    files: BTreeMap<&'static str, Vec<u8>>,
    policy: SignerPolicy,
    /// A boot image for this release's profile and target (read once, not measured).
    image: BootImageConfig,
}

impl Release {
    /// Reads the four release files of `image_dir` and the signer policy (a policy file or a
    /// single public key, as stage 0 reads its own) at `policy_path`.
    pub fn load(image_dir: &Path, policy_path: &Path) -> Result<Release, VerifyBenchError> {
        let read = |path: PathBuf| {
            std::fs::read(&path).map_err(|source| VerifyBenchError::ReadFile { path, source })
        };
        let mut files = BTreeMap::new();
        for name in FILES {
            files.insert(name, read(image_dir.join(name))?);
        }
        let policy = read_policy(policy_path)?;
        let (_, manifest) = trust::verify_release(&files[MANIFEST_FILE], &policy)
            .map_err(|e| VerifyBenchError::Refused(Refusal::new(MANIFEST_FILE, e.to_string())))?;
        let image = BootImageConfig {
            profile: manifest.profile,
            target: manifest.target,
            min_version: 0,
        };
        Ok(Release {
            dir: image_dir.to_owned(),
            policy_path: policy_path.to_owned(),
            files,
            policy,
            image,
        })
    }

    /// Total bytes of the four files (what each side reads and hashes).
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }

    /// One verification through stage 0's code path; returns the verified release.
    pub fn verify_once(&self) -> Result<boot::verify::Verified, VerifyBenchError> {
        boot::verify::verify(&mut MemorySource(&self.files), &self.policy, &self.image, 0)
            .map_err(VerifyBenchError::Refused)
    }

    /// One run of stage 0's verification as a process: `program` (this benchmark's binary) with
    /// its hidden [`VERIFY_FILES_COMMAND`] on the image directory; returns its standard output
    /// (the `nullos: verified release` line).
    pub fn stage0_process_once(&self, program: &Path) -> Result<String, VerifyBenchError> {
        let output = Command::new(program)
            .arg(VERIFY_FILES_COMMAND)
            .arg("--image")
            .arg(&self.dir)
            .arg("--policy")
            .arg(&self.policy_path)
            .args(["--profile", &self.image.profile])
            .args(["--target", &self.image.target])
            .output()
            .map_err(|source| VerifyBenchError::RunStage0 {
                program: program.to_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(VerifyBenchError::Stage0Failed {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// One `b3sum` run over the four files, with `args` before the file names; returns its
    /// standard output.
    pub fn b3sum_once(&self, args: &[&str]) -> Result<String, VerifyBenchError> {
        let output = Command::new("b3sum")
            .args(args)
            .args(FILES.map(|name| self.dir.join(name)))
            .output()
            .map_err(VerifyBenchError::RunB3sum)?;
        if !output.status.success() {
            return Err(VerifyBenchError::B3sumFailed {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// A signer policy file, or a single public key, as stage 0 reads its own.
pub fn read_policy(path: &Path) -> Result<SignerPolicy, VerifyBenchError> {
    let text = std::fs::read(path).map_err(|source| VerifyBenchError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&text);
    match SignerPolicy::from_text(&text) {
        Ok(policy) => Ok(policy),
        Err(_) => PublicKey::from_text(&text)
            .map(SignerPolicy::single)
            .map_err(|e| VerifyBenchError::Policy {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
    }
}

/// Stage 0's verification of the release files in `image_dir`, read from disk: the signer
/// policy from `policy_path`, then [`boot::verify::verify`] for a boot image of `profile` and
/// `target` (what the hidden [`VERIFY_FILES_COMMAND`] runs, one process per round).
pub fn verify_files(
    image_dir: &Path,
    policy_path: &Path,
    profile: &str,
    target: &str,
) -> Result<boot::verify::Verified, VerifyBenchError> {
    let policy = read_policy(policy_path)?;
    let image = BootImageConfig {
        profile: profile.to_owned(),
        target: target.to_owned(),
        min_version: 0,
    };
    boot::verify::verify(&mut DirSource(image_dir), &policy, &image, 0)
        .map_err(VerifyBenchError::Refused)
}

/// The release files in a directory as stage 0's [`Source`]: each read whole, bounded.
struct DirSource<'a>(&'a Path);

impl Source for DirSource<'_> {
    fn len(&mut self, name: &str, _max: u64) -> Result<u64, String> {
        std::fs::metadata(self.0.join(name))
            .map(|m| m.len())
            .map_err(|e| format!("cannot stat {name}: {e}"))
    }

    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        let file = std::fs::File::open(self.0.join(name))
            .map_err(|e| format!("cannot open {name}: {e}"))?;
        let expected = file.metadata().map(|m| m.len().min(max)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0) + 1);
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        if bytes.len() as u64 > max {
            return Err(format!("{name} is over {max} bytes"));
        }
        Ok(bytes)
    }

    fn open(&mut self, name: &str, max: u64) -> Result<Box<dyn Read + '_>, String> {
        let file = std::fs::File::open(self.0.join(name))
            .map_err(|e| format!("cannot open {name}: {e}"))?;
        Ok(Box::new(file.take(max.saturating_add(1))))
    }
}

/// The release files as stage 0's [`Source`]: `read` and `open` copy into stage 0's buffers, as
/// reading the medium does.
struct MemorySource<'a>(&'a BTreeMap<&'static str, Vec<u8>>);

impl Source for MemorySource<'_> {
    fn len(&mut self, name: &str, _max: u64) -> Result<u64, String> {
        self.0
            .get(name)
            .map(|f| f.len() as u64)
            .ok_or_else(|| format!("{name} missing"))
    }

    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        let file = self.0.get(name).ok_or_else(|| format!("{name} missing"))?;
        if file.len() as u64 > max {
            return Err(format!("{name} is over {max} bytes"));
        }
        Ok(file.clone())
    }

    fn open(&mut self, name: &str, max: u64) -> Result<Box<dyn Read + '_>, String> {
        let file = self.0.get(name).ok_or_else(|| format!("{name} missing"))?;
        if file.len() as u64 > max {
            return Err(format!("{name} is over {max} bytes"));
        }
        Ok(Box::new(file.as_slice()))
    }
}

/// The digest `b3sum` printed for the file whose path ends in `/<name>`, from its
/// `<hex>  <path>` lines.
pub fn b3sum_digest<'a>(output: &'a str, name: &str) -> Option<&'a str> {
    output.lines().find_map(|line| {
        let (hex, path) = line.split_once("  ")?;
        let file = path.rsplit('/').next()?;
        (file == name).then_some(hex)
    })
}

/// What the runs took, one sample per iteration and side.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Bytes per iteration.
    pub bytes: u64,
    /// `boot::verify::verify` in a process of its own, from the files.
    pub stage0: Vec<Duration>,
    /// `b3sum` with its defaults.
    pub b3sum: Vec<Duration>,
    /// `b3sum --num-threads 1`.
    pub b3sum_one_thread: Vec<Duration>,
    /// `b3sum --no-mmap`: the files read with read(2), as stage 0 reads them (into one small
    /// buffer it reuses, hashed on one thread).
    pub b3sum_no_mmap: Vec<Duration>,
}

impl VerifyReport {
    /// The summary lines: against `b3sum` (the goal), then against single-threaded `b3sum` and
    /// `b3sum` reading rather than mapping the files (context).
    pub fn summary(&self) -> Vec<String> {
        let Some(ours) = median_throughput(self.bytes, &self.stage0) else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        if let Some(theirs) = median_throughput(self.bytes, &self.b3sum) {
            lines.push(summary_line(ours, "b3sum", theirs));
        }
        if let Some(theirs) = median_throughput(self.bytes, &self.b3sum_one_thread) {
            lines.push(context_line(ours, "b3sum --num-threads 1", theirs));
        }
        if let Some(theirs) = median_throughput(self.bytes, &self.b3sum_no_mmap) {
            lines.push(context_line(ours, "b3sum --no-mmap", theirs));
        }
        lines
    }
}

/// Throughput in MB/s (10^6 bytes) of `bytes` in the median of `samples`.
pub fn median_throughput(bytes: u64, samples: &[Duration]) -> Option<f64> {
    let micros: Vec<u64> = samples
        .iter()
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .collect();
    let median = stats::median(&micros)?;
    // Byte counts of a release are far below 2^53: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let bytes = bytes as f64;
    (median > 0.0).then(|| bytes / median)
}

/// `verify: stage0 <MB/s> vs b3sum <MB/s> => ratio <x> (goal >= 0.90: met|missed)`.
pub fn summary_line(stage0_mb_s: f64, baseline: &str, baseline_mb_s: f64) -> String {
    let ratio = stage0_mb_s / baseline_mb_s;
    // Compared as printed: a ratio shown as 0.90 meets the goal shown as 0.90.
    let met = (ratio * 100.0).round() >= (GOAL_RATIO * 100.0).round();
    format!(
        "verify: stage0 {stage0_mb_s:.0} MB/s vs {baseline} {baseline_mb_s:.0} MB/s => ratio {ratio:.2} (goal >= {GOAL_RATIO:.2}: {})",
        if met { "met" } else { "missed" }
    )
}

/// `verify: stage0 <MB/s> vs <baseline> <MB/s> => ratio <x> (context, no goal)`.
pub fn context_line(stage0_mb_s: f64, baseline: &str, baseline_mb_s: f64) -> String {
    format!(
        "verify: stage0 {stage0_mb_s:.0} MB/s vs {baseline} {baseline_mb_s:.0} MB/s => ratio {:.2} (context, no goal)",
        stage0_mb_s / baseline_mb_s
    )
}

/// Runs `iterations` rounds, alternating the sides, after a warm-up round (it also fills the page
/// cache for both) that checks that stage 0 accepts the release, in memory and as the process
/// `program` runs it, and that `b3sum` prints the signed digests (the same bytes).
pub fn run(
    release: &Release,
    iterations: usize,
    program: &Path,
) -> Result<VerifyReport, VerifyBenchError> {
    let verified = release.verify_once()?;
    release.stage0_process_once(program)?;
    let output = release.b3sum_once(&[])?;
    let m = &verified.manifest;
    for (name, expected) in [
        (KERNEL_FILE, &m.kernel.digest),
        (INITRD_FILE, &m.initrd.digest),
        (CMDLINE_FILE, &m.cmdline.digest),
    ] {
        let expected = expected.to_string();
        let found = b3sum_digest(&output, name).unwrap_or("nothing");
        if found != expected {
            return Err(VerifyBenchError::B3sumDisagrees {
                file: name.to_owned(),
                expected,
                found: found.to_owned(),
            });
        }
    }
    release.b3sum_once(&["--num-threads", "1"])?;
    release.b3sum_once(&["--no-mmap"])?;
    let mut report = VerifyReport {
        bytes: release.bytes(),
        ..VerifyReport::default()
    };
    let timed = |f: &mut dyn FnMut() -> Result<(), VerifyBenchError>| {
        let started = Instant::now();
        f().map(|()| started.elapsed())
    };
    for _ in 0..iterations {
        report.stage0.push(timed(&mut || {
            release.stage0_process_once(program).map(drop)
        })?);
        report
            .b3sum
            .push(timed(&mut || release.b3sum_once(&[]).map(drop))?);
        report.b3sum_one_thread.push(timed(&mut || {
            release.b3sum_once(&["--num-threads", "1"]).map(drop)
        })?);
        report
            .b3sum_no_mmap
            .push(timed(&mut || release.b3sum_once(&["--no-mmap"]).map(drop))?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b3sum_lines_are_matched_by_file_name() {
        let out = "aa11  /x/build/dev/release.manifest\nbb22  /x/build/dev/kernel\ncc33  build/dev/initrd\n";
        assert_eq!(b3sum_digest(out, "kernel"), Some("bb22"));
        assert_eq!(b3sum_digest(out, "initrd"), Some("cc33"));
        assert_eq!(b3sum_digest(out, "cmdline"), None);
        assert_eq!(b3sum_digest("no separator here\n", "here"), None);
    }

    #[test]
    fn throughput_is_bytes_over_the_median_time() {
        let ms = Duration::from_millis;
        // 10 MB in a median of 20 ms: 500 MB/s.
        let t = median_throughput(10_000_000, &[ms(40), ms(20), ms(10)]).unwrap();
        assert!((t - 500.0).abs() < 1e-9, "{t}");
        assert_eq!(median_throughput(1, &[]), None);
        assert_eq!(median_throughput(1, &[Duration::ZERO]), None);
    }

    #[test]
    fn the_summary_line_has_the_agreed_shape() {
        assert_eq!(
            summary_line(900.0, "b3sum", 1000.0),
            "verify: stage0 900 MB/s vs b3sum 1000 MB/s => ratio 0.90 (goal >= 0.90: met)"
        );
        assert_eq!(
            summary_line(894.0, "b3sum", 1000.0),
            "verify: stage0 894 MB/s vs b3sum 1000 MB/s => ratio 0.89 (goal >= 0.90: missed)"
        );
        assert_eq!(
            context_line(900.0, "b3sum --num-threads 1", 450.0),
            "verify: stage0 900 MB/s vs b3sum --num-threads 1 450 MB/s => ratio 2.00 (context, no goal)"
        );
    }

    #[test]
    fn stage0_verifies_a_signed_release_from_memory_and_disk_and_refuses_a_flipped_byte() {
        let key = trust::SecretKey::from_seed([3; 32]);
        let dir = tempfile::tempdir().unwrap();
        let (kernel, initrd, cmdline) =
            (vec![1u8; 5000], vec![2u8; 3000], b"console=ttyS0".to_vec());
        let manifest = trust::ReleaseManifest {
            format: trust::ReleaseManifest::FORMAT,
            version: 1,
            profile: "dev".into(),
            target: "x86_64".into(),
            kernel: trust::ArtifactRef::of(&kernel),
            initrd: trust::ArtifactRef::of(&initrd),
            cmdline: trust::ArtifactRef::of(&cmdline),
            build: trust::BuildInputs {
                kernel_package: "k".into(),
                kernel_version: "v".into(),
                packages: Vec::new(),
            },
        };
        let mut document = manifest.to_document();
        document.sign(&key).unwrap();
        for (name, bytes) in [
            (MANIFEST_FILE, document.encode()),
            (KERNEL_FILE, kernel),
            (INITRD_FILE, initrd.clone()),
            (CMDLINE_FILE, cmdline),
        ] {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let policy = dir.path().join("dev.pub");
        std::fs::write(&policy, key.public().to_string()).unwrap();
        let release = Release::load(dir.path(), &policy).unwrap();
        assert_eq!(
            release.bytes(),
            5000 + 3000 + 13 + document.encode().len() as u64
        );
        assert_eq!(release.verify_once().unwrap().initrd, initrd);
        let from_disk = verify_files(dir.path(), &policy, "dev", "x86_64").unwrap();
        assert_eq!(from_disk.initrd, initrd);
        match verify_files(dir.path(), &policy, "prod", "x86_64") {
            Err(VerifyBenchError::Refused(r)) => assert_eq!(r.artifact, MANIFEST_FILE),
            other => panic!("expected a profile refusal, got {other:?}"),
        }

        let mut flipped = initrd;
        flipped[100] ^= 1;
        std::fs::write(dir.path().join(INITRD_FILE), flipped).unwrap();
        let release = Release::load(dir.path(), &policy).unwrap();
        match release.verify_once() {
            Err(VerifyBenchError::Refused(r)) => assert_eq!(r.artifact, INITRD_FILE),
            other => panic!("expected an initrd refusal, got {other:?}"),
        }
        match verify_files(dir.path(), &policy, "dev", "x86_64") {
            Err(VerifyBenchError::Refused(r)) => assert_eq!(r.artifact, INITRD_FILE),
            other => panic!("expected an initrd refusal from disk, got {other:?}"),
        }
    }
}

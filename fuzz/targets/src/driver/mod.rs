//! `fuzz-run`'s engine: replay a target's corpus, then mutate it for a set time or number of
//! runs, keeping inputs that reach new coverage; stop at the first panic or time-out, saving the
//! input under the artifacts folder.
//!
//! Each input runs in-process (no fork, no exec: the two cores go to the target), inside
//! `catch_unwind`; a watchdog thread ends the process when one input runs longer than the
//! per-input limit, after saving it. A crash that aborts the process (stack overflow, failed
//! allocation) cannot be caught in-process: it ends the run with a non-zero status but without
//! the input; `fuzz-run <target> <file>…` replays single inputs to narrow one down.

pub mod coverage;
pub mod mutate;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use coverage::Counters;
use mutate::{mutate, Rng, Sources};

use crate::Target;

/// Errors that stop the driver before or outside a target's run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A corpus folder or input file could not be read.
    #[error("reading {0}")]
    ReadInput(PathBuf, #[source] std::io::Error),
    /// An artifact or corpus entry could not be written.
    #[error("writing {0}")]
    WriteOutput(PathBuf, #[source] std::io::Error),
}

/// How long and where one target runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Mutation time after the corpus replay (zero: replay only).
    pub duration: Duration,
    /// Stop after this many executions in all (corpus replay included).
    pub max_runs: Option<u64>,
    /// Folders of inputs to start from (`<dir>/<target>/*`); missing folders are skipped.
    pub corpus: Vec<PathBuf>,
    /// Where new inputs (new coverage) are written, as `<dir>/<target>/<hash>`; none: kept in memory.
    pub save: Option<PathBuf>,
    /// Crashing inputs go to `<dir>/<target>/crash-<hash>` (and `timeout-<hash>`).
    pub artifacts: PathBuf,
    /// Per-input time limit.
    pub timeout: Duration,
    /// The largest input the mutator makes (at least twice the largest corpus input).
    pub max_len: usize,
    /// Random seed.
    pub seed: u64,
}

/// What a clean run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Executions, corpus replay included.
    pub runs: u64,
    /// Inputs read from the corpus folders.
    pub corpus: usize,
    /// Inputs kept because they reached new coverage.
    pub new_inputs: usize,
    /// Coverage features (edge, hit-count bucket) reached; 0 without instrumentation.
    pub features: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// How a target's run ended.
#[derive(Debug)]
pub enum Outcome {
    /// No input panicked.
    Clean(Report),
    /// An input panicked; it is saved at the path.
    Crash(PathBuf, Report),
}

/// Shared with the watchdog: the input running now and when it started.
struct Current {
    started_ms: AtomicU64,
    input: Mutex<Vec<u8>>,
    artifact_dir: Mutex<PathBuf>,
    timeout_ms: AtomicU64,
}

fn current() -> &'static Arc<Current> {
    static CURRENT: OnceLock<Arc<Current>> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let cur = Arc::new(Current {
            started_ms: AtomicU64::new(0),
            input: Mutex::new(Vec::new()),
            artifact_dir: Mutex::new(PathBuf::new()),
            timeout_ms: AtomicU64::new(u64::MAX),
        });
        let watched = Arc::clone(&cur);
        std::thread::spawn(move || watchdog(&watched));
        cur
    })
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    // Never 0, which means "idle".
    epoch().elapsed().as_millis() as u64 + 1
}

fn watchdog(cur: &Current) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let started = cur.started_ms.load(Ordering::Acquire);
        let limit = cur.timeout_ms.load(Ordering::Relaxed);
        if started != 0 && now_ms().saturating_sub(started) > limit {
            let input = cur.input.lock().map(|i| i.clone()).unwrap_or_default();
            let dir = cur
                .artifact_dir
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default();
            match save_artifact(&dir, "timeout", &input) {
                Ok(path) => eprintln!(
                    "fuzz-run: an input ran longer than {limit} ms; saved as {}",
                    path.display()
                ),
                Err(e) => eprintln!("fuzz-run: an input ran longer than {limit} ms; {e}"),
            }
            std::process::exit(1);
        }
    }
}

/// FNV-1a, to name saved inputs by their content.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn save_artifact(dir: &Path, kind: &str, data: &[u8]) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::WriteOutput(dir.to_owned(), e))?;
    let path = dir.join(format!("{kind}-{:016x}", hash(data)));
    std::fs::write(&path, data).map_err(|e| Error::WriteOutput(path.clone(), e))?;
    Ok(path)
}

/// The inputs in `<dir>/<target>/` for every corpus folder, sorted by name.
pub fn load_corpus(dirs: &[PathBuf], target: &str) -> Result<Vec<Vec<u8>>, Error> {
    let mut inputs = Vec::new();
    for dir in dirs {
        let dir = dir.join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::ReadInput(dir, e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::ReadInput(dir.clone(), e))?;
            if entry.path().is_file() {
                paths.push(entry.path());
            }
        }
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).map_err(|e| Error::ReadInput(path.clone(), e))?;
            inputs.push(data);
        }
    }
    Ok(inputs)
}

/// Runs one input under the watchdog; true if it returned, false if it panicked.
pub fn run_one(target: Target, data: &[u8]) -> bool {
    let cur = current();
    if let Ok(mut input) = cur.input.lock() {
        input.clear();
        input.extend_from_slice(data);
    }
    cur.started_ms.store(now_ms(), Ordering::Release);
    coverage::record_comparisons(true);
    let ok = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(data))).is_ok();
    coverage::record_comparisons(false);
    cur.started_ms.store(0, Ordering::Release);
    ok
}

/// Fuzzes `target` with `opts`; `counters` carries the coverage instrumentation.
pub fn fuzz(target: Target, opts: &Options, counters: &mut Counters) -> Result<Outcome, Error> {
    let start = Instant::now();
    let artifacts = opts.artifacts.join(target.name);
    {
        let cur = current();
        cur.timeout_ms
            .store(opts.timeout.as_millis() as u64, Ordering::Relaxed);
        if let Ok(mut dir) = cur.artifact_dir.lock() {
            dir.clone_from(&artifacts);
        }
    }
    let corpus = load_corpus(&opts.corpus, target.name)?;
    let largest = corpus.iter().map(Vec::len).max().unwrap_or(0);
    let max_len = opts.max_len.max(largest.saturating_mul(2));
    let save = opts.save.as_ref().map(|d| d.join(target.name));

    counters.forget();
    let mut report = Report {
        runs: 0,
        corpus: corpus.len(),
        new_inputs: 0,
        features: 0,
        elapsed: Duration::ZERO,
    };
    let crash = |data: &[u8], mut report: Report| -> Result<Outcome, Error> {
        let path = save_artifact(&artifacts, "crash", data)?;
        report.elapsed = start.elapsed();
        Ok(Outcome::Crash(path, report))
    };

    // Replay: every corpus input must pass as it is.
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let seeds: Vec<Vec<u8>> = if corpus.is_empty() {
        vec![Vec::new()]
    } else {
        corpus
    };
    for data in seeds {
        counters.clear();
        let ok = run_one(target, &data);
        report.runs += 1;
        if !ok {
            return crash(&data, report);
        }
        counters.collect();
        pool.push(data);
    }

    // Mutation.
    let mut rng = Rng::new(opts.seed ^ hash(target.name.as_bytes()));
    let mut constants = coverage::comparison_constants();
    let mut input = Vec::new();
    let deadline = start + opts.duration;
    let limit = opts.max_runs.unwrap_or(u64::MAX);
    while report.runs < limit && !opts.duration.is_zero() {
        if report.runs.is_multiple_of(256) {
            if Instant::now() >= deadline {
                break;
            }
            if report.runs.is_multiple_of(16_384) {
                constants = coverage::comparison_constants();
            }
        }
        input.clone_from(&pool[rng.below(pool.len())]);
        let sources = Sources {
            pool: &pool,
            constants: &constants,
            max_len,
        };
        mutate(&mut rng, &mut input, &sources);
        counters.clear();
        let ok = run_one(target, &input);
        report.runs += 1;
        if !ok {
            return crash(&input, report);
        }
        if counters.collect() > 0 {
            if let Some(dir) = &save {
                std::fs::create_dir_all(dir).map_err(|e| Error::WriteOutput(dir.clone(), e))?;
                let path = dir.join(format!("{:016x}", hash(&input)));
                std::fs::write(&path, &input).map_err(|e| Error::WriteOutput(path, e))?;
            }
            pool.push(input.clone());
            report.new_inputs += 1;
        }
    }
    report.features = counters.features();
    report.elapsed = start.elapsed();
    Ok(Outcome::Clean(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> Options {
        Options {
            duration: Duration::from_secs(5),
            max_runs: Some(100_000),
            corpus: vec![dir.join("corpus")],
            save: Some(dir.join("new")),
            artifacts: dir.join("artifacts"),
            timeout: Duration::from_secs(10),
            max_len: 64,
            seed: 1,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fuzz-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_panicking_input_is_saved_and_reported() {
        let dir = scratch("crash");
        let target = Target {
            name: "long_inputs_panic",
            run: |data| assert!(data.len() < 4, "long input"),
        };
        let Outcome::Crash(path, report) =
            fuzz(target, &options(&dir), &mut Counters::new()).expect("the driver runs")
        else {
            panic!("the panic was not found");
        };
        let saved = std::fs::read(&path).expect("the artifact exists");
        assert!(saved.len() >= 4);
        assert!(path.starts_with(dir.join("artifacts/long_inputs_panic")));
        assert!(report.runs >= 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_crashing_corpus_input_fails_the_replay() {
        let dir = scratch("replay");
        std::fs::create_dir_all(dir.join("corpus/zero_panics")).expect("corpus folder");
        std::fs::write(dir.join("corpus/zero_panics/seed-1"), [0u8]).expect("seed");
        let target = Target {
            name: "zero_panics",
            run: |data| assert!(data.first() != Some(&0), "zero"),
        };
        let mut opts = options(&dir);
        opts.duration = Duration::ZERO;
        let outcome = fuzz(target, &opts, &mut Counters::new()).expect("the driver runs");
        assert!(matches!(outcome, Outcome::Crash(_, Report { runs: 1, .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_clean_target_runs_its_corpus_and_the_run_count() {
        let dir = scratch("clean");
        let target = Target {
            name: "never_panics",
            run: |_| {},
        };
        let mut opts = options(&dir);
        opts.max_runs = Some(1000);
        let Outcome::Clean(report) =
            fuzz(target, &opts, &mut Counters::new()).expect("the driver runs")
        else {
            panic!("a target that never panics crashed");
        };
        assert_eq!(report.runs, 1000);
        assert_eq!(report.corpus, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

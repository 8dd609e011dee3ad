//! `fuzz-run`: runs the fuzz targets on stable Rust (see docs/FUZZING.md).
//!
//!   fuzz-run [OPTIONS] <target>… | --all     replay the corpus, then mutate for --seconds each
//!   fuzz-run <target> <file>…                 run single inputs (reproduce an artifact)
//!   fuzz-run --list                           the targets
//!
//! Options: --seconds N (default 10), --runs N, --corpus DIR (repeatable; default fuzz/corpus),
//! --save DIR (new inputs), --artifacts DIR (default fuzz/artifacts), --timeout-ms N (default
//! 2000), --max-len N (default 4096), --seed N.
//!
//! Exit status: 0 clean, 1 an input crashed or timed out (saved under the artifacts folder),
//! 2 bad usage or an I/O error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use nullos_fuzz_targets::driver::coverage::Counters;
use nullos_fuzz_targets::driver::{self, Options, Outcome};
use nullos_fuzz_targets::{target, Target, TARGETS};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fuzz-run: {e}");
            ExitCode::from(2)
        }
    }
}

fn number(flag: &str, value: Option<String>) -> Result<u64, String> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number"))
}

/// Ok(true): no crash.
fn run(args: Vec<String>) -> Result<bool, String> {
    let mut opts = Options {
        duration: Duration::from_secs(10),
        max_runs: None,
        corpus: Vec::new(),
        save: None,
        artifacts: PathBuf::from("fuzz/artifacts"),
        timeout: Duration::from_millis(2000),
        max_len: 4096,
        seed: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    let mut targets: Vec<Target> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => {
                for t in TARGETS {
                    println!("{}", t.name);
                }
                return Ok(true);
            }
            "--all" => targets.extend_from_slice(TARGETS),
            "--seconds" => opts.duration = Duration::from_secs(number(&arg, args.next())?),
            "--runs" => opts.max_runs = Some(number(&arg, args.next())?),
            "--timeout-ms" => {
                opts.timeout = Duration::from_millis(number(&arg, args.next())?);
            }
            "--max-len" => opts.max_len = number(&arg, args.next())? as usize,
            "--seed" => opts.seed = number(&arg, args.next())?,
            "--corpus" | "--save" | "--artifacts" => {
                let dir = PathBuf::from(args.next().ok_or(format!("{arg} needs a folder"))?);
                match arg.as_str() {
                    "--corpus" => opts.corpus.push(dir),
                    "--save" => opts.save = Some(dir),
                    _ => opts.artifacts = dir,
                }
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            name => match target(name) {
                Some(t) if files.is_empty() => targets.push(t),
                _ if targets.len() == 1 => files.push(PathBuf::from(name)),
                _ => return Err(format!("no target called {name} (see --list)")),
            },
        }
    }
    if targets.is_empty() {
        return Err("name a target, or --all (see --list)".into());
    }
    if opts.corpus.is_empty() {
        opts.corpus.push(PathBuf::from("fuzz/corpus"));
    }

    if !files.is_empty() {
        let mut clean = true;
        for file in files {
            let data =
                std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            let ok = driver::run_one(targets[0], &data);
            println!(
                "fuzz-run: {}: {}: {}",
                targets[0].name,
                file.display(),
                if ok { "ok" } else { "CRASH" }
            );
            clean &= ok;
        }
        return Ok(clean);
    }

    let mut counters = Counters::new();
    if counters.enabled() {
        println!(
            "fuzz-run: coverage-guided ({} edges instrumented)",
            counters.edges()
        );
    } else {
        println!(
            "fuzz-run: no coverage instrumentation (build with make fuzz): random mutation only"
        );
    }
    let mut clean = true;
    for t in targets {
        let outcome = driver::fuzz(t, &opts, &mut counters).map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        })?;
        match outcome {
            Outcome::Clean(r) => println!(
                "fuzz-run: {}: {} runs in {:.1} s ({:.0}/s), corpus {} + {} new, {} features, 0 crashes",
                t.name,
                r.runs,
                r.elapsed.as_secs_f64(),
                r.runs as f64 / r.elapsed.as_secs_f64().max(1e-9),
                r.corpus,
                r.new_inputs,
                r.features
            ),
            Outcome::Crash(path, r) => {
                clean = false;
                println!(
                    "fuzz-run: {}: CRASH after {} runs; input saved as {}",
                    t.name,
                    r.runs,
                    path.display()
                );
            }
        }
    }
    Ok(clean)
}

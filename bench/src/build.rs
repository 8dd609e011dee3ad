//! Build benchmark: `image-builder build` against a `find | cpio -o -H newc | zstd` pipeline over
//! the same file tree, at the same zstd level.
//!
//! Ours does more than the pipeline (reads the kernel, closes the module set over `.modinfo`,
//! hashes, signs, writes the PXE bundle); the pipeline only archives and compresses a tree that
//! already exists. The tree is the one our own build produced, unpacked from its initramfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use image_builder::build::{build, Quiet};
use image_builder::compress::{decompress_any, Compression};
use image_builder::config::BuildConfig;

/// What one run of each side took.
#[derive(Debug, Clone, Copy)]
pub struct BuildSample {
    /// `image-builder build`, in process.
    pub ours: Duration,
    /// The shell pipeline.
    pub pipeline: Duration,
}

/// Runs the benchmark `runs` times per side, calling `on_sample` after each pair.
pub fn run(
    config_path: &Path,
    runs: usize,
    mut on_sample: impl FnMut(usize, BuildSample),
) -> Result<Vec<BuildSample>> {
    let config = BuildConfig::load(config_path)?;
    let level = match config.compression {
        Compression::Zstd { level } => level,
        other => bail!(
            "the build bench compares against zstd; {} uses {}",
            config_path.display(),
            other.name()
        ),
    };
    let scratch = tempfile::tempdir().context("scratch folder")?;
    // A warm-up build gives the tree the pipeline archives, and warms the page cache for both.
    let warm = scratch.path().join("warm");
    build(&config, &warm, 0, &Quiet)?;
    let tree = scratch.path().join("tree");
    unpack_initrd(&warm.join("initrd"), &tree)?;

    let mut samples = Vec::with_capacity(runs);
    for run in 1..=runs {
        let out = scratch.path().join(format!("ours-{run}"));
        let started = Instant::now();
        build(&config, &out, 0, &Quiet)?;
        let ours = started.elapsed();

        let archive = scratch.path().join(format!("pipeline-{run}.cpio.zst"));
        let started = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find . | cpio -o -H newc --quiet | zstd -q -{level} -T0 -o '{}'",
                archive.display()
            ))
            .current_dir(&tree)
            .status()
            .context("running find | cpio | zstd (are cpio and zstd installed? `make deps`)")?;
        let pipeline = started.elapsed();
        if !status.success() {
            bail!("find | cpio | zstd failed: {status}");
        }
        let sample = BuildSample { ours, pipeline };
        on_sample(run, sample);
        samples.push(sample);
    }
    Ok(samples)
}

/// Writes the directories and regular files of an initramfs under `dest` (device nodes are
/// skipped: creating them needs privileges and they hold no data).
fn unpack_initrd(initrd: &Path, dest: &Path) -> Result<()> {
    let bytes = std::fs::read(initrd).with_context(|| format!("reading {}", initrd.display()))?;
    let cpio = decompress_any(&bytes, 1 << 32)?;
    std::fs::create_dir_all(dest)?;
    for entry in initramfs::Reader::new(&cpio) {
        let entry = entry.context("reading the initramfs")?;
        let name = entry.name;
        let path: PathBuf = dest.join(name);
        if !path.starts_with(dest) || name.split('/').any(|c| c == "..") {
            bail!("initramfs entry {name:?} escapes the tree");
        }
        if entry.is_dir() {
            std::fs::create_dir_all(&path)?;
        } else if entry.is_file() {
            std::fs::write(&path, entry.data)?;
        }
    }
    Ok(())
}

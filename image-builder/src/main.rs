//! `image-builder`: build, sign, verify and inspect NullOS images.
//!
//! Exit status: 0 success, 1 the operation failed (one line on stderr names what), 2 usage error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use image_builder::build::{self, Progress};
use image_builder::{config::BuildConfig, inspect, keys, release, workload};

#[derive(Parser)]
#[command(
    name = "image-builder",
    version,
    about = "Build, sign, verify and inspect NullOS images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an ed25519 key pair: <out> (secret, mode 0600) and <out>.pub (public, one line).
    Keygen {
        /// Secret key file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// A comment stored in the key file (who or what the key is for).
        #[arg(long, default_value = "nullos signing key")]
        comment: String,
    },
    /// Build the image a config describes into a release folder.
    Build {
        /// The build config (TOML).
        config: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a co-signature to the release in <dir> (nothing is rebuilt).
    Sign {
        /// Release folder holding release.manifest.
        dir: PathBuf,
        /// Secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify the release in <dir>: signatures against the trust policy, and every artifact.
    Verify {
        /// Release folder.
        dir: PathBuf,
        /// A public key file or a signer policy file.
        #[arg(long)]
        trust: PathBuf,
    },
    /// Build the workload in <dir> (workload.toml, rootfs/) into <out>: root.img (squashfs) and
    /// workload.manifest (signed by every --key).
    Workload {
        /// Workload source folder holding workload.toml.
        dir: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Secret key file to sign with (repeat for co-signers).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Write the farmer's settings (`nullos-node`: the farm, optionally the notary) onto the
    /// release partition of a NullOS stick or of a usb.img; stage 0 passes them to the node.
    FarmStick {
        /// The stick (a block device such as /dev/sdX) or a usb.img.
        stick: PathBuf,
        /// The farm: the farmer's public key file (`nullos-ed25519 <hex>`).
        #[arg(long)]
        farm: PathBuf,
        /// The notary, `http://host[:port]` (default: the one the image names).
        #[arg(long)]
        notary: Option<String>,
        /// The release channel the node watches for updates, `http://host[:port]/path`
        /// (default: the image's `[update]` channel).
        #[arg(long)]
        channel: Option<String>,
    },
    /// Show what a release folder, release.manifest, initramfs or usb.img contains (does not verify).
    Inspect {
        /// Folder or file.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
            eprintln!("image-builder: error: {}", chain.join(": "));
            let bad_input = err
                .downcast_ref::<workload::WorkloadError>()
                .is_some_and(workload::WorkloadError::is_bad_input);
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out, comment } => {
            let (public_path, public) = keys::generate(&out, &comment)?;
            println!("wrote {} (secret key, keep it private)", out.display());
            println!("wrote {} (public key)", public_path.display());
            println!("{public}");
        }
        Command::Build { config, out } => {
            let started = Instant::now();
            let cfg = BuildConfig::load(&config)?;
            let mtime = source_date_epoch()?;
            let progress = TerminalProgress::new();
            let report = build::build(&cfg, &out, mtime, &progress)
                .with_context(|| format!("building {}", config.display()))?;
            progress.done();
            println!(
                "built release {} ({}) for kernel {} with {} modules in {:.1} s",
                cfg.release.version,
                cfg.release.profile,
                report.kernel_release,
                report.module_count,
                started.elapsed().as_secs_f64()
            );
            for w in &report.written {
                println!(
                    "wrote {} ({} bytes, blake3 {})",
                    w.path.display(),
                    w.size,
                    w.digest
                );
            }
        }
        Command::Sign { dir, key } => {
            let key = keys::load_secret(&key)?;
            release::cosign(&dir, &key)?;
            println!(
                "added signature by {} to {}",
                key.public(),
                dir.join(release::MANIFEST_FILE).display()
            );
        }
        Command::Verify { dir, trust } => {
            let policy = keys::load_trust(&trust)?;
            let verified = release::verify_dir(&dir, &policy).context("verification failed")?;
            let m = &verified.manifest;
            println!(
                "verified release {} ({}, {}) in {}",
                m.version,
                m.profile,
                m.target,
                dir.display()
            );
            for s in &verified.signers {
                println!("  signed by {s}");
            }
            for p in &verified.checked {
                println!("  ok {}", p.display());
            }
        }
        Command::Workload {
            dir,
            out,
            keys: key_files,
        } => {
            let keys = key_files
                .iter()
                .map(|k| keys::load_secret(k))
                .collect::<Result<Vec<_>, _>>()?;
            let built = workload::build(&dir, &out, &keys, source_date_epoch()?)?;
            let m = &built.manifest;
            println!(
                "built workload {} version {} ({} vcpu, {} MiB, {} volume(s), network {})",
                m.name,
                m.version,
                m.vcpus,
                m.memory_mib,
                m.volumes.len(),
                if m.network { "on" } else { "off" }
            );
            println!("wrote {} ({})", built.root_path.display(), m.root);
            println!("wrote {}", built.manifest_path.display());
            for s in &built.signers {
                println!("  signed by {s}");
            }
        }
        Command::FarmStick {
            stick,
            farm,
            notary,
            channel,
        } => {
            let text = std::fs::read_to_string(&farm)
                .with_context(|| format!("reading {}", farm.display()))?;
            let key_line = trust::PublicKey::from_text(text.trim())
                .with_context(|| format!("{} is not a public key file", farm.display()))?;
            if let Some(notary) = notary.as_deref() {
                if !interfaces::farmer::is_notary_url(notary) {
                    bail!(
                        "--notary {notary:?} is not http://host[:port] (at most {} bytes)",
                        interfaces::farmer::MAX_NOTARY_BYTES
                    );
                }
            }
            let mut file_text = format!("farm = {}\n", key_line.to_text());
            if let Some(notary) = &notary {
                file_text.push_str(&format!("notary = {notary}\n"));
            }
            if let Some(channel) = &channel {
                if !interfaces::farmer::is_channel_url(channel) {
                    bail!(
                        "--channel {channel:?} is not http://host[:port]/path (letters, digits, ._-/; at most {} bytes)",
                        interfaces::farmer::MAX_CHANNEL_BYTES
                    );
                }
                file_text.push_str(&format!("channel = {channel}\n"));
            }
            let settings = interfaces::farmer::FarmerSettings::parse(file_text.as_bytes())?;
            image_builder::usb::farmer::write(&stick, &settings)?;
            println!(
                "wrote {} on {}: farm {}{}{}",
                interfaces::farmer::FARMER_FILE,
                stick.display(),
                key_line,
                notary.map(|n| format!(", notary {n}")).unwrap_or_default(),
                channel
                    .map(|c| format!(", channel {c}"))
                    .unwrap_or_default()
            );
        }
        Command::Inspect { path } => print!("{}", inspect::describe(&path)?),
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), or 0 when unset.
fn source_date_epoch() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(0),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(t) => Ok(t),
            Err(_) => bail!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970 (fitting the cpio format's 32 bits)"),
        },
    }
}

/// A spinner with the current step, shown only when stderr is a terminal.
struct TerminalProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl TerminalProgress {
    fn new() -> TerminalProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        TerminalProgress { bar }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for TerminalProgress {
    fn step(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_owned());
        }
    }
}

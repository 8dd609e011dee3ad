//! `nullos-bench`: side-by-side benchmarks (`make bench`). Prints ratios; not a test.
//!
//! `nullos-bench boot --image <dir> [--runs N] [--accel kvm|tcg] [--timeout-secs S]
//!  [--baseline-init <path>]`
//! `nullos-bench build --config <profile.toml> [--runs N]`
//! `nullos-bench verify --image <dir> [--policy <file>] [--iterations N]`
//!  (it times its own hidden `verify-files --image <dir> --policy <file> --profile P --target T`,
//!  stage 0's verification as a process, against `b3sum`)
//! `nullos-bench stage0 --image <dir> [--runs N] [--accel kvm|tcg] [--timeout-secs S]`
//! `nullos-bench microvm [--kernel-dir <dir>] [--rounds N] [--mib N] [--accel kvm|tcg]
//!  [--only vmm|qemu] [--no-tcp] [--echo] [--vmm P] [--node-init P] [--guest-init P]`
//! `nullos-bench notary [--server P] [--writers 4,16,64] [--rounds N] [--secs S] [--nodes N]
//!  [--lease-secs S] [--placements N] [--placement-rate R] [--stack-kib K] [--proof-entries N]
//!  [--wait-key TEMPLATE] [--skip writes,nodes,proof]`
//!
//! Exit status: 0 when every run finished (whatever the ratio), 1 when a run failed, 2 for usage
//! errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bench::baseline::find_baseline_init;
use bench::boot::{self, BootBench, Side};
use clap::{Args, Parser, Subcommand};
use qemu::{Accel, DirectImage};

#[derive(Parser)]
#[command(
    name = "nullos-bench",
    about = "NullOS benchmarks: side by side, with ratios"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// One subcommand per benchmark.
#[derive(Subcommand)]
enum Cmd {
    /// Boot-to-ready of an image against the same kernel running only baseline-init.
    Boot(BootArgs),
    /// image-builder build against find | cpio -o -H newc | zstd over the same file tree.
    Build(BuildArgs),
    /// Stage 0's release verification (boot::verify::verify) against b3sum on the same files.
    Verify(VerifyArgs),
    /// One run of stage 0's verification on the files of an image directory (the process the
    /// verify benchmark times against b3sum's).
    #[command(name = "verify-files", hide = true)]
    VerifyFiles(VerifyFilesArgs),
    /// Boot-to-ready through usb.img and stage 0 against booting the node image directly.
    Stage0(Stage0Args),
    /// Our vmm, in the node's jail, against QEMU microvm in a bench node: boot to guest init,
    /// memory overhead without and with virtio-net and a volume, TCP.
    Microvm(MicrovmArgs),
    /// The notary: signed writes/s against ed25519 verify, simulated nodes long-polling, proof size.
    Notary(NotaryArgs),
}

#[derive(Args)]
struct NotaryArgs {
    /// The nullos-notary binary; default: next to this one.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Concurrent writer threads, one measurement per count.
    #[arg(long, value_delimiter = ',', default_value = "4,16,64")]
    writers: Vec<usize>,
    /// Rounds of the write measurements (medians are printed).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: u64,
    /// Seconds per write measurement.
    #[arg(long, default_value_t = 4.0)]
    secs: f64,
    /// Simulated nodes (one thread each).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    nodes: u64,
    /// Lease renewal period of each node, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=30))]
    lease_secs: u64,
    /// Placements written while the nodes poll.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    placements: u64,
    /// Placements per second.
    #[arg(long, default_value_t = 20.0)]
    placement_rate: f64,
    /// Stack of each node thread, KiB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(64..=8192))]
    stack_kib: u64,
    /// Entries of the tree the inclusion proof size is measured on.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=16_000_000))]
    proof_entries: u64,
    /// The key each node long-polls; {node} and {owner} become its key and its contract
    /// owner's key in hex. The default is where the interim OpenRules file a placement.
    #[arg(long, default_value = bench::notary::DEFAULT_WAIT_KEY)]
    wait_key: String,
    /// Parts to skip (writes, nodes, proof).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

#[derive(Args)]
struct MicrovmArgs {
    /// The unpacked Debian kernel package booted as node and guest.
    #[arg(long, default_value = "build/kernels/cloud")]
    kernel_dir: PathBuf,
    /// Rounds; each runs every measurement once per monitor.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    rounds: u64,
    /// MiB the guest sends per throughput run.
    #[arg(long, default_value_t = bench::microvm::DEFAULT_MIB, value_parser = clap::value_parser!(u64).range(1..=4096))]
    mib: u64,
    /// How long the boot run's guest stays up after its first line (ms).
    #[arg(long, default_value_t = bench::microvm::DEFAULT_HOLD_MS)]
    hold_ms: u64,
    /// Accelerator of the node; default: detected (NULLOS_ACCEL, else KVM only on bare metal).
    #[arg(long)]
    accel: Option<Accel>,
    /// Run only one monitor (debugging).
    #[arg(long, value_parser = ["vmm", "qemu"])]
    only: Option<String>,
    /// Skip the throughput runs.
    #[arg(long)]
    no_tcp: bool,
    /// Show every node console line, with the monitors' output.
    #[arg(long)]
    echo: bool,
    /// Longest one guest run may take in the node.
    #[arg(long, default_value_t = 180)]
    guest_timeout_secs: u64,
    /// Longest the whole node run may take.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    /// Static vmm; default: TARGET_DIR/x86_64-unknown-linux-gnu/release/vmm.
    #[arg(long)]
    vmm: Option<PathBuf>,
    /// Static bench-node-init; default: next to vmm's default.
    #[arg(long)]
    node_init: Option<PathBuf>,
    /// Static bench-guest-init; default: next to vmm's default.
    #[arg(long)]
    guest_init: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Built image directory (release.manifest, kernel, initrd, cmdline), e.g. build/dev.
    #[arg(long)]
    image: PathBuf,
    /// The release signer policy (policy file or public key); default: <image>/../keys/dev.pub,
    /// the dev profile's `[stage0] policy`.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Rounds per side.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    iterations: u64,
}

#[derive(Args)]
struct VerifyFilesArgs {
    /// Image directory with the release files.
    #[arg(long)]
    image: PathBuf,
    /// The release signer policy (policy file or public key).
    #[arg(long)]
    policy: PathBuf,
    /// The boot image's profile.
    #[arg(long)]
    profile: String,
    /// The boot image's target.
    #[arg(long)]
    target: String,
}

#[derive(Args)]
struct Stage0Args {
    /// Built image directory with usb.img and the direct-boot triple, e.g. build/dev.
    #[arg(long)]
    image: PathBuf,
    /// Boots per side.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
    /// Accelerator; default: detected (NULLOS_ACCEL, else KVM only on bare metal).
    #[arg(long)]
    accel: Option<Accel>,
    /// Longest one boot may take to reach ready.
    #[arg(long, default_value_t = 240)]
    timeout_secs: u64,
}

#[derive(Args)]
struct BuildArgs {
    /// The image config, e.g. profiles/dev.toml.
    #[arg(long)]
    config: PathBuf,
    /// Builds per side.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
}

#[derive(Args)]
struct BootArgs {
    /// Built image directory (kernel, initrd, cmdline), e.g. build/dev.
    #[arg(long)]
    image: PathBuf,
    /// Boots per side.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
    /// Accelerator; default: detected (NULLOS_ACCEL, else KVM only on bare metal).
    #[arg(long)]
    accel: Option<Accel>,
    /// Longest one boot may take to print its line.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
    /// The static baseline-init binary; default: NULLOS_BASELINE_INIT, else
    /// TARGET_DIR/x86_64-unknown-linux-gnu/release/baseline-init.
    #[arg(long)]
    baseline_init: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Boot(args) => boot_bench(args),
        Cmd::Build(args) => build_bench(args),
        Cmd::Verify(args) => verify_bench(args),
        Cmd::VerifyFiles(args) => verify_files(args),
        Cmd::Stage0(args) => stage0_bench(args),
        Cmd::Microvm(args) => microvm_bench(args),
        Cmd::Notary(args) => notary_bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nullos-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn boot_bench(args: BootArgs) -> anyhow::Result<()> {
    let baseline_init = match args.baseline_init {
        Some(path) => path,
        None => find_baseline_init()?,
    };
    let accel = match args.accel {
        Some(accel) => accel,
        None => Accel::detect()?,
    };
    let image = DirectImage::load(&args.image)?;
    let runs = usize::try_from(args.runs).context("--runs")?;
    println!(
        "boot bench: {runs} run(s) per side, accel {accel}, kernel {}, cmdline {:?}, baseline {}",
        image.kernel.display(),
        image.cmdline,
        baseline_init.display()
    );
    let bench = BootBench {
        image_dir: args.image,
        baseline_init,
        runs,
        accel,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let report = boot::run(&bench, |run, side, sample| {
        let what = match side {
            Side::Nullos => "ready",
            Side::Baseline => "init reached",
        };
        println!(
            "run {run}/{runs}: {side:<8} {what} at uptime {} ms (host wall {:.2} s)",
            sample.uptime_ms,
            sample.wall.as_secs_f64()
        );
    })?;
    if let Some(summary) = report.summary() {
        println!("{summary}");
    }
    Ok(())
}

fn build_bench(args: BuildArgs) -> anyhow::Result<()> {
    let runs = usize::try_from(args.runs).context("--runs")?;
    println!(
        "build bench: {runs} run(s) per side, config {}",
        args.config.display()
    );
    let samples = bench::build::run(&args.config, runs, |run, s| {
        println!(
            "run {run}/{runs}: image-builder {:.2} s, find|cpio|zstd {:.2} s",
            s.ours.as_secs_f64(),
            s.pipeline.as_secs_f64()
        );
    })?;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let ours: Vec<u64> = samples.iter().map(|s| ms(s.ours)).collect();
    let pipeline: Vec<u64> = samples.iter().map(|s| ms(s.pipeline)).collect();
    if let Some(line) = bench::stats::comparison_line("image-build", &ours, &pipeline, 1.0) {
        println!("{line} [baseline: find | cpio -o -H newc | zstd, same tree and level]");
    }
    Ok(())
}

fn verify_bench(args: VerifyArgs) -> anyhow::Result<()> {
    let policy = args
        .policy
        .unwrap_or_else(|| args.image.join("../keys/dev.pub"));
    let release = bench::verify::Release::load(&args.image, &policy)?;
    let iterations = usize::try_from(args.iterations).context("--iterations")?;
    println!(
        "verify bench: {iterations} round(s) per side over {} bytes ({}), policy {}",
        release.bytes(),
        bench::verify::FILES.join(", "),
        policy.display()
    );
    let program = std::env::current_exe().context("this benchmark's own binary")?;
    println!(
        "verify bench: both sides are a process per round reading the files from the page cache: {} {} and b3sum",
        program.display(),
        bench::verify::VERIFY_FILES_COMMAND
    );
    let report = bench::verify::run(&release, iterations, &program)?;
    for line in report.summary() {
        println!("{line}");
    }
    Ok(())
}

fn verify_files(args: VerifyFilesArgs) -> anyhow::Result<()> {
    let verified =
        bench::verify::verify_files(&args.image, &args.policy, &args.profile, &args.target)?;
    println!("{}", verified.line());
    Ok(())
}

fn stage0_bench(args: Stage0Args) -> anyhow::Result<()> {
    let accel = match args.accel {
        Some(accel) => accel,
        None => Accel::detect()?,
    };
    let runs = usize::try_from(args.runs).context("--runs")?;
    let bench = bench::stage0::Stage0Bench {
        usb: qemu::image::usb_boot(&args.image)?,
        direct: qemu::image::direct_boot(&args.image)?,
        runs,
        accel,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    println!(
        "stage0 bench: {runs} run(s) per side, accel {accel}, {}/usb.img on OVMF vs direct boot",
        args.image.display()
    );
    let samples = bench::stage0::run(&bench, |run, s| {
        let marks: Vec<String> = bench::stage0::USB_MARKS
            .iter()
            .zip(&s.usb_marks)
            .filter_map(|((_, label), at)| {
                Some(format!("{label} at {:.1} s", at.as_ref()?.as_secs_f64()))
            })
            .collect();
        println!(
            "run {run}/{runs}: direct ready {:.1} s; usb ready {:.1} s ({}; stage 0 read {} ms, verified {} ms)",
            s.direct_ready.as_secs_f64(),
            s.usb_ready.as_secs_f64(),
            marks.join(", "),
            s.read_ms,
            s.verify_ms
        );
    })?;
    if let Some(summary) = bench::stage0::summary(&samples) {
        println!("{summary}");
    }
    Ok(())
}

fn microvm_bench(args: MicrovmArgs) -> anyhow::Result<()> {
    use bench::microvm::image::NodeInputs;
    use bench::microvm::proto::{is_jail_line, summary, Monitor};
    use bench::microvm::run::{find_kver, find_qemu, static_binary, MicrovmBench};

    let accel = match args.accel {
        Some(accel) => accel,
        None => Accel::detect()?,
    };
    let inputs = NodeInputs {
        kver: find_kver(&args.kernel_dir)?,
        kernel_dir: args.kernel_dir,
        node_init: args
            .node_init
            .unwrap_or_else(|| static_binary("bench-node-init")),
        guest_init: args
            .guest_init
            .unwrap_or_else(|| static_binary("bench-guest-init")),
        vmm: args.vmm.unwrap_or_else(|| static_binary("vmm")),
        qemu: find_qemu()?,
        qemu_data: PathBuf::from("/usr/share/qemu"),
    };
    let only = match args.only.as_deref() {
        Some("vmm") => Some(Monitor::Vmm),
        Some("qemu") => Some(Monitor::Qemu),
        _ => None,
    };
    let bench = MicrovmBench {
        inputs,
        accel,
        rounds: args.rounds,
        mib: args.mib,
        hold_ms: args.hold_ms,
        only,
        tcp: !args.no_tcp,
        echo: args.echo,
        guest_timeout: Duration::from_secs(args.guest_timeout_secs),
        timeout: Duration::from_secs(args.timeout_secs),
    };
    println!(
        "microvm bench: {} round(s), node on {accel} with nested KVM, guest {} (1 vCPU, {} MiB), \
         vmm {} in the node's jail vs {} -M microvm, devices run: virtio-net + {} MiB volume, \
         {} MiB per tcp run",
        bench.rounds,
        bench.inputs.kernel().display(),
        bench::microvm::GUEST_MEMORY_MIB,
        bench.inputs.vmm.display(),
        bench.inputs.qemu.display(),
        bench::microvm::VOLUME_MIB,
        bench.mib,
    );
    let mut errors = 0usize;
    let mut jailed = 0usize;
    let samples = bench::microvm::run::run(&bench, |line| {
        if line.starts_with("bench: error") {
            errors += 1;
        }
        if is_jail_line(line) {
            jailed += 1;
        }
        println!("{line}");
    })?;
    for line in summary(&samples, jailed, bench.vmm_runs()) {
        println!("{line}");
    }
    if errors > 0 {
        anyhow::bail!("{errors} microvm measurement(s) failed (see the bench: error lines)");
    }
    Ok(())
}

fn notary_bench(args: NotaryArgs) -> anyhow::Result<()> {
    use bench::notary;

    let server = match args.server {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this executable")?
            .with_file_name("nullos-notary"),
    };
    anyhow::ensure!(
        server.exists(),
        "{} not found: build it (cargo build --release -p notary) or pass --server",
        server.display()
    );
    // Every simulated node holds a connection; the server inherits the raised limit.
    let nofile = notary::raise_nofile(args.nodes * 2 + 4096);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "notary bench: {} on 127.0.0.1 (redb, fresh data directory per part), {cpus} CPU(s), RLIMIT_NOFILE {nofile}",
        server.display()
    );
    let skip = |part: &str| args.skip.iter().any(|s| s == part);
    let mut print = |line: String| println!("{line}");
    if !skip("writes") {
        let b = notary::WriteBench {
            writers: args.writers,
            rounds: usize::try_from(args.rounds).context("--rounds")?,
            secs: args.secs.clamp(0.5, 60.0),
        };
        notary::writes(&server, &b, &mut print)?;
    }
    if !skip("nodes") {
        let b = notary::NodeBench {
            nodes: args.nodes,
            lease_secs: args.lease_secs,
            placements: args.placements,
            placement_rate: args.placement_rate.clamp(0.1, 1000.0),
            stack_kib: usize::try_from(args.stack_kib).context("--stack-kib")?,
            setup_writers: 32,
            wait_key: args.wait_key,
        };
        notary::nodes(&server, &b, &mut print)?;
    }
    if !skip("proof") {
        notary::proof_size(args.proof_entries, &mut print);
    }
    Ok(())
}

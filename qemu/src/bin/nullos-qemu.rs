//! `nullos-qemu`: boots a built NullOS image in QEMU with the console on this terminal.
//!
//! `nullos-qemu run <image-dir> [--pxe | --usb] [--accel kvm|tcg] [--nic virtio|e1000|e1000e]
//! [--disk <raw image>]`
//!
//! Exit status: QEMU's own (0 after a guest poweroff), 2 for usage errors, 1 when the image is
//! incomplete or QEMU cannot be started.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use qemu::{image, qemu_program, Accel, Console, NicModel, VmConfig};

#[derive(Parser)]
#[command(name = "nullos-qemu", about = "Run NullOS images in QEMU")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot an image directory (kernel, initrd, cmdline; pxe/ with --pxe; usb.img with --usb). Ctrl-A X quits.
    Run {
        /// Output folder of `image-builder build`, e.g. build/dev.
        image_dir: PathBuf,
        /// Boot through the NIC's iPXE ROM and QEMU's TFTP server from IMAGE_DIR/pxe/.
        #[arg(long, conflicts_with = "usb")]
        pxe: bool,
        /// Boot IMAGE_DIR/usb.img as a USB stick on UEFI firmware (OVMF).
        #[arg(long)]
        usb: bool,
        /// Accelerator; default: detected (NULLOS_ACCEL, else KVM only on bare metal).
        #[arg(long)]
        accel: Option<Accel>,
        /// Network card.
        #[arg(long, value_enum, default_value_t = Nic::Virtio)]
        nic: Nic,
        /// A raw disk image attached as a virtio disk: the node claims it for workload volumes
        /// if it is empty (all zeros at both ends) or already NullOS's. Created (sparse, 1 GiB)
        /// if missing.
        #[arg(long)]
        disk: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Nic {
    Virtio,
    E1000,
    E1000e,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nullos-qemu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cmd::Run {
        image_dir,
        pxe,
        usb,
        accel,
        nic,
        disk,
    } = cli.command;
    let (boot, how) = if pxe {
        (image::pxe_boot(&image_dir)?, "PXE")
    } else if usb {
        (image::usb_boot(&image_dir)?, "USB stick on UEFI")
    } else {
        (image::direct_boot(&image_dir)?, "direct")
    };
    let accel = match accel {
        Some(accel) => accel,
        None => Accel::detect()?,
    };
    let mut config = VmConfig::new(boot, accel);
    config.nic = Some(match nic {
        Nic::Virtio => NicModel::VirtioNetPci,
        Nic::E1000 => NicModel::E1000,
        Nic::E1000e => NicModel::E1000e,
    });
    if let Some(disk) = &disk {
        if !disk.exists() {
            std::fs::File::create(disk)
                .and_then(|f| f.set_len(1 << 30))
                .with_context(|| format!("cannot create {}", disk.display()))?;
        }
        config.extra_args.push("-drive".into());
        let mut drive = std::ffi::OsString::from("file=");
        drive.push(disk.as_os_str());
        drive.push(",if=virtio,format=raw");
        config.extra_args.push(drive);
    }
    // UEFI writes its variable store: this run's copy lives and dies with this directory.
    let scratch = tempfile::Builder::new()
        .prefix("nullos-qemu-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let uefi_vars = if config.needs_uefi_vars() {
        Some(config.uefi.copy_vars(scratch.path())?)
    } else {
        None
    };
    let args = config.args(&Console::Stdio, None, uefi_vars.as_deref())?;
    let program = qemu_program();
    eprintln!(
        "nullos-qemu: booting {} ({}, accel {accel}); console below, Ctrl-A X quits",
        image_dir.display(),
        how,
    );
    let status = Command::new(&program)
        .args(&args)
        .status()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal: report failure like a shell would not be able to (no code).
        None => ExitCode::FAILURE,
    })
}

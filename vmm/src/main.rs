//! `vmm`: run one micro-VM. See `docs/VMM.md` and the `vmm::exit` module for the exit codes.

use std::process::ExitCode;

use vmm::config::{Command, HELP};
use vmm::exit::{EXIT_BAD_INPUT, EXIT_VMM_ERROR};
use vmm::{Cli, VmConfig, VmOutcome};

/// The VMM's own log lines on stderr: `vmm: <level>: <message>`.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            eprintln!("vmm: {level}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Failures with the exit status they map to.
enum Failure {
    BadInput(anyhow::Error),
    Vmm(anyhow::Error),
}

fn run(cli: &Cli) -> Result<VmOutcome, Failure> {
    let cfg = VmConfig::from_cli(cli, vmm::config::host_mem_mib())
        .map_err(|e| Failure::BadInput(e.into()))?;
    vmm::run_vm(&cfg).map_err(|e| {
        if e.is_bad_input() {
            Failure::BadInput(e.into())
        } else {
            Failure::Vmm(e.into())
        }
    })
}

fn main() -> ExitCode {
    let cli = match Cli::parse_from(std::env::args_os().skip(1)) {
        Ok(Command::Run(cli)) => *cli,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("vmm {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vmm: error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    // Only fails if a logger is already set, which cannot happen here.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(cli.log_level);
    match run(&cli) {
        Ok(VmOutcome { exit, guest_code }) => {
            log::info!("guest {exit}");
            // A stable line for the node's supervisor (docs/VMM.md), whatever the log level.
            if let Some(code) = guest_code {
                eprintln!("{}", interfaces::vm::guest_exit_code_line(code));
            }
            ExitCode::from(exit.exit_code())
        }
        Err(Failure::BadInput(e)) => {
            eprintln!("vmm: error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Failure::Vmm(e)) => {
            eprintln!("vmm: error: {e:#}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

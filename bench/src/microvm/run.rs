//! Host side: build the bench node, boot it under QEMU, collect its result lines.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qemu::{Accel, Boot, QemuError, Vm, VmConfig};

use super::image::{node_initrd, ImageError, NodeInputs};
use super::proto::{parse_result, Monitor, Sample, DONE_LINE};

/// The bench node's memory: room for the unpacked initramfs (QEMU and its libraries) and two
/// 128 MiB guests.
pub const NODE_MEMORY_MIB: u32 = 2048;

/// What to run.
#[derive(Debug, Clone)]
pub struct MicrovmBench {
    /// The node image's inputs.
    pub inputs: NodeInputs,
    /// Accelerator of the node (TCG inside a VM: its SVM is what nested KVM runs on).
    pub accel: Accel,
    /// Rounds (each: boot+rss and tcp on both monitors).
    pub rounds: u64,
    /// MiB per throughput run.
    pub mib: u64,
    /// ms the boot-run guest holds after its marker.
    pub hold_ms: u64,
    /// Only this monitor (for debugging); both when `None`.
    pub only: Option<Monitor>,
    /// Whether to run the throughput runs.
    pub tcp: bool,
    /// Echo the monitors' output on the node console (debugging).
    pub echo: bool,
    /// Longest one guest run may take (passed to the node).
    pub guest_timeout: Duration,
    /// Longest the whole node run may take.
    pub timeout: Duration,
}

/// A benchmark that could not run.
#[derive(Debug, thiserror::Error)]
pub enum MicrovmError {
    /// No kernel release under the kernel directory.
    #[error("no kernel release in {dir}/lib/modules (fetch the kernel: `make kernel`)")]
    NoKernel {
        /// `<kernel_dir>/lib/modules`.
        dir: PathBuf,
    },
    /// QEMU is not installed.
    #[error(
        "{program:?} not found in PATH: install qemu-system-x86 (`make deps`) or set NULLOS_QEMU"
    )]
    NoQemu {
        /// What was looked for.
        program: OsString,
    },
    /// The node image cannot be built.
    #[error("cannot build the bench node image")]
    Image(#[from] ImageError),
    /// No scratch directory, or the initramfs cannot be written there.
    #[error("cannot write the node initramfs in a scratch directory")]
    Scratch(#[source] io::Error),
    /// QEMU failed to start the node, or its console cannot be read.
    #[error("bench node")]
    Qemu(#[from] QemuError),
    /// The node did not finish in time.
    #[error("the bench node did not print {DONE_LINE:?} within {timeout:?}; last lines:\n{tail}")]
    Timeout {
        /// The limit.
        timeout: Duration,
        /// The last console lines.
        tail: String,
    },
    /// The node's QEMU exited before finishing.
    #[error("the bench node's QEMU exited ({status}) before {DONE_LINE:?}; last lines:\n{tail}")]
    Exited {
        /// QEMU's status.
        status: String,
        /// The last console lines.
        tail: String,
    },
}

impl MicrovmBench {
    /// How many times the node starts our vmm (each run must show it jailed): a boot run and a
    /// devices run per round, and a throughput run unless skipped; none with `--only qemu`.
    pub fn vmm_runs(&self) -> usize {
        if self.only == Some(Monitor::Qemu) {
            return 0;
        }
        let per_round = if self.tcp { 3 } else { 2 };
        usize::try_from(self.rounds)
            .unwrap_or(usize::MAX)
            .saturating_mul(per_round)
    }
}

/// The only kernel release under `<kernel_dir>/lib/modules`.
pub fn find_kver(kernel_dir: &Path) -> Result<String, MicrovmError> {
    let dir = kernel_dir.join("lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    releases.sort();
    releases.pop().ok_or(MicrovmError::NoKernel { dir })
}

/// Where a static binary of the workspace is built: `<target>/x86_64-unknown-linux-gnu/release/
/// <name>`, `<target>` being this executable's target directory (else `target`).
pub fn static_binary(name: &str) -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("x86_64-unknown-linux-gnu/release").join(name)
}

/// QEMU on this host: `NULLOS_QEMU` or `qemu-system-x86_64`, looked up in `PATH`.
pub fn find_qemu() -> Result<PathBuf, MicrovmError> {
    let program = qemu::qemu_program();
    let as_path = PathBuf::from(&program);
    if as_path.components().count() > 1 {
        return if as_path.is_file() {
            Ok(as_path)
        } else {
            Err(MicrovmError::NoQemu { program })
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&program))
        .find(|candidate| candidate.is_file())
        .ok_or(MicrovmError::NoQemu { program })
}

/// The node's kernel command line: the console, and the benchmark's parameters for
/// `bench-node-init`.
pub fn node_cmdline(bench: &MicrovmBench) -> String {
    let mut cmdline = format!(
        "console=ttyS0 quiet panic=-1 bench.rounds={} bench.mib={} bench.hold_ms={} bench.timeout_s={} bench.tcp={} bench.echo={}",
        bench.rounds,
        bench.mib,
        bench.hold_ms,
        bench.guest_timeout.as_secs(),
        u8::from(bench.tcp),
        u8::from(bench.echo),
    );
    if let Some(only) = bench.only {
        cmdline.push_str(&format!(" bench.only={only}"));
    }
    cmdline
}

/// A node console line without the control characters and blanks a serial console can leave
/// around it (a `\r` before a line as well as after), and from its `bench: ` on when something
/// else came first on the same line (a kernel message the console printed before it), so that
/// every `bench-node-init` line is shown and parsed.
pub fn clean_line(line: &str) -> &str {
    let line = line.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    line.find("bench: ").map_or(line, |at| &line[at..])
}

/// Builds the node image, boots it and returns every result it printed; `on_line` sees each node
/// console line that starts with `bench: ` (every line with [`MicrovmBench::echo`]) as it comes.
pub fn run(
    bench: &MicrovmBench,
    mut on_line: impl FnMut(&str),
) -> Result<Vec<Sample>, MicrovmError> {
    let (initrd, _) = node_initrd(&bench.inputs)?;
    let scratch = tempfile::Builder::new()
        .prefix("nullos-bench-microvm-")
        .tempdir()
        .map_err(MicrovmError::Scratch)?;
    let initrd_path = scratch.path().join("node-initrd");
    std::fs::write(&initrd_path, &initrd).map_err(MicrovmError::Scratch)?;
    drop(initrd);

    let mut config = VmConfig::new(
        Boot::Direct {
            kernel: bench.inputs.kernel(),
            initrd: initrd_path,
            cmdline: node_cmdline(bench),
        },
        bench.accel,
    );
    config.memory_mib = NODE_MEMORY_MIB;
    config.cpus = 2;
    config.nic = None;
    let vm = Vm::start(config)?;

    let started = Instant::now();
    let mut consumed = 0usize;
    let mut samples = Vec::new();
    let mut recent: Vec<String> = Vec::new();
    loop {
        let text = vm.serial_text()?;
        // Only whole lines; the last one may still be being written.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete > consumed {
            for line in text[consumed..complete].lines() {
                let line = clean_line(line);
                if bench.echo || line.starts_with("bench: ") {
                    on_line(line);
                }
                samples.extend(parse_result(line));
                recent.push(line.to_string());
                if recent.len() > 30 {
                    recent.remove(0);
                }
                if line.trim() == DONE_LINE {
                    return Ok(samples);
                }
            }
            consumed = complete;
        }
        if let Some(status) = vm.try_exit_status()? {
            return Err(MicrovmError::Exited {
                status: status.to_string(),
                tail: recent.join("\n"),
            });
        }
        if started.elapsed() >= bench.timeout {
            return Err(MicrovmError::Timeout {
                timeout: bench.timeout,
                tail: recent.join("\n"),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_command_line_carries_the_parameters() {
        let bench = MicrovmBench {
            inputs: NodeInputs {
                kernel_dir: "/k".into(),
                kver: "6.1".into(),
                node_init: "/n".into(),
                guest_init: "/g".into(),
                vmm: "/v".into(),
                qemu: "/q".into(),
                qemu_data: "/d".into(),
            },
            accel: Accel::Tcg,
            rounds: 3,
            mib: 64,
            hold_ms: 2000,
            only: Some(Monitor::Vmm),
            tcp: false,
            echo: false,
            guest_timeout: Duration::from_secs(180),
            timeout: Duration::from_secs(1800),
        };
        assert_eq!(
            node_cmdline(&bench),
            "console=ttyS0 quiet panic=-1 bench.rounds=3 bench.mib=64 bench.hold_ms=2000 \
             bench.timeout_s=180 bench.tcp=0 bench.echo=0 bench.only=vmm"
        );
        assert_eq!(bench.inputs.kernel(), Path::new("/k/boot/vmlinuz-6.1"));
        assert_eq!(bench.vmm_runs(), 6);
        let both_with_tcp = MicrovmBench {
            only: None,
            tcp: true,
            ..bench.clone()
        };
        assert_eq!(both_with_tcp.vmm_runs(), 9);
        let qemu_only = MicrovmBench {
            only: Some(Monitor::Qemu),
            ..bench
        };
        assert_eq!(qemu_only.vmm_runs(), 0);
    }

    #[test]
    fn console_lines_lose_their_carriage_returns_on_both_sides() {
        assert_eq!(
            clean_line("\rbench: cpu vmm round=1\r"),
            "bench: cpu vmm round=1"
        );
        assert_eq!(clean_line("\u{0}\r\nbench: done \r"), "bench: done");
        assert_eq!(clean_line("[vmm] x"), "[vmm] x");
        assert_eq!(
            clean_line("[  812.5] rcu: stall bench: cpu vmm round=3\r"),
            "bench: cpu vmm round=3"
        );
    }

    #[test]
    fn the_kernel_release_is_found_or_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            find_kver(dir.path()),
            Err(MicrovmError::NoKernel { .. })
        ));
        std::fs::create_dir_all(dir.path().join("lib/modules/6.1.0-56-cloud-amd64")).unwrap();
        assert_eq!(find_kver(dir.path()).unwrap(), "6.1.0-56-cloud-amd64");
    }
}

//! A running QEMU with its console in a file and a QMP socket, killed and reaped on drop.

use std::fs::File;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::config::{qemu_program, Console, VmConfig};
use crate::console::{self, LineScanner, WaitError};
use crate::error::{console_excerpt, stderr_excerpt, QemuError};
use crate::qmp::Qmp;
use crate::spawn::spawn_tied_to_process;

/// How long QEMU may take to open its QMP socket after being started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running VM.
///
/// The console (ttyS0) goes to `serial.log` and QMP listens on `qmp.sock`, both in a private
/// scratch directory (which also holds the UEFI variable store of a UEFI boot). Dropping the `Vm` kills QEMU (SIGKILL), reaps it and removes the directory;
/// QEMU also dies with the test process (see `spawn.rs`). All methods take `&self`, so one thread
/// may wait for console lines while another sends QMP commands.
#[derive(Debug)]
pub struct Vm {
    child: Mutex<Child>,
    qmp: Mutex<Qmp>,
    pid: u32,
    serial: PathBuf,
    stderr_log: PathBuf,
    started: Instant,
    config: VmConfig,
    // Dropped last (fields drop in order), after `Drop::drop` has killed QEMU.
    dir: TempDir,
}

impl Vm {
    /// Starts QEMU for `config` and returns once its QMP socket answers (so a bad option fails
    /// here, with QEMU's stderr in the error, not later as a console timeout).
    pub fn start(config: VmConfig) -> Result<Vm, QemuError> {
        let dir = tempfile::Builder::new()
            .prefix("nullos-vm-")
            .tempdir()
            .map_err(QemuError::CreateScratchDir)?;
        let serial = dir.path().join("serial.log");
        let qmp_path = dir.path().join("qmp.sock");
        let stderr_log = dir.path().join("qemu.stderr");
        let uefi_vars = if config.needs_uefi_vars() {
            Some(
                config
                    .uefi
                    .copy_vars(dir.path())
                    .map_err(QemuError::CopyUefiVars)?,
            )
        } else {
            None
        };
        let args = config.args(
            &Console::File(serial.clone()),
            Some(&qmp_path),
            uefi_vars.as_deref(),
        )?;
        let stderr = File::create(&stderr_log).map_err(|source| QemuError::CreateLog {
            path: stderr_log.clone(),
            source,
        })?;
        let program = qemu_program();
        let mut command = Command::new(&program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = spawn_tied_to_process(command).map_err(|source| QemuError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
        let qmp = match connect_qmp(&mut child, &qmp_path, &stderr_log) {
            Ok(qmp) => qmp,
            Err(e) => {
                kill_and_reap(&mut child);
                return Err(e);
            }
        };
        Ok(Vm {
            pid: child.id(),
            child: Mutex::new(child),
            qmp: Mutex::new(qmp),
            serial,
            stderr_log,
            started: Instant::now(),
            config,
            dir,
        })
    }

    /// The config this VM was started with.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Host time since QEMU was started (measured from when its QMP socket answered).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The VM's scratch directory (console file, QMP socket, QEMU's stderr).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The console file QEMU appends ttyS0 output to.
    pub fn serial_path(&self) -> &Path {
        &self.serial
    }

    /// Everything the guest wrote to the console so far (invalid UTF-8 replaced).
    pub fn serial_text(&self) -> Result<String, QemuError> {
        let bytes = std::fs::read(&self.serial).map_err(|source| QemuError::ReadConsole {
            path: self.serial.clone(),
            source,
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits until a console line contains `needle` and returns that line (without `\r\n`).
    ///
    /// The whole console since boot is searched, so a line printed before the call is found
    /// at once. Fails early if QEMU exits first, and on timeout; either error shows the last
    /// console lines.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String, QemuError> {
        self.wait_for_line_matching(
            &format!("containing {needle:?}"),
            |line| line.contains(needle),
            timeout,
        )
    }

    /// Like [`Vm::wait_for_line`], for any predicate; `what` describes it in error messages
    /// (e.g. `"matching ready with address=10.0.2.15/24"`).
    pub fn wait_for_line_matching(
        &self,
        what: &str,
        mut matches: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, QemuError> {
        let mut exited = || self.try_exit_status().ok().flatten();
        console::wait_for_line(&self.serial, &mut matches, timeout, &mut exited).map_err(
            |e| match e {
                WaitError::ReadConsole { path, source } => QemuError::ReadConsole { path, source },
                WaitError::Timeout { timeout, tail } => QemuError::LineTimeout {
                    awaited: what.to_string(),
                    timeout,
                    tail: console_excerpt(&tail),
                },
                WaitError::Exited { status, tail } => QemuError::LineExited {
                    awaited: what.to_string(),
                    status,
                    tail: console_excerpt(&tail),
                    stderr: stderr_excerpt(&self.qemu_stderr()),
                },
            },
        )
    }

    /// Runs a QMP command and returns its `return` value.
    pub fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value, QemuError> {
        lock(&self.qmp)
            .execute(command, arguments)
            .map_err(|source| QemuError::Qmp {
                command: command.to_string(),
                source,
            })
    }

    /// Presses the ACPI power button (`system_powerdown`); the guest decides what to do.
    pub fn powerdown(&self) -> Result<(), QemuError> {
        self.qmp("system_powerdown", None).map(|_| ())
    }

    /// QEMU's run state from `query-status`: `"running"`, `"paused"`, `"shutdown"`, ...
    pub fn status(&self) -> Result<String, QemuError> {
        let reply = self.qmp("query-status", None)?;
        Ok(reply
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string())
    }

    /// QEMU's exit status if it has exited (reaping it), else `None`.
    pub fn try_exit_status(&self) -> Result<Option<ExitStatus>, QemuError> {
        lock(&self.child).try_wait().map_err(QemuError::Wait)
    }

    /// Waits up to `timeout` for QEMU to exit (guest poweroff, or reboot/panic with
    /// `-no-reboot`) and returns its exit status.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(QemuError::ExitTimeout {
                    timeout,
                    tail: console_excerpt(&self.console_tail()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills QEMU (SIGKILL) and reaps it; returns its exit status. Harmless if it already exited.
    pub fn kill(&self) -> Result<ExitStatus, QemuError> {
        let mut child = lock(&self.child);
        if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
            return Ok(status);
        }
        child.kill().map_err(QemuError::Kill)?;
        child.wait().map_err(QemuError::Wait)
    }

    fn console_tail(&self) -> String {
        let mut scanner = LineScanner::new();
        let bytes = std::fs::read(&self.serial).unwrap_or_default();
        scanner.feed(&bytes, &mut |_| false);
        scanner.tail()
    }

    fn qemu_stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(child) => child,
            Err(poisoned) => poisoned.into_inner(),
        };
        kill_and_reap(child);
    }
}

fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // Errors here mean the process is already gone; wait() below reaps it either way.
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Connects to QEMU's QMP socket, retrying until it appears, failing fast if QEMU exits.
fn connect_qmp(child: &mut Child, path: &Path, stderr_log: &Path) -> Result<Qmp, QemuError> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
            let stderr = std::fs::read_to_string(stderr_log).unwrap_or_default();
            return Err(QemuError::StartupExited {
                status,
                stderr: stderr_excerpt(&stderr),
            });
        }
        match UnixStream::connect(path) {
            Ok(stream) => {
                return Qmp::handshake(stream).map_err(|source| QemuError::Qmp {
                    command: "qmp_capabilities".to_string(),
                    source,
                })
            }
            Err(source) if Instant::now() >= deadline => {
                return Err(QemuError::QmpConnect {
                    path: path.to_path_buf(),
                    timeout: STARTUP_TIMEOUT,
                    source,
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(QemuError::QmpConnect {
                    path: path.to_path_buf(),
                    timeout: STARTUP_TIMEOUT,
                    source,
                })
            }
        }
    }
}

/// Locks a mutex, tolerating poison: a panic in another thread while it held the lock leaves
/// a `Child` or QMP stream that is still usable (at worst the QMP stream errors next time).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

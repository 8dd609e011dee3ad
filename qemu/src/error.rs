//! The error of every [`Vm`](crate::Vm) operation.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::config::ConfigError;
use crate::qmp::QmpError;

/// A failed VM operation.
///
/// Messages about the guest carry the last console lines (and QEMU's stderr when QEMU died), so
/// a failing test shows why. `Debug` prints the same text plus the source chain, so that
/// `.unwrap()` and `-> Result` tests stay readable.
#[derive(thiserror::Error)]
pub enum QemuError {
    /// The config cannot become a command line.
    #[error("invalid VM config")]
    Config(#[from] ConfigError),
    /// The VM's scratch directory (console file, QMP socket) could not be made.
    #[error("cannot create a scratch directory for the VM")]
    CreateScratchDir(#[source] io::Error),
    /// The UEFI variable store could not be copied into the scratch directory.
    #[error("cannot copy the UEFI variable store")]
    CopyUefiVars(#[source] io::Error),
    /// QEMU's stderr file could not be created.
    #[error("cannot create {path}")]
    CreateLog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// QEMU could not be started at all.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// QEMU exited before its QMP socket came up (usually a bad option).
    #[error("QEMU exited ({status}) while starting{stderr}")]
    StartupExited {
        /// Its exit status.
        status: ExitStatus,
        /// Formatted tail of QEMU's stderr.
        stderr: String,
    },
    /// QEMU's QMP socket never accepted a connection.
    #[error("QEMU's QMP socket {path} did not accept a connection within {timeout:?}")]
    QmpConnect {
        /// The socket.
        path: PathBuf,
        /// How long we tried.
        timeout: Duration,
        /// The last connection error.
        #[source]
        source: io::Error,
    },
    /// A QMP command failed.
    #[error("QMP command {command} failed")]
    Qmp {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: QmpError,
    },
    /// The serial console file could not be read.
    #[error("cannot read the serial console {path}")]
    ReadConsole {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No matching console line before the timeout.
    #[error("timed out after {timeout:?} waiting for a console line {awaited}{tail}")]
    LineTimeout {
        /// What was awaited, e.g. `containing "nullos: ready"`.
        awaited: String,
        /// The timeout.
        timeout: Duration,
        /// Formatted console tail.
        tail: String,
    },
    /// QEMU exited without printing a matching console line.
    #[error("QEMU exited ({status}) before a console line {awaited} appeared{tail}{stderr}")]
    LineExited {
        /// What was awaited.
        awaited: String,
        /// QEMU's exit status.
        status: ExitStatus,
        /// Formatted console tail.
        tail: String,
        /// Formatted tail of QEMU's stderr (empty if it wrote nothing).
        stderr: String,
    },
    /// QEMU was still running at the end of [`Vm::wait_exit`](crate::Vm::wait_exit).
    #[error("QEMU did not exit within {timeout:?}{tail}")]
    ExitTimeout {
        /// The timeout.
        timeout: Duration,
        /// Formatted console tail.
        tail: String,
    },
    /// Asking the OS about the QEMU process failed.
    #[error("cannot wait for QEMU")]
    Wait(#[source] io::Error),
    /// Killing QEMU failed.
    #[error("cannot kill QEMU")]
    Kill(#[source] io::Error),
}

impl fmt::Debug for QemuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = self.source();
        while let Some(cause) = source {
            write!(f, "\ncaused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Formats console lines for an error message (a leading newline, a header, the lines).
pub(crate) fn console_excerpt(tail: &str) -> String {
    if tail.is_empty() {
        "\n--- the serial console is empty ---".to_string()
    } else {
        format!("\n--- last serial console lines ---\n{tail}\n--- end of console ---")
    }
}

/// Formats QEMU's stderr for an error message; empty when there is nothing to show.
pub(crate) fn stderr_excerpt(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(20);
    format!(
        "\n--- QEMU stderr ---\n{}\n--- end of stderr ---",
        lines[start..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_console_tail_and_the_cause_chain() {
        let err = QemuError::LineTimeout {
            awaited: "containing \"nullos: ready\"".into(),
            timeout: Duration::from_secs(5),
            tail: console_excerpt("init: error: no network"),
        };
        let text = format!("{err:?}");
        assert!(text.starts_with(
            "timed out after 5s waiting for a console line containing \"nullos: ready\"\n"
        ));
        assert!(text.contains("\ninit: error: no network\n"), "{text}");

        let err = QemuError::Qmp {
            command: "query-status".into(),
            source: QmpError::Closed,
        };
        assert_eq!(
            format!("{err:?}"),
            "QMP command query-status failed\ncaused by: QEMU closed the QMP connection"
        );
    }

    #[test]
    fn stderr_excerpt_is_empty_for_no_output_and_keeps_the_end() {
        assert_eq!(stderr_excerpt(""), "");
        let long: String = (0..50).map(|i| format!("e{i}\n")).collect();
        let text = stderr_excerpt(&long);
        assert!(text.contains("e49") && text.contains("e30") && !text.contains("e29\n"));
    }
}

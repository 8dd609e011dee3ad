//! The serial console as lines: splitting a growing byte stream, and waiting for a line in a file
//! that QEMU appends to.
//!
//! [`LineScanner`] is pure (bytes in, lines out) so line splitting, partial lines and the
//! diagnostic tail are tested with plain buffers; [`wait_for_line`] is the thin polling loop over
//! a file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// How many console lines an error message shows.
pub const TAIL_LINES: usize = 30;

/// How often the console file is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Splits console bytes into lines (`\n`-terminated, a trailing `\r` dropped, invalid UTF-8
/// replaced) and remembers the last [`TAIL_LINES`] for error messages.
#[derive(Debug, Default)]
pub struct LineScanner {
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl LineScanner {
    /// An empty scanner.
    pub fn new() -> LineScanner {
        LineScanner::default()
    }

    /// Feeds more console bytes and returns the first complete line for which `matches` is true.
    /// Lines after the match stay buffered and are looked at by the next call.
    pub fn feed(&mut self, bytes: &[u8], matches: &mut dyn FnMut(&str) -> bool) -> Option<String> {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        let mut found = None;
        while let Some(nl) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = clean_line(&self.partial[start..start + nl]);
            start += nl + 1;
            self.remember(&line);
            if matches(&line) {
                found = Some(line);
                break;
            }
        }
        self.partial.drain(..start);
        found
    }

    /// Treats buffered bytes without a final newline as a last line (the console is closed) and
    /// returns it if it matches. Complete lines still buffered are looked at first.
    pub fn finish(&mut self, matches: &mut dyn FnMut(&str) -> bool) -> Option<String> {
        if let Some(line) = self.feed(&[], matches) {
            return Some(line);
        }
        if self.partial.is_empty() {
            return None;
        }
        let line = clean_line(&self.partial);
        self.partial.clear();
        self.remember(&line);
        matches(&line).then_some(line)
    }

    /// The last [`TAIL_LINES`] lines seen, plus any unterminated line, joined by newlines.
    pub fn tail(&self) -> String {
        let mut out: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        let partial = clean_line(&self.partial);
        if !partial.is_empty() {
            out.push(&partial);
            if out.len() > TAIL_LINES {
                out.remove(0);
            }
            return out.join("\n");
        }
        out.join("\n")
    }

    fn remember(&mut self, line: &str) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }
}

fn clean_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Why [`wait_for_line`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The console file could not be read.
    #[error("cannot read console file {path}")]
    ReadConsole {
        /// The console file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No matching line within the timeout.
    #[error("no matching console line within {timeout:?}")]
    Timeout {
        /// The timeout.
        timeout: Duration,
        /// The last console lines.
        tail: String,
    },
    /// The process writing the console exited without printing a matching line.
    #[error("the VM exited ({status}) without a matching console line")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The last console lines.
        tail: String,
    },
}

/// Polls the console file at `path` (from its beginning) until a complete line satisfies
/// `matches`, and returns that line.
///
/// `exited` is asked on every poll whether the writer is gone; once it is, the rest of the file
/// is read, a final unterminated line counts as a line, and if nothing matched the wait fails at
/// once instead of running into the timeout. A missing file counts as empty (QEMU may not have
/// created it yet).
pub fn wait_for_line(
    path: &Path,
    matches: &mut dyn FnMut(&str) -> bool,
    timeout: Duration,
    exited: &mut dyn FnMut() -> Option<ExitStatus>,
) -> Result<String, WaitError> {
    let deadline = Instant::now() + timeout;
    let mut scanner = LineScanner::new();
    let mut offset = 0u64;
    let mut buf = Vec::new();
    loop {
        // Ask before reading, so everything written before the exit is read below.
        let status = exited();
        buf.clear();
        read_from(path, offset, &mut buf).map_err(|source| WaitError::ReadConsole {
            path: path.to_path_buf(),
            source,
        })?;
        offset += buf.len() as u64;
        if let Some(line) = scanner.feed(&buf, matches) {
            return Ok(line);
        }
        if let Some(status) = status {
            if let Some(line) = scanner.finish(matches) {
                return Ok(line);
            }
            return Err(WaitError::Exited {
                status,
                tail: scanner.tail(),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout {
                timeout,
                tail: scanner.tail(),
            });
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Appends the bytes of `path` from `offset` to its current end to `buf`.
fn read_from(path: &Path, offset: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    file.read_to_end(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn contains(needle: &'static str) -> impl FnMut(&str) -> bool {
        move |line: &str| line.contains(needle)
    }

    #[test]
    fn lines_split_across_feeds_are_joined() {
        let mut s = LineScanner::new();
        let mut m = contains("nullos: ready");
        assert_eq!(s.feed(b"[ 1.0] boot\r\nnullos: re", &mut m), None);
        assert_eq!(
            s.feed(b"ady version=1\r\nafter\n", &mut m).as_deref(),
            Some("nullos: ready version=1")
        );
    }

    #[test]
    fn a_partial_line_never_matches_until_finished() {
        let mut s = LineScanner::new();
        let mut m = contains("poweroff");
        assert_eq!(s.feed(b"nullos: poweroff", &mut m), None);
        assert_eq!(s.finish(&mut m).as_deref(), Some("nullos: poweroff"));
    }

    #[test]
    fn lines_after_a_match_are_kept_for_the_next_call() {
        let mut s = LineScanner::new();
        let mut m = contains("x");
        assert_eq!(s.feed(b"x1\nx2\n", &mut m).as_deref(), Some("x1"));
        assert_eq!(s.feed(b"", &mut m).as_deref(), Some("x2"));
        assert_eq!(s.finish(&mut m), None);
    }

    #[test]
    fn tail_keeps_the_last_lines_and_the_partial_one() {
        let mut s = LineScanner::new();
        let mut never = |_: &str| false;
        for i in 0..40 {
            s.feed(format!("line {i}\n").as_bytes(), &mut never);
        }
        s.feed(b"half", &mut never);
        let tail = s.tail();
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.first(), Some(&"line 11"));
        assert_eq!(lines.last(), Some(&"half"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut s = LineScanner::new();
        let got = s.feed(b"a\xffb\n", &mut |_| true);
        assert_eq!(got.as_deref(), Some("a\u{fffd}b"));
    }

    #[test]
    fn waits_for_a_line_appended_later_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let mut f = File::create(&writer_path).unwrap();
            f.write_all(b"booting\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(200));
            f.write_all(b"baseline: init reached ").unwrap();
            std::thread::sleep(Duration::from_millis(200));
            f.write_all(b"uptime_ms=42\r\n").unwrap();
        });
        let line = wait_for_line(
            &path,
            &mut contains("baseline:"),
            Duration::from_secs(10),
            &mut || None,
        )
        .unwrap();
        writer.join().unwrap();
        assert_eq!(line, "baseline: init reached uptime_ms=42");
    }

    #[test]
    fn timeout_reports_the_console_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        std::fs::write(&path, "kernel panic: something\n").unwrap();
        let started = Instant::now();
        let err = wait_for_line(
            &path,
            &mut contains("nullos: ready"),
            Duration::from_millis(300),
            &mut || None,
        )
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        match err {
            WaitError::Timeout { timeout, tail } => {
                assert_eq!(timeout, Duration::from_millis(300));
                assert_eq!(tail, "kernel panic: something");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn exit_ends_the_wait_early_but_still_reads_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        std::fs::write(&path, "one\nnullos: poweroff").unwrap();
        let mut exited = || Some(ExitStatus::from_raw(0));
        let line = wait_for_line(
            &path,
            &mut contains("poweroff"),
            Duration::from_secs(60),
            &mut exited,
        )
        .unwrap();
        assert_eq!(line, "nullos: poweroff");

        let started = Instant::now();
        let err = wait_for_line(
            &path,
            &mut contains("never"),
            Duration::from_secs(60),
            &mut exited,
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&err, WaitError::Exited { tail, .. } if tail == "one\nnullos: poweroff"),
            "{err:?}"
        );
    }

    #[test]
    fn missing_file_counts_as_empty_console() {
        let dir = tempfile::tempdir().unwrap();
        let err = wait_for_line(
            &dir.path().join("absent"),
            &mut |_| true,
            Duration::from_millis(100),
            &mut || None,
        )
        .unwrap_err();
        assert!(matches!(err, WaitError::Timeout { ref tail, .. } if tail.is_empty()));
    }
}

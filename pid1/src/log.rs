//! Leveled logging to `/dev/kmsg` and the console.
//!
//! Every record is written to `/dev/kmsg` with its syslog priority (`<N>init: level: message`)
//! so it lands in the kernel log. The kernel itself echoes kmsg records whose priority is below
//! the console loglevel (first field of `/proc/sys/kernel/printk`; 4 with `quiet`, 7 without) to
//! the console, so `init` writes a record to `/dev/console` itself only when the kernel will not:
//! each line appears on the console exactly once. (The kernel's echo carries its `[  t.tttttt]`
//! timestamp prefix; the text after it is the same `init: level: message`.) Writes to kmsg are
//! made unlimited (`printk_devkmsg=on`) because the kernel's default rate limit would otherwise
//! drop lines, and with them the console copy. If kmsg cannot be written, the console copy is
//! always made.
//!
//! The interface lines tests grep (`nullos: ready ...`, `nullos: poweroff`) go through
//! [`interface_line`]: always written to the console by `init` itself, so they never carry a
//! kernel timestamp, and copied to kmsg only when the kernel would not echo them.
//!
//! State is a few atomics and `OnceLock`ed files, no mutex, so the panic hook can always log.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::cmdline::LogLevel;

/// Priority of interface lines in kmsg (`KERN_NOTICE`).
const INTERFACE_PRIORITY: u8 = 5;
/// Longest message kept; kmsg records are limited to about 1 KiB.
const MAX_MESSAGE: usize = 900;

static MAX_LEVEL: AtomicU8 = AtomicU8::new(level_to_u8(LogLevel::Info));
/// Console loglevel of the kernel; 0 = unknown (the kernel is assumed to echo nothing).
static CONSOLE_LOGLEVEL: AtomicU8 = AtomicU8::new(0);
static KMSG_OK: AtomicBool = AtomicBool::new(false);
static KMSG: OnceLock<File> = OnceLock::new();
static CONSOLE: OnceLock<File> = OnceLock::new();
/// The program name that starts every record; `init` unless [`set_program`] said otherwise.
static PROGRAM: OnceLock<&'static str> = OnceLock::new();

const fn level_to_u8(level: LogLevel) -> u8 {
    match level {
        LogLevel::Error => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
        LogLevel::Debug => 3,
    }
}

/// Opens `/dev/kmsg` and `/dev/console` (once `/dev` is mounted) and sets the level filter.
///
/// Until this is called, records go to standard error, which the kernel opened on the console.
pub fn init(level: LogLevel) {
    set_level(level);
    // Lift the kmsg rate limit for user space (default `ratelimit`); see the module docs.
    let unlimited = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n").is_ok();
    if let Ok(f) = OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = KMSG.set(f);
        KMSG_OK.store(unlimited, Ordering::Relaxed);
    }
    if let Ok(f) = OpenOptions::new().write(true).open("/dev/console") {
        let _ = CONSOLE.set(f);
    }
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/printk") {
        CONSOLE_LOGLEVEL.store(
            parse_console_loglevel(&text).unwrap_or(0),
            Ordering::Relaxed,
        );
    }
}

/// Names the program in every record (`<program>: level: message`), for another PID 1 that
/// shares this logging (stage 0's `boot`). Only the first call counts; the default is `init`.
pub fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// Sets the most verbose level written.
pub fn set_level(level: LogLevel) {
    MAX_LEVEL.store(level_to_u8(level), Ordering::Relaxed);
}

/// Whether records of this level are written.
pub fn enabled(level: LogLevel) -> bool {
    level_to_u8(level) <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one record (use the `error!`/`warn!`/`info!`/`debug!` macros).
pub fn log(level: LogLevel, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let message = sanitize(&args.to_string());
    let priority = level.syslog_priority();
    let program = PROGRAM.get().copied().unwrap_or("init");
    let line = format!("{program}: {level}: {message}\n");
    let kmsg_written = write_kmsg(priority, &line);
    if !(kmsg_written && kernel_echoes(priority, CONSOLE_LOGLEVEL.load(Ordering::Relaxed))) {
        write_console(&line);
    }
}

/// Writes a stable interface line (not `init: level:` formatted) to the console, exactly as given.
pub fn interface_line(text: &str) {
    let line = format!("{}\n", sanitize(text));
    write_console(&line);
    if !kernel_echoes(INTERFACE_PRIORITY, CONSOLE_LOGLEVEL.load(Ordering::Relaxed)) {
        write_kmsg(INTERFACE_PRIORITY, &line);
    }
}

fn write_kmsg(priority: u8, line: &str) -> bool {
    match KMSG.get() {
        Some(mut kmsg) if KMSG_OK.load(Ordering::Relaxed) => kmsg
            .write_all(format!("<{priority}>{line}").as_bytes())
            .is_ok(),
        Some(mut kmsg) => {
            // Rate-limited kmsg: still record it, but do not count on the kernel's echo.
            let _ = kmsg.write_all(format!("<{priority}>{line}").as_bytes());
            false
        }
        None => false,
    }
}

fn write_console(line: &str) {
    // One write(2) per line so concurrent writers never interleave within a line.
    let result = match CONSOLE.get() {
        Some(mut console) => console.write_all(line.as_bytes()),
        None => std::io::stderr().lock().write_all(line.as_bytes()),
    };
    // Nowhere left to report a console failure.
    let _ = result;
}

/// Whether the kernel copies a kmsg record of `priority` to the console by itself.
pub fn kernel_echoes(priority: u8, console_loglevel: u8) -> bool {
    priority < console_loglevel
}

/// The console loglevel: the first number of `/proc/sys/kernel/printk`.
pub fn parse_console_loglevel(text: &str) -> Option<u8> {
    text.split_whitespace().next()?.parse().ok()
}

/// One line per record: a line break and the indentation after it become one space, other
/// control characters a space each, and the length is bounded.
fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut lines = message.lines();
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        out.push(' ');
        out.push_str(line.trim_start());
    }
    let mut out: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// Installs a panic hook that logs the panic as an error line instead of printing to stderr.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Error, format_args!("panic: {info}"));
    }));
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::cmdline::LogLevel::Error, format_args!($($arg)*)) };
}
/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::cmdline::LogLevel::Warn, format_args!($($arg)*)) };
}
/// Logs at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::cmdline::LogLevel::Info, format_args!($($arg)*)) };
}
/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::cmdline::LogLevel::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_console_echoes_only_errors() {
        // `quiet` sets console loglevel 4: errors (3) are echoed by the kernel, warn (4) is not.
        let quiet = parse_console_loglevel("4\t4\t1\t7\n").unwrap();
        assert!(kernel_echoes(LogLevel::Error.syslog_priority(), quiet));
        assert!(!kernel_echoes(LogLevel::Warn.syslog_priority(), quiet));
        assert!(!kernel_echoes(LogLevel::Info.syslog_priority(), quiet));
        assert!(!kernel_echoes(INTERFACE_PRIORITY, quiet));
        let loud = parse_console_loglevel("7 4 1 7").unwrap();
        assert!(kernel_echoes(LogLevel::Info.syslog_priority(), loud));
        assert!(!kernel_echoes(LogLevel::Debug.syslog_priority(), loud));
        assert!(!kernel_echoes(LogLevel::Error.syslog_priority(), 0));
        assert_eq!(parse_console_loglevel("garbage"), None);
    }

    #[test]
    fn sanitize_makes_one_bounded_line() {
        assert_eq!(sanitize("a\nb\tc"), "a b c");
        assert_eq!(
            sanitize("parse:\n   | 1 | x\n   |   ^ bad\n"),
            "parse: | 1 | x |   ^ bad"
        );
        let long = "é".repeat(1000);
        let s = sanitize(&long);
        assert!(s.len() <= MAX_MESSAGE + 3 && s.ends_with("..."));
    }

    #[test]
    fn level_filter() {
        set_level(LogLevel::Warn);
        assert!(enabled(LogLevel::Error) && enabled(LogLevel::Warn));
        assert!(!enabled(LogLevel::Info) && !enabled(LogLevel::Debug));
        set_level(LogLevel::Info);
        assert!(enabled(LogLevel::Info) && !enabled(LogLevel::Debug));
    }
}

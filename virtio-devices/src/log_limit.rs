//! One limiter for the log lines a guest can cause at will (a malformed descriptor chain, an
//! unsupported register write, an access to nothing): the first [`LogLimit::limit`] events of
//! a kind are logged, the next one logs a single "further … are not logged" line, and the rest
//! are only counted. A guest that loops on a bad request therefore cannot fill the node's
//! console or disk with our warnings. Shared by the devices here and the vmm's own (vCPU exits
//! to nothing, the ACPI power and pvpanic ports).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// `warn!` through the `WARNINGS` limiter of the calling module.
macro_rules! guest_warn {
    ($($arg:tt)*) => {
        WARNINGS.log(log::Level::Warn, format_args!($($arg)*))
    };
}
pub(crate) use guest_warn;

/// Lines of one kind logged before going quiet, for every kind the guest can repeat.
pub const GUEST_LOG_LIMIT: u64 = 32;

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log its line.
    Log,
    /// The first event past the limit: log the "further … not logged" line instead.
    LastLine,
    /// Count it only.
    Quiet,
}

/// Counts the events of one kind and says which may be logged. Lock-free; a `static` or a
/// field shared between vCPU threads.
#[derive(Debug)]
pub struct LogLimit {
    count: AtomicU64,
    limit: u64,
    quiet_level: log::Level,
    quiet_line: &'static str,
}

impl LogLimit {
    /// A limiter logging `limit` events, then `quiet_line` at `quiet_level`.
    pub const fn new(limit: u64, quiet_level: log::Level, quiet_line: &'static str) -> Self {
        LogLimit {
            count: AtomicU64::new(0),
            limit,
            quiet_level,
            quiet_line,
        }
    }

    /// Counts one event and says what to do with it.
    pub fn admit(&self) -> Admit {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        match n.cmp(&self.limit) {
            std::cmp::Ordering::Less => Admit::Log,
            std::cmp::Ordering::Equal => Admit::LastLine,
            std::cmp::Ordering::Greater => Admit::Quiet,
        }
    }

    /// Counts one event and logs `what` at `level`, or the quiet line, or nothing.
    pub fn log(&self, level: log::Level, what: fmt::Arguments<'_>) {
        match self.admit() {
            Admit::Log => log::log!(level, "{what}"),
            Admit::LastLine => log::log!(self.quiet_level, "{}", self.quiet_line),
            Admit::Quiet => {}
        }
    }

    /// Events counted so far, logged or not.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The number of events logged before going quiet.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_ones_then_one_line_then_counts() {
        let l = LogLimit::new(3, log::Level::Warn, "x: further ones are not logged");
        let got: Vec<Admit> = (0..6).map(|_| l.admit()).collect();
        assert_eq!(
            got,
            [
                Admit::Log,
                Admit::Log,
                Admit::Log,
                Admit::LastLine,
                Admit::Quiet,
                Admit::Quiet
            ]
        );
        assert_eq!(l.count(), 6);
    }

    #[test]
    fn shared_between_threads_logs_exactly_the_limit() {
        static L: LogLimit = LogLimit::new(GUEST_LOG_LIMIT, log::Level::Warn, "t");
        let logged = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if L.admit() == Admit::Log {
                            logged.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(logged.load(Ordering::Relaxed), GUEST_LOG_LIMIT);
        assert_eq!(L.count(), 400);
    }
}

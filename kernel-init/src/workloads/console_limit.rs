//! The cap on a workload's console relay: a guest printing without pause cannot flood the
//! node's console (and whatever reads it) or keep `init`'s relay threads busy. Pure: time is
//! passed in, so the decisions are unit-tested.
//!
//! At most [`LINES_PER_SECOND`] lines of one workload are printed per one-second window; the
//! lines beyond are counted and dropped, and the first line printed after them is preceded by
//! one `… <n> lines dropped` line (also printed when the console ends while lines were
//! being dropped).

use std::time::{Duration, Instant};

/// Console lines of one workload printed per second, at most.
pub const LINES_PER_SECOND: u32 = 100;

const WINDOW: Duration = Duration::from_secs(1);

/// The per-workload line limiter.
#[derive(Debug)]
pub struct LineLimit {
    per_window: u32,
    window_start: Option<Instant>,
    in_window: u32,
    dropped: u64,
}

/// What to print for one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Print the line, after the notice when lines were dropped before it.
    Print {
        /// The `… <n> lines dropped` line to print first, if any.
        notice: Option<String>,
    },
    /// Drop it (counted).
    Drop,
}

impl LineLimit {
    /// A limiter printing `per_window` lines per second.
    pub fn new(per_window: u32) -> Self {
        LineLimit {
            per_window,
            window_start: None,
            in_window: 0,
            dropped: 0,
        }
    }

    /// Decides for one line that arrived at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= self.per_window {
            self.dropped = self.dropped.saturating_add(1);
            return Admit::Drop;
        }
        self.in_window += 1;
        Admit::Print {
            notice: self.take_notice(),
        }
    }

    /// The notice still owed when the console ends.
    pub fn finish(&mut self) -> Option<String> {
        self.take_notice()
    }

    fn take_notice(&mut self) -> Option<String> {
        match std::mem::take(&mut self.dropped) {
            0 => None,
            1 => Some("… 1 line dropped".to_owned()),
            n => Some(format!("… {n} lines dropped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(notice: Option<&str>) -> Admit {
        Admit::Print {
            notice: notice.map(str::to_owned),
        }
    }

    #[test]
    fn a_burst_is_cut_at_the_limit_and_the_count_printed_when_it_resumes() {
        let t0 = Instant::now();
        let mut l = LineLimit::new(3);
        let first: Vec<Admit> = (0..10).map(|_| l.admit(t0)).collect();
        assert_eq!(first[..3], [print(None), print(None), print(None)]);
        assert!(first[3..].iter().all(|a| *a == Admit::Drop));
        // Still inside the same second.
        assert_eq!(l.admit(t0 + Duration::from_millis(999)), Admit::Drop);
        // The next second: one notice for the 8 dropped, then normal again.
        let t1 = t0 + WINDOW;
        assert_eq!(l.admit(t1), print(Some("… 8 lines dropped")));
        assert_eq!(l.admit(t1), print(None));
    }

    #[test]
    fn a_quiet_guest_is_never_limited() {
        let t0 = Instant::now();
        let mut l = LineLimit::new(LINES_PER_SECOND);
        for i in 0..1000u64 {
            let at = t0 + Duration::from_millis(20 * i);
            assert_eq!(l.admit(at), print(None), "line {i}");
        }
        assert_eq!(l.finish(), None);
    }

    #[test]
    fn lines_dropped_at_the_end_are_still_counted() {
        let t0 = Instant::now();
        let mut l = LineLimit::new(1);
        assert_eq!(l.admit(t0), print(None));
        assert_eq!(l.admit(t0), Admit::Drop);
        assert_eq!(l.finish().as_deref(), Some("… 1 line dropped"));
        assert_eq!(l.finish(), None);
    }
}

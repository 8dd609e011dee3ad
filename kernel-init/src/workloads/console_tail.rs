//! The last lines of a contract workload's console, kept on the node for its owner: the
//! supervisor hands them to the grid's outbox when the VM ends, which seals them to the
//! contract's owner in the status report (`trust::grid::sealed`). Baked workloads have no owner
//! and keep no tail.
//!
//! Every line of the guest console is kept, also the ones the console rate limit
//! ([`super::console_limit`]) left off the node's console: the last lines before a crash are
//! the ones the owner needs.

use std::collections::VecDeque;
use std::sync::Mutex;

use trust::grid::sealed::{bounded_tail, MAX_TAIL_BYTES, MAX_TAIL_LINES};

/// A ring of the last [`MAX_TAIL_LINES`] console lines, each cut to [`MAX_TAIL_BYTES`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TailRing {
    lines: VecDeque<String>,
}

impl TailRing {
    /// Keeps `line`, dropping the oldest beyond [`MAX_TAIL_LINES`].
    pub fn push(&mut self, line: &str) {
        if self.lines.len() == MAX_TAIL_LINES {
            self.lines.pop_front();
        }
        let mut end = line.len().min(MAX_TAIL_BYTES);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        self.lines.push_back(line[..end].to_owned());
    }

    /// The kept lines as a tail within the sealing bounds (the newest that fit).
    pub fn text(&self) -> String {
        let lines: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        bounded_tail(&lines)
    }
}

/// A [`TailRing`] shared by a workload's console relay and its supervisor's reports.
#[derive(Debug, Default)]
pub struct SharedTail(Mutex<TailRing>);

impl SharedTail {
    /// Keeps one console line.
    pub fn push(&self, line: &str) {
        if let Ok(mut ring) = self.0.lock() {
            ring.push(line);
        }
    }

    /// The tail now (empty if the lock was poisoned: a tail is never worth a panic).
    pub fn text(&self) -> String {
        self.0.lock().map(|ring| ring.text()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines() {
        let mut ring = TailRing::default();
        assert_eq!(ring.text(), "");
        for i in 0..25 {
            ring.push(&format!("hello: counter={i}"));
        }
        let text = ring.text();
        assert_eq!(text.lines().count(), MAX_TAIL_LINES);
        assert!(text.starts_with("hello: counter=5\n"));
        assert!(text.ends_with("hello: counter=24"));
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_and_cleans_control_characters() {
        let mut ring = TailRing::default();
        ring.push(&"é".repeat(MAX_TAIL_BYTES));
        assert!(ring.lines[0].len() <= MAX_TAIL_BYTES);
        for _ in 0..3 {
            ring.push(&"x".repeat(1000));
        }
        ring.push("\x1b[31mred");
        let text = ring.text();
        assert!(text.len() <= MAX_TAIL_BYTES);
        assert!(text.ends_with("\u{fffd}[31mred"));
        trust::grid::sealed::check_tail(&text).expect("sealable");
    }

    #[test]
    fn a_shared_tail_is_what_was_pushed() {
        let shared = SharedTail::default();
        shared.push("one");
        shared.push("two");
        assert_eq!(shared.text(), "one\ntwo");
    }
}

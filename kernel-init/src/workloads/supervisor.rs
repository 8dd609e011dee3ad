//! Supervising one workload: start its VM, report each exit, restart failures with exponential
//! backoff, give up on a crash loop.
//!
//! The decisions are a pure state machine ([`Restarts`]); [`supervise`] is the thread around it.

use std::time::{Duration, Instant};

use trust::RestartPolicy;

use super::vm::{RunningVm, VmPlan};

/// The first restart delay; each further failure doubles it.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A run at least this long ends a crash loop: the next failure starts over at attempt 1.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Failed attempts in a row after which the node gives up.
pub const MAX_ATTEMPTS: u32 = 5;

/// What to do after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The workload is done (exit 0, or a failure with restart = never).
    Done,
    /// Start attempt `attempt` after `delay`.
    Restart {
        /// How long to wait.
        delay: Duration,
        /// The number of the next attempt.
        attempt: u32,
    },
    /// Too many failures in a row.
    GiveUp {
        /// How many attempts failed.
        attempts: u32,
    },
}

/// The restart state of one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarts {
    policy: RestartPolicy,
    /// The attempt running now, counted from 1 within the current crash loop.
    attempt: u32,
}

impl Restarts {
    /// Before the first attempt.
    pub fn new(policy: RestartPolicy) -> Restarts {
        Restarts { policy, attempt: 1 }
    }

    /// The number of the attempt that runs now.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Decides after a run that ended with `code` after `ran_for`.
    pub fn on_exit(&mut self, code: i32, ran_for: Duration) -> Decision {
        if code == 0 || self.policy == RestartPolicy::Never {
            return Decision::Done;
        }
        if ran_for >= HEALTHY_RUN {
            self.attempt = 1;
        }
        if self.attempt >= MAX_ATTEMPTS {
            return Decision::GiveUp {
                attempts: self.attempt,
            };
        }
        let delay = delay_after(self.attempt);
        self.attempt += 1;
        Decision::Restart {
            delay,
            attempt: self.attempt,
        }
    }
}

/// The delay after failed attempt `attempt` (1, 2, 4, ... seconds, at most [`MAX_DELAY`]).
pub fn delay_after(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1u32 << doublings).min(MAX_DELAY)
}

/// Runs the workload until it is done or given up; every step is one console line.
pub fn supervise(plan: &VmPlan, policy: RestartPolicy) {
    let name = &plan.name;
    let mut restarts = Restarts::new(policy);
    loop {
        let attempt = restarts.attempt();
        let started = Instant::now();
        let exit = match RunningVm::start(plan) {
            Ok(vm) => {
                crate::log::interface_line(&format!(
                    "nullos: workload {name} started pid={} attempt={attempt}",
                    vm.pid
                ));
                vm.wait()
            }
            Err(e) => {
                crate::error!("workload {name}: start {}: {e}", super::vm::VMM);
                super::vm::VmExit {
                    guest_code: None,
                    vmm_status: 1,
                }
            }
        };
        let ran_for = started.elapsed();
        crate::log::interface_line(&format!(
            "nullos: workload {name} exited code={}",
            exit.describe()
        ));
        match restarts.on_exit(exit.code(), ran_for) {
            Decision::Done => return,
            Decision::GiveUp { attempts } => {
                crate::log::interface_line(&format!(
                    "nullos: workload {name} gave up after {attempts} attempts"
                ));
                return;
            }
            Decision::Restart { delay, attempt } => {
                crate::log::interface_line(&format!(
                    "nullos: workload {name} restarting in {} ms (attempt {attempt})",
                    delay.as_millis()
                ));
                std::thread::sleep(delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_secs(2);

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: Vec<u64> = (1..=8).map(|a| delay_after(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_crash_loop_gives_up_after_five_attempts() {
        let mut r = Restarts::new(RestartPolicy::OnFailure);
        let mut decisions = Vec::new();
        for _ in 0..5 {
            decisions.push(r.on_exit(1, SHORT));
        }
        let secs = Duration::from_secs;
        assert_eq!(
            decisions,
            [
                Decision::Restart {
                    delay: secs(1),
                    attempt: 2
                },
                Decision::Restart {
                    delay: secs(2),
                    attempt: 3
                },
                Decision::Restart {
                    delay: secs(4),
                    attempt: 4
                },
                Decision::Restart {
                    delay: secs(8),
                    attempt: 5
                },
                Decision::GiveUp { attempts: 5 },
            ]
        );
    }

    #[test]
    fn success_ends_and_never_means_never() {
        let mut r = Restarts::new(RestartPolicy::OnFailure);
        assert_eq!(r.on_exit(0, SHORT), Decision::Done);
        let mut r = Restarts::new(RestartPolicy::OnFailure);
        assert!(matches!(r.on_exit(3, SHORT), Decision::Restart { .. }));
        assert_eq!(r.on_exit(0, SHORT), Decision::Done);
        let mut r = Restarts::new(RestartPolicy::Never);
        assert_eq!(r.on_exit(1, SHORT), Decision::Done);
    }

    #[test]
    fn a_healthy_run_resets_the_backoff() {
        let mut r = Restarts::new(RestartPolicy::OnFailure);
        for _ in 0..3 {
            r.on_exit(1, SHORT);
        }
        assert_eq!(r.attempt(), 4);
        assert_eq!(
            r.on_exit(1, HEALTHY_RUN),
            Decision::Restart {
                delay: FIRST_DELAY,
                attempt: 2
            }
        );
    }
}

//! Supervising one workload: start its VM, report each exit, restart failures with exponential
//! backoff, give up on a crash loop.
//!
//! The decisions are a pure state machine ([`Restarts`]); [`supervise`] is the thread around it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trust::RestartPolicy;

use super::console_tail::SharedTail;
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

/// A step of a supervised workload, for whoever reports on it (the grid's status reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Attempt `attempt` runs.
    Running {
        /// From 1.
        attempt: u32,
    },
    /// The VM ended with `code`; nothing more will run (done, given up, or stopped).
    Exited {
        /// The exit code that decides restarts.
        code: i32,
        /// Restarts so far.
        restarts: u32,
    },
    /// The VM ended with `code` and attempt `attempt` follows after the backoff.
    Restarting {
        /// The exit code.
        code: i32,
        /// The next attempt.
        attempt: u32,
    },
}

/// How a workload's supervisor is stopped from outside (a cancelled or replaced contract) and
/// whom it tells about each step.
pub struct Control {
    stopped: AtomicBool,
    vmm: Mutex<Option<u32>>,
    on_event: Box<dyn Fn(Event) + Send + Sync>,
    tail: Option<Arc<SharedTail>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// A control whose events go to `on_event`.
    pub fn new(on_event: impl Fn(Event) + Send + Sync + 'static) -> Control {
        Control {
            stopped: AtomicBool::new(false),
            vmm: Mutex::new(None),
            on_event: Box::new(on_event),
            tail: None,
        }
    }

    /// Also keeps the console's last lines in `tail` (a contract workload's, for its owner).
    pub fn with_tail(mut self, tail: Arc<SharedTail>) -> Control {
        self.tail = Some(tail);
        self
    }

    /// Stops the workload: no further attempt starts, and the running VM's jail is killed
    /// (SIGKILL to its waiting parent; the vmm dies with it by its parent-death signal).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let pid = self.vmm.lock().map(|guard| *guard).unwrap_or(None);
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn set_vmm(&self, pid: Option<u32>) {
        if let Ok(mut guard) = self.vmm.lock() {
            *guard = pid;
        }
    }

    /// Sleeps `delay`, waking early when stopped.
    fn sleep(&self, delay: Duration) {
        let until = Instant::now() + delay;
        while !self.is_stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// Runs the workload until it is done or given up; every step is one console line.
pub fn supervise(plan: &VmPlan, policy: RestartPolicy) {
    supervise_controlled(plan, policy, &Control::new(|_| {}));
}

/// [`supervise`], stoppable, telling `control` each step. A workload of a contract names it
/// at the end of each line (` contract=<id>`).
pub fn supervise_controlled(plan: &VmPlan, policy: RestartPolicy, control: &Control) {
    let name = &plan.name;
    let contract = plan
        .contract
        .as_deref()
        .map(|c| format!(" contract={c}"))
        .unwrap_or_default();
    let mut restarts = Restarts::new(policy);
    loop {
        if control.is_stopped() {
            return;
        }
        let attempt = restarts.attempt();
        let started = Instant::now();
        let exit = match RunningVm::start(plan, control.tail.clone()) {
            Ok(vm) => {
                control.set_vmm(Some(vm.pid));
                crate::log::interface_line(&format!(
                    "nullos: workload {name} started pid={} attempt={attempt}{contract}",
                    vm.pid
                ));
                (control.on_event)(Event::Running { attempt });
                if control.is_stopped() {
                    control.stop();
                }
                let exit = vm.wait();
                control.set_vmm(None);
                exit
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
            "nullos: workload {name} exited code={}{contract}",
            exit.describe()
        ));
        let code = exit.code();
        let done = |restarts: u32| (control.on_event)(Event::Exited { code, restarts });
        if control.is_stopped() {
            done(attempt.saturating_sub(1));
            return;
        }
        match restarts.on_exit(code, ran_for) {
            Decision::Done => {
                done(attempt.saturating_sub(1));
                return;
            }
            Decision::GiveUp { attempts } => {
                crate::log::interface_line(&format!(
                    "nullos: workload {name} gave up after {attempts} attempts{contract}"
                ));
                done(attempts.saturating_sub(1));
                return;
            }
            Decision::Restart { delay, attempt } => {
                crate::log::interface_line(&format!(
                    "nullos: workload {name} restarting in {} ms (attempt {attempt}){contract}",
                    delay.as_millis()
                ));
                (control.on_event)(Event::Restarting { code, attempt });
                control.sleep(delay);
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

//! Least privilege once the VM is built: a seccomp allow-list (BPF compiled by `seccompiler`)
//! with `no_new_privs` per thread, each thread with the calls its own work needs
//! ([`ThreadRole`]). The main thread compiles the three filters after every file, KVM object and
//! device is set up ([`ThreadFilters::compile`]); each vCPU thread and the network thread install
//! theirs as their first act, before the guest runs; the main thread installs its own once they
//! all have (a filter is inherited by the threads created after it, so the main thread's, which
//! allows no new thread, comes last).
//!
//! Every thread may use what any thread needs: reads and writes on already open descriptors,
//! memory management, futexes, signals to its own process (kicking vCPUs, `abort`), time and
//! exit. Beyond that, a vCPU thread has `KVM_RUN` and the two read-only vCPU ioctls of the halt
//! watchdog, and the block devices' positioned reads and writes and `fsync`; the network thread
//! has the user-mode network's outbound sockets (`socket` for `AF_INET`/`AF_INET6` stream and
//! datagram only, `connect`, `sendto`, `recvfrom`, ..., `poll`). No thread may open a path,
//! `exec`, `bind`/`listen`/`accept`, `clone` (every thread exists before any filter) or signal
//! another process: a compromised VMM cannot open files, run programs, take inbound
//! connections, create namespaces or touch the node's other processes, and a guest that takes
//! over a vCPU thread cannot open a socket.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What to do with a system call outside the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// Kill the VMM (SIGSYS); the default.
    Kill,
    /// Allow it but have the kernel log it (audit): for finding a missing entry.
    Log,
    /// No filter (debugging only).
    Off,
}

impl std::str::FromStr for SeccompMode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "kill" => Ok(SeccompMode::Kill),
            "log" => Ok(SeccompMode::Log),
            "off" => Ok(SeccompMode::Off),
            _ => Err(()),
        }
    }
}

/// Errors building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rules could not be compiled to BPF.
    #[error("compile the seccomp filter")]
    Compile(#[source] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("install the seccomp filter")]
    Install(#[source] seccompiler::Error),
}

const KVMIO: u64 = 0xae;

/// `_IO(type, nr)`.
const fn io(ty: u64, nr: u64) -> u64 {
    (ty << 8) | nr
}

/// `_IOR(type, nr, size)`.
const fn ior(ty: u64, nr: u64, size: u64) -> u64 {
    (2 << 30) | (size << 16) | (ty << 8) | nr
}

/// `KVM_RUN`.
pub const KVM_RUN: u64 = io(KVMIO, 0x80);
/// `KVM_GET_REGS` (the halt watchdog reads RFLAGS.IF).
pub const KVM_GET_REGS: u64 = ior(KVMIO, 0x81, size_of::<kvm_bindings::kvm_regs>() as u64);
/// `KVM_GET_MP_STATE` (the halt watchdog).
pub const KVM_GET_MP_STATE: u64 = ior(KVMIO, 0x98, size_of::<kvm_bindings::kvm_mp_state>() as u64);
/// `FIONBIO` (std's `set_nonblocking` on sockets).
pub const FIONBIO: u64 = 0x5421;

/// Syscalls every thread of the VMM may make with any arguments: I/O on descriptors opened
/// during setup (console, eventfds; which descriptors a thread touches is its code's business),
/// memory, futexes, signals (`tgkill` is argument-filtered in [`tgkill_rules`]), time, exit.
const COMMON: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fcntl,
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // Futexes, signals, time, the end of a thread or of the process.
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// What only the vCPU threads do besides [`COMMON`]: the block devices' I/O, which runs in the
/// vCPU thread that writes `QueueNotify` (reads, writes and flushes on the disk descriptors).
/// Their `ioctl`s (`KVM_RUN` and the halt watchdog's two reads) are in [`vcpu_ioctl_rules`].
const VCPU_ONLY: &[libc::c_long] = &[
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
];

/// What only the network thread does besides [`COMMON`]: the user-mode network's outbound
/// sockets (no bind/listen/accept; `socket` itself is argument-filtered in [`socket_rules`])
/// and `poll` on them. `ioctl` only as `FIONBIO`.
const NET_ONLY: &[libc::c_long] = &[
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_connect,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
];

/// The VMM's threads, each with a filter of its own ([`ThreadRole::allowed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRole {
    /// The main thread once every other thread runs: waits for the guest's end, kicks vCPUs
    /// (the halt watchdog), flushes the console, tears down. No `ioctl`, no sockets, no disk
    /// I/O, no new threads.
    Main,
    /// A vCPU thread: `KVM_RUN`, the devices' register accesses, block I/O. No sockets.
    Vcpu,
    /// The network thread: the user-mode network's host sockets. No `KVM_RUN`, no disk I/O.
    Net,
}

impl ThreadRole {
    /// The system calls this thread may make with any arguments.
    pub fn allowed(self) -> Vec<libc::c_long> {
        let only: &[libc::c_long] = match self {
            ThreadRole::Main => &[],
            ThreadRole::Vcpu => VCPU_ONLY,
            ThreadRole::Net => NET_ONLY,
        };
        COMMON.iter().chain(only).copied().collect()
    }
}

/// `ioctl(fd, request, ...)` with one of `requests` only.
fn ioctl_rules(requests: &[u64]) -> Result<Vec<SeccompRule>, Error> {
    requests
        .iter()
        .map(|&request| rule(vec![condition(1, SeccompCmpOp::Eq, request)?]))
        .collect()
}

/// The socket type without its flag bits (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`): the kernel's
/// `SOCK_TYPE_MASK`.
pub const SOCK_TYPE_MASK: u64 = 0xf;

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, Error> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(Error::Compile)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, Error> {
    SeccompRule::new(conditions).map_err(Error::Compile)
}

/// `socket(domain, type, protocol)`: only IPv4 or IPv6, stream or datagram (the user-mode
/// network's outbound TCP, UDP and DNS). Netlink, packet, unix and raw sockets are refused.
fn socket_rules() -> Result<Vec<SeccompRule>, Error> {
    let mut rules = Vec::new();
    for domain in [libc::AF_INET, libc::AF_INET6] {
        for ty in [libc::SOCK_STREAM, libc::SOCK_DGRAM] {
            rules.push(rule(vec![
                condition(0, SeccompCmpOp::Eq, domain.unsigned_abs().into())?,
                condition(
                    1,
                    SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK),
                    ty.unsigned_abs().into(),
                )?,
            ])?);
        }
    }
    Ok(rules)
}

/// `tgkill(tgid, tid, sig)`: only to a thread of this process (kicking vCPU threads, `abort`).
/// `kill`, `tkill` and the `sigqueueinfo` calls are not allowed at all.
fn tgkill_rules(pid: u32) -> Result<Vec<SeccompRule>, Error> {
    Ok(vec![rule(vec![condition(
        0,
        SeccompCmpOp::Eq,
        u64::from(pid),
    )?])?])
}

/// Compiles the allow-list of the thread `role` for `mode` and the process `pid` (the `tgkill`
/// rule names it; build it in the process that installs it). `None` for [`SeccompMode::Off`].
pub fn filter(mode: SeccompMode, role: ThreadRole, pid: u32) -> Result<Option<BpfProgram>, Error> {
    let mismatch = match mode {
        SeccompMode::Kill => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Off => return Ok(None),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = role
        .allowed()
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    rules.insert(libc::SYS_tgkill, tgkill_rules(pid)?);
    match role {
        ThreadRole::Main => {}
        ThreadRole::Vcpu => {
            rules.insert(
                libc::SYS_ioctl,
                ioctl_rules(&[KVM_RUN, KVM_GET_REGS, KVM_GET_MP_STATE])?,
            );
        }
        ThreadRole::Net => {
            rules.insert(libc::SYS_ioctl, ioctl_rules(&[FIONBIO])?);
            rules.insert(libc::SYS_socket, socket_rules()?);
        }
    }
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(Error::Compile)?;
    BpfProgram::try_from(filter)
        .map(Some)
        .map_err(Error::Compile)
}

/// The three threads' filters, compiled by the main thread before it starts the others, so that
/// a thread's first act is to install its own (nothing to allocate or compile by then).
#[derive(Debug)]
pub struct ThreadFilters {
    main: Option<BpfProgram>,
    vcpu: Option<BpfProgram>,
    net: Option<BpfProgram>,
}

impl ThreadFilters {
    /// Compiles the filters for `mode` in this process. Also keeps glibc's malloc in its main
    /// (brk) arena: a thread's own arena is sized from the CPU count (read by opening
    /// `/sys/devices/system/cpu/online`), and freeing into one may shrink its heap, which reads
    /// `/proc/sys/vm/overcommit_memory` (seen as a SIGSYS at teardown). With one arena neither
    /// happens, so no thread ever needs `openat`. The VMM's threads allocate little (network
    /// frames), so sharing one arena costs nothing measurable.
    pub fn compile(mode: SeccompMode) -> Result<ThreadFilters, Error> {
        // SAFETY: mallopt only changes malloc's tunables; M_ARENA_MAX = 1 is valid at any time
        // and, called before the VMM starts its threads, no other arena exists yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        let pid = std::process::id();
        Ok(ThreadFilters {
            main: filter(mode, ThreadRole::Main, pid)?,
            vcpu: filter(mode, ThreadRole::Vcpu, pid)?,
            net: filter(mode, ThreadRole::Net, pid)?,
        })
    }

    /// Installs the filter of `role` on the calling thread (and sets `no_new_privs`). Call it
    /// once per thread, in a thread that has none yet (threads inherit their creator's filter,
    /// so the main thread installs its own after starting the others).
    pub fn install(&self, role: ThreadRole) -> Result<(), Error> {
        let program = match role {
            ThreadRole::Main => &self.main,
            ThreadRole::Vcpu => &self.vcpu,
            ThreadRole::Net => &self.net,
        };
        match program {
            Some(program) => seccompiler::apply_filter(program).map_err(Error::Install),
            None => Ok(()),
        }
    }
}

/// How the VMM's threads start under their filters: each new thread installs its own and
/// reports ([`StartGate::enter`]); the main thread collects the reports, installs its own filter
/// and only then lets them run ([`StartGate::open`]), so no thread runs anything of the
/// guest's before every thread is filtered.
#[derive(Debug, Clone)]
pub struct StartGate {
    filters: Arc<ThreadFilters>,
    ready: Sender<Result<(), Error>>,
    /// `None` until the main thread decides; then whether the threads may run.
    go: Arc<(Mutex<Option<bool>>, Condvar)>,
}

impl StartGate {
    /// A gate for threads that install `filters`, and the receiver of their reports.
    pub fn new(filters: Arc<ThreadFilters>) -> (StartGate, Receiver<Result<(), Error>>) {
        let (ready, reports) = mpsc::channel();
        let gate = StartGate {
            filters,
            ready,
            go: Arc::default(),
        };
        (gate, reports)
    }

    /// The first act of a new thread of `role`: installs its filter, reports, and waits for the
    /// main thread. False if the thread must return at once (its filter or another's failed).
    pub fn enter(&self, role: ThreadRole) -> bool {
        let installed = self.filters.install(role);
        let ok = installed.is_ok();
        // The receiver outlives the wait below (the main thread holds it until it decides).
        let _ = self.ready.send(installed);
        let (lock, decided) = &*self.go;
        let mut go = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while go.is_none() {
            go = decided.wait(go).unwrap_or_else(PoisonError::into_inner);
        }
        ok && *go == Some(true)
    }

    /// In the main thread, once it has started `started` threads through this gate: waits for
    /// each one's report, installs the main thread's filter if they all succeeded, and lets
    /// them run, or, on the first failure, tells them to return and gives the error.
    pub fn open(&self, reports: &Receiver<Result<(), Error>>, started: usize) -> Result<(), Error> {
        let mut result = Ok(());
        for _ in 0..started {
            match reports.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                // Every thread reports before it waits; a missing report ends the wait.
                Err(mpsc::RecvError) => break,
            }
        }
        if result.is_ok() {
            result = self.filters.install(ThreadRole::Main);
        }
        self.release(result.is_ok());
        result
    }

    /// Lets the threads waiting in [`StartGate::enter`] run (`true`) or return (`false`).
    pub fn release(&self, run: bool) {
        let (lock, decided) = &*self.go;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = Some(run);
        decided.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // From <linux/kvm.h> on x86_64.
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_MP_STATE, 0x8004_ae98);
    }

    #[test]
    fn off_compiles_to_nothing_and_the_others_compile() {
        for role in [ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::Net] {
            assert!(filter(SeccompMode::Off, role, 1).unwrap().is_none());
            assert!(!filter(SeccompMode::Kill, role, 1)
                .unwrap()
                .unwrap()
                .is_empty());
            assert!(!filter(SeccompMode::Log, role, 1)
                .unwrap()
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn each_role_has_only_its_own_calls() {
        let main = ThreadRole::Main.allowed();
        let vcpu = ThreadRole::Vcpu.allowed();
        let net = ThreadRole::Net.allowed();
        for nr in [libc::SYS_connect, libc::SYS_sendto, libc::SYS_poll] {
            assert!(net.contains(&nr) && !vcpu.contains(&nr) && !main.contains(&nr));
        }
        for nr in [libc::SYS_pwrite64, libc::SYS_fsync] {
            assert!(vcpu.contains(&nr) && !net.contains(&nr) && !main.contains(&nr));
        }
        for nr in [
            libc::SYS_openat,
            libc::SYS_open,
            libc::SYS_execve,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept4,
            libc::SYS_kill,
            libc::SYS_seccomp,
            libc::SYS_unshare,
        ] {
            assert!(!main.contains(&nr) && !vcpu.contains(&nr) && !net.contains(&nr));
        }
    }

    /// Runs `f` in a forked child with the filter of `role` installed; returns the child's wait
    /// status.
    fn in_filtered_child(role: ThreadRole, f: fn()) -> libc::c_int {
        // SAFETY: the child compiles and installs the filter (glibc's malloc is fork-safe: its
        // arenas are locked around fork and reset in the child), runs `f` (raw syscalls) and
        // exits without unwinding; the parent waits for it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let installed = ThreadFilters::compile(SeccompMode::Kill)
                .is_ok_and(|filters| filters.install(role).is_ok());
            if !installed {
                // SAFETY: terminating the forked child without running the parent's handlers.
                unsafe { libc::_exit(90) };
            }
            f();
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    /// The child exited with `code`.
    fn exited(status: libc::c_int, code: libc::c_int) -> bool {
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == code
    }

    /// The child was killed by the filter.
    fn killed(status: libc::c_int) -> bool {
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS
    }

    /// `_exit(0)` if `r` is not an error, else `_exit(errno)`: the child's status says which.
    fn exit_with(r: libc::c_long) -> ! {
        let code = if r >= 0 {
            0
        } else {
            // SAFETY: errno is thread-local and readable at any time.
            unsafe { *libc::__errno_location() }
        };
        // SAFETY: terminating the forked child without running the parent's handlers.
        unsafe { libc::_exit(code) }
    }

    const ROLES: [ThreadRole; 3] = [ThreadRole::Main, ThreadRole::Vcpu, ThreadRole::Net];

    #[test]
    fn common_calls_pass_and_opening_or_executing_kills_every_thread() {
        for role in ROLES {
            let ok = in_filtered_child(role, || {
                // SAFETY: getpid and a zero-length write to stdout have no preconditions.
                unsafe {
                    libc::getpid();
                    libc::write(1, std::ptr::null(), 0);
                }
            });
            assert!(exited(ok, 0), "{role:?}: status {ok:#x}");

            let open = in_filtered_child(role, || {
                // SAFETY: a NUL-terminated path; the call is expected to never return.
                unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
            });
            assert!(killed(open), "{role:?}: status {open:#x}");

            let exec = in_filtered_child(role, || {
                let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
                // SAFETY: valid NUL-terminated argv and an empty environment.
                unsafe { libc::execve(argv[0], argv.as_ptr(), [std::ptr::null()].as_ptr()) };
            });
            assert!(killed(exec), "{role:?}: status {exec:#x}");

            let bad_ioctl = in_filtered_child(role, || {
                // SAFETY: TIOCGWINSZ on stdin with a valid buffer; expected to be killed first.
                unsafe {
                    let mut ws: libc::winsize = std::mem::zeroed();
                    libc::ioctl(0, libc::TIOCGWINSZ, &mut ws);
                }
            });
            assert!(killed(bad_ioctl), "{role:?}: status {bad_ioctl:#x}");
        }
    }

    #[test]
    fn only_the_network_thread_opens_sockets_and_only_inet_stream_and_datagram() {
        let inet_stream = || {
            // SAFETY: creating a socket has no memory preconditions.
            exit_with(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }.into())
        };
        let status = in_filtered_child(ThreadRole::Net, inet_stream);
        assert!(exited(status, 0), "status {status:#x}");
        // The flag bits are masked off before the type is compared.
        let status = in_filtered_child(ThreadRole::Net, || {
            let ty = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
            // SAFETY: creating a socket has no memory preconditions.
            exit_with(unsafe { libc::socket(libc::AF_INET6, ty, 0) }.into())
        });
        assert!(exited(status, 0), "status {status:#x}");
        // A vCPU thread (the guest's side) and the main thread cannot open even that one.
        for role in [ThreadRole::Vcpu, ThreadRole::Main] {
            let status = in_filtered_child(role, inet_stream);
            assert!(killed(status), "{role:?}: status {status:#x}");
        }
        for denied in [
            || {
                // SAFETY: as above; expected to be killed first.
                unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
            },
            || {
                // SAFETY: as above.
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            },
            || {
                // SAFETY: as above.
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            },
            || {
                // SAFETY: as above.
                unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            },
        ] {
            let status = in_filtered_child(ThreadRole::Net, denied);
            assert!(killed(status), "status {status:#x}");
        }
    }

    #[test]
    fn a_vcpu_thread_cannot_connect_or_poll_and_the_network_thread_cannot_run_a_vcpu() {
        // What only the network thread needs, tried from a vCPU thread (on an invalid
        // descriptor: the filter answers before the kernel looks at it).
        for net_only in [
            || {
                // SAFETY: a null address of length 0; expected to be killed first.
                unsafe { libc::connect(-1, std::ptr::null(), 0) };
            },
            || {
                // SAFETY: a null buffer of length 0; expected to be killed first.
                unsafe { libc::sendto(-1, std::ptr::null(), 0, 0, std::ptr::null(), 0) };
            },
            || {
                // SAFETY: an empty poll set; expected to be killed first.
                unsafe { libc::poll(std::ptr::null_mut(), 0, 0) };
            },
            || {
                // SAFETY: FIONBIO on an invalid descriptor; expected to be killed first.
                unsafe { libc::ioctl(-1, FIONBIO, &mut 1) };
            },
        ] {
            let status = in_filtered_child(ThreadRole::Vcpu, net_only);
            assert!(killed(status), "status {status:#x}");
        }
        // The same calls pass the network thread's filter (and fail in the kernel: EBADF).
        let status = in_filtered_child(ThreadRole::Net, || {
            // SAFETY: as above.
            exit_with(unsafe { libc::connect(-1, std::ptr::null(), 0) }.into())
        });
        assert!(exited(status, libc::EBADF), "status {status:#x}");
        // What only a vCPU thread needs, from the network thread and the main thread.
        for role in [ThreadRole::Net, ThreadRole::Main] {
            let run = in_filtered_child(role, || {
                // SAFETY: KVM_RUN on an invalid descriptor; expected to be killed first.
                unsafe { libc::ioctl(-1, KVM_RUN, 0) };
            });
            assert!(killed(run), "{role:?}: status {run:#x}");
            let write_disk = in_filtered_child(role, || {
                // SAFETY: a null buffer of length 0; expected to be killed first.
                unsafe { libc::pwrite(-1, std::ptr::null(), 0, 0) };
            });
            assert!(killed(write_disk), "{role:?}: status {write_disk:#x}");
        }
        let status = in_filtered_child(ThreadRole::Vcpu, || {
            // SAFETY: as above; fails in the kernel with EBADF.
            exit_with(unsafe { libc::ioctl(-1, KVM_RUN, 0) }.into())
        });
        assert!(exited(status, libc::EBADF), "status {status:#x}");
    }

    #[test]
    fn no_thread_can_make_threads_processes_or_namespaces() {
        for role in ROLES {
            let thread = in_filtered_child(role, || {
                let flags =
                    libc::CLONE_VM | libc::CLONE_SIGHAND | libc::CLONE_THREAD | libc::CLONE_FS;
                // SAFETY: expected to be killed before the kernel sees the flags.
                unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
            });
            assert!(killed(thread), "{role:?}: status {thread:#x}");
            let clone3 = in_filtered_child(role, || {
                // SAFETY: expected to be killed before the kernel reads the (null) argument.
                unsafe { libc::syscall(libc::SYS_clone3, 0, 0) };
            });
            assert!(killed(clone3), "{role:?}: status {clone3:#x}");
            let unshare = in_filtered_child(role, || {
                // SAFETY: expected to be killed first.
                unsafe { libc::unshare(libc::CLONE_NEWUSER) };
            });
            assert!(killed(unshare), "{role:?}: status {unshare:#x}");
        }
    }

    #[test]
    fn signals_only_to_its_own_threads() {
        for role in ROLES {
            let own = in_filtered_child(role, || {
                // SAFETY: signal 0 only checks that the thread exists.
                exit_with(unsafe {
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), 0)
                })
            });
            assert!(exited(own, 0), "{role:?}: status {own:#x}");
            // Signal 0 to PID 1: harmless even if the filter failed to stop it.
            let other = in_filtered_child(role, || {
                // SAFETY: expected to be killed before the kernel looks for the process.
                unsafe { libc::syscall(libc::SYS_tgkill, 1, 1, 0) };
            });
            assert!(killed(other), "{role:?}: status {other:#x}");
            let init = in_filtered_child(role, || {
                // SAFETY: as above.
                unsafe { libc::kill(1, 0) };
            });
            assert!(killed(init), "{role:?}: status {init:#x}");
        }
    }
}

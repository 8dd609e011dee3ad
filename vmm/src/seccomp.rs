//! Least privilege once the VM is built: a seccomp allow-list (BPF compiled by `seccompiler`)
//! with `no_new_privs`, installed on the main thread after every file, KVM object and device is
//! set up and before the vCPU and network threads start, so every thread of the VMM runs under
//! it (filters are inherited by threads created afterwards).
//!
//! What stays allowed is what running a VM needs: `KVM_RUN` and the two read-only vCPU ioctls of
//! the halt watchdog, reads and writes on already open descriptors (console, disks, eventfds,
//! sockets), `fsync` for virtio-blk flush, memory management for the allocator, futexes, threads,
//! signals for kicking vCPUs, time, `poll`, and the socket calls of the user-mode network's
//! outbound connections (`socket`, `connect`, `sendto`, `recvfrom`, ...). No `open`, no `exec`,
//! no `bind`/`listen`/`accept`: a compromised VMM cannot open files, run programs or take
//! inbound connections.

use std::collections::BTreeMap;

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

/// Syscalls allowed with any arguments.
const ALLOWED: &[libc::c_long] = &[
    // I/O on descriptors opened during setup.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_eventfd2,
    // Outbound sockets of the user-mode network (no bind/listen/accept); `socket` itself is
    // argument-filtered (`socket_rules`).
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
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // Threads, futexes, signals, time.
    // `clone` and `tgkill` are argument-filtered (`clone_rules`, `tgkill_rules`); `clone3` passes
    // this filter and is refused with ENOSYS by the second one (`enosys_filter`).
    libc::SYS_futex,
    libc::SYS_clone3,
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

fn ioctl_rules() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    [KVM_RUN, KVM_GET_REGS, KVM_GET_MP_STATE, FIONBIO]
        .into_iter()
        .map(|request| {
            SeccompRule::new(vec![SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                request,
            )?])
        })
        .collect()
}

/// The socket type without its flag bits (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`): the kernel's
/// `SOCK_TYPE_MASK`.
pub const SOCK_TYPE_MASK: u64 = 0xf;

/// Every `CLONE_NEW*` flag of `clone` (namespaces): none may be set.
pub const CLONE_NEW_MASK: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64
    | CLONE_NEWTIME;
/// `CLONE_NEWTIME` (not in every libc release).
const CLONE_NEWTIME: u64 = 0x80;

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

/// `clone(flags, ...)`: threads only (`CLONE_THREAD` set) and no new namespace. The kernel reads
/// only the low 32 bits of `flags`, which is what a `Dword` condition compares.
fn clone_rules() -> Result<Vec<SeccompRule>, Error> {
    let thread = libc::CLONE_THREAD as u64;
    Ok(vec![rule(vec![
        condition(0, SeccompCmpOp::MaskedEq(thread), thread)?,
        condition(0, SeccompCmpOp::MaskedEq(CLONE_NEW_MASK), 0)?,
    ])?])
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

/// The VMM's filters for `mode` in the order they are installed, for the process `pid` (the
/// `tgkill` rule names it; build them in the process that installs them): the one that makes
/// `clone3` fail with ENOSYS so that glibc falls back to `clone`, whose flags a filter can read
/// (`clone3` passes them in memory), then the allow-list (which forbids installing any further
/// filter). Empty for [`SeccompMode::Off`].
///
/// Two filters because a filter has one action for its matches: the kernel runs both and takes
/// the most severe result, so `clone3` (allowed by the first) gets the second's errno, and
/// everything the first kills stays killed.
pub fn filters(mode: SeccompMode, pid: u32) -> Result<Vec<BpfProgram>, Error> {
    let Some(allow_list) = filter(mode, pid)? else {
        return Ok(Vec::new());
    };
    Ok(vec![enosys_filter()?, allow_list])
}

/// Everything allowed but `clone3`, which fails with ENOSYS.
fn enosys_filter() -> Result<BpfProgram, Error> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let errno = SeccompAction::Errno(libc::ENOSYS as u32);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, errno, TargetArch::x86_64)
        .map_err(Error::Compile)?;
    BpfProgram::try_from(filter).map_err(Error::Compile)
}

/// Compiles the VMM's allow-list for `mode` and the process `pid` (None for
/// [`SeccompMode::Off`]).
pub fn filter(mode: SeccompMode, pid: u32) -> Result<Option<BpfProgram>, Error> {
    let mismatch = match mode {
        SeccompMode::Kill => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Off => return Ok(None),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    rules.insert(libc::SYS_ioctl, ioctl_rules().map_err(Error::Compile)?);
    rules.insert(libc::SYS_socket, socket_rules()?);
    rules.insert(libc::SYS_clone, clone_rules()?);
    rules.insert(libc::SYS_tgkill, tgkill_rules(pid)?);
    // Thread names (std's thread builder sets them from the new thread).
    let set_name = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::PR_SET_NAME as u64,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(Error::Compile)?;
    rules.insert(libc::SYS_prctl, vec![set_name]);
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(Error::Compile)?;
    BpfProgram::try_from(filter)
        .map(Some)
        .map_err(Error::Compile)
}

/// Installs the filter on the calling thread (and sets `no_new_privs`).
///
/// Also keeps glibc's malloc in its main (brk) arena first: a thread's own arena is sized from
/// the CPU count (read by opening `/sys/devices/system/cpu/online`), and freeing into one may
/// shrink its heap, which reads `/proc/sys/vm/overcommit_memory` (seen as a SIGSYS at
/// teardown). With one arena neither happens, so no thread ever needs `openat`. The VMM's
/// threads allocate little (network frames), so sharing one arena costs nothing measurable.
pub fn install(mode: SeccompMode) -> Result<(), Error> {
    // SAFETY: mallopt only changes malloc's tunables; M_ARENA_MAX = 1 is valid at any time and,
    // called before the VMM starts its threads, no other arena exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    for program in filters(mode, std::process::id())? {
        seccompiler::apply_filter(&program).map_err(Error::Install)?;
    }
    Ok(())
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
        assert!(filter(SeccompMode::Off, 1).unwrap().is_none());
        assert!(filters(SeccompMode::Off, 1).unwrap().is_empty());
        assert!(!filter(SeccompMode::Kill, 1).unwrap().unwrap().is_empty());
        assert!(!filter(SeccompMode::Log, 1).unwrap().unwrap().is_empty());
        assert_eq!(filters(SeccompMode::Kill, 1).unwrap().len(), 2);
    }

    /// Runs `f` in a forked child with the filters installed; returns the child's wait status.
    fn in_filtered_child(f: fn()) -> libc::c_int {
        // SAFETY: the child compiles and installs the filters (glibc's malloc is fork-safe: its
        // arenas are locked around fork and reset in the child), runs `f` (raw syscalls) and
        // exits without unwinding; the parent waits for it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let installed = filters(SeccompMode::Kill, std::process::id()).is_ok_and(|programs| {
                programs
                    .iter()
                    .all(|p| seccompiler::apply_filter(p).is_ok())
            });
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

    #[test]
    fn allowed_calls_pass_and_opening_a_file_kills_the_process() {
        let ok = in_filtered_child(|| {
            // SAFETY: getpid and a zero-length write to stdout have no preconditions.
            unsafe {
                libc::getpid();
                libc::write(1, std::ptr::null(), 0);
            }
        });
        assert!(
            libc::WIFEXITED(ok) && libc::WEXITSTATUS(ok) == 0,
            "status {ok:#x}"
        );

        let killed = in_filtered_child(|| {
            // SAFETY: a NUL-terminated path; the call is expected to never return.
            unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
        });
        assert!(libc::WIFSIGNALED(killed), "status {killed:#x}");
        assert_eq!(libc::WTERMSIG(killed), libc::SIGSYS);

        let exec = in_filtered_child(|| {
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            // SAFETY: valid NUL-terminated argv and an empty environment.
            unsafe { libc::execve(argv[0], argv.as_ptr(), [std::ptr::null()].as_ptr()) };
        });
        assert!(libc::WIFSIGNALED(exec) && libc::WTERMSIG(exec) == libc::SIGSYS);

        let bad_ioctl = in_filtered_child(|| {
            // SAFETY: TIOCGWINSZ on stdin with a valid buffer; expected to be killed first.
            unsafe {
                let mut ws: libc::winsize = std::mem::zeroed();
                libc::ioctl(0, libc::TIOCGWINSZ, &mut ws);
            }
        });
        assert!(libc::WIFSIGNALED(bad_ioctl) && libc::WTERMSIG(bad_ioctl) == libc::SIGSYS);
    }

    /// The child exited with `code`.
    fn exited(status: libc::c_int, code: libc::c_int) -> bool {
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == code
    }

    /// The child was killed by the filter.
    fn killed(status: libc::c_int) -> bool {
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS
    }

    /// `_exit(0)` if `r` is a descriptor, else `_exit(errno)`: the child's status says which.
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

    #[test]
    fn only_inet_stream_and_datagram_sockets() {
        for ok in [
            || {
                // SAFETY: creating a socket has no memory preconditions.
                exit_with(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }.into())
            },
            || {
                // The flag bits are masked off before the type is compared.
                let ty = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                // SAFETY: creating a socket has no memory preconditions.
                exit_with(unsafe { libc::socket(libc::AF_INET6, ty, 0) }.into())
            },
        ] {
            let status = in_filtered_child(ok);
            assert!(exited(status, 0), "status {status:#x}");
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
            let status = in_filtered_child(denied);
            assert!(killed(status), "status {status:#x}");
        }
    }

    #[test]
    fn clone_makes_threads_only_and_clone3_is_enosys() {
        // A new user namespace (and a plain fork, which has no CLONE_THREAD) are killed.
        let new_user = in_filtered_child(|| {
            let flags = libc::CLONE_NEWUSER | libc::SIGCHLD;
            // SAFETY: raw clone without a new stack behaves like fork; expected to be killed.
            unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        });
        assert!(killed(new_user), "status {new_user:#x}");
        let thread_in_new_ns = in_filtered_child(|| {
            let flags =
                libc::CLONE_VM | libc::CLONE_SIGHAND | libc::CLONE_THREAD | libc::CLONE_NEWNET;
            // SAFETY: expected to be killed before the kernel sees the flags.
            unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        });
        assert!(killed(thread_in_new_ns), "status {thread_in_new_ns:#x}");
        let fork = in_filtered_child(|| {
            // SAFETY: as above.
            unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
        });
        assert!(killed(fork), "status {fork:#x}");
        let clone3 = in_filtered_child(|| {
            // SAFETY: the filter answers before the kernel reads the (null) argument.
            exit_with(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) })
        });
        assert!(exited(clone3, libc::ENOSYS), "status {clone3:#x}");
        // glibc's pthread_create falls back from clone3 to an allowed clone.
        let thread = in_filtered_child(|| {
            let spawned = std::thread::spawn(|| 7).join().ok() == Some(7);
            // SAFETY: terminating the forked child.
            unsafe { libc::_exit(if spawned { 0 } else { 1 }) }
        });
        assert!(exited(thread, 0), "status {thread:#x}");
    }

    #[test]
    fn signals_only_to_its_own_threads() {
        let own = in_filtered_child(|| {
            // SAFETY: signal 0 only checks that the thread exists.
            exit_with(unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), 0) })
        });
        assert!(exited(own, 0), "status {own:#x}");
        let parent = in_filtered_child(|| {
            // SAFETY: expected to be killed before the signal is sent.
            unsafe {
                let parent = libc::getppid();
                libc::syscall(libc::SYS_tgkill, parent, parent, libc::SIGTERM);
            }
        });
        assert!(killed(parent), "status {parent:#x}");
        let init = in_filtered_child(|| {
            // SAFETY: as above.
            unsafe { libc::kill(1, libc::SIGTERM) };
        });
        assert!(killed(init), "status {init:#x}");
    }
}

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
    // Outbound sockets of the user-mode network (no bind/listen/accept).
    libc::SYS_socket,
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
    libc::SYS_futex,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
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

/// Compiles the VMM's filter for `mode` (None for [`SeccompMode::Off`]).
pub fn filter(mode: SeccompMode) -> Result<Option<BpfProgram>, Error> {
    let mismatch = match mode {
        SeccompMode::Kill => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Off => return Ok(None),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    rules.insert(libc::SYS_ioctl, ioctl_rules().map_err(Error::Compile)?);
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
    if let Some(program) = filter(mode)? {
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
        assert!(filter(SeccompMode::Off).unwrap().is_none());
        assert!(!filter(SeccompMode::Kill).unwrap().unwrap().is_empty());
        assert!(!filter(SeccompMode::Log).unwrap().unwrap().is_empty());
    }

    /// Runs `f` in a forked child with the filter installed; returns the child's wait status.
    fn in_filtered_child(f: fn()) -> libc::c_int {
        let program = filter(SeccompMode::Kill).unwrap().unwrap();
        // SAFETY: the child only installs the filter, runs `f` (raw syscalls, no allocation,
        // no locks) and exits; the parent waits for it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            if seccompiler::apply_filter(&program).is_err() {
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
}

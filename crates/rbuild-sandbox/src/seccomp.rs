//! The seccomp filter of a confined step, with the semantics of Docker's default profile
//! (moby's `profiles/seccomp/default.json` for a container with the default capabilities):
//! an allow-list, everything else fails with EPERM, `clone3` fails with ENOSYS so that C
//! libraries fall back to `clone`, whose namespace flags the filter can see and refuses.
//!
//! The program covers both ABIs an x86_64 kernel offers a step: x86_64 (the host's
//! programs and QEMU) and i386 (`linux/386` steps, which run natively). seccompiler builds
//! the per-ABI rule chains from syscall numbers; this module puts an architecture
//! dispatch in front of them, because seccompiler knows no i386 target.

use crate::syscall_table::SYSCALLS;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use std::collections::BTreeMap;

/// Why the filter could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    /// seccompiler refused a rule or the program.
    #[error("build the seccomp filter: {0}")]
    Compile(#[from] seccompiler::BackendError),
    /// seccompiler's program does not start with the architecture check this module replaces.
    #[error("unexpected seccompiler program layout: {0}")]
    Layout(&'static str),
    /// The profile is written for x86_64 kernels only.
    #[error("the default seccomp profile is defined for x86_64 hosts only (this is {0})")]
    UnsupportedHost(&'static str),
}

/// `AUDIT_ARCH_X86_64` of `<linux/audit.h>`.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `AUDIT_ARCH_I386` of `<linux/audit.h>`.
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
/// Offset of `arch` in `struct seccomp_data`.
const ARCH_OFFSET: u32 = 4;
/// Offset of `nr` in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;

/// `BPF_LD | BPF_W | BPF_ABS`: load a word of `seccomp_data`.
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const BPF_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JA`: jump forward by `k`.
const BPF_JA: u16 = 0x05;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;

/// Namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET (and the obsolete CLONE_NEWTIME is below them in clone3 only).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// `AF_VSOCK`: Docker's profile refuses sockets of this family.
const AF_VSOCK: u64 = 40;
/// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32
/// and the query 0xffffffff.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The ABIs the filter covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abi {
    X86_64,
    I386,
}

/// System calls a confined step may make whatever their arguments: Docker's default
/// allow-list. A name missing from an ABI is skipped for that ABI.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "chroot", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
    "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
    "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp",
    "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
    "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ioprio_get",
    "ioprio_set", "ipc", "kcmp", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat",
    "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
    "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
    "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6",
    "pselect6_time64", "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "sendfile", "sendfile64",
    "sendmmsg", "sendmsg", "sendto", "set_robust_list", "set_thread_area", "set_tid_address",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid",
    "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid",
    "setsockopt", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn",
    "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx",
    "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
    "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev", "arch_prctl", "modify_ldt",
];

/// The number of `name` in `abi`, `None` when the ABI lacks it.
fn number(name: &str, abi: Abi) -> Option<i64> {
    let (_, x86_64, i386) = SYSCALLS.iter().find(|(n, _, _)| *n == name)?;
    match abi {
        Abi::X86_64 => *x86_64,
        Abi::I386 => *i386,
    }
    .map(i64::from)
}

fn arg_rule(
    arg: u8,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        op,
        value,
    )?])
}

/// The allow-list of `abi` as seccompiler rules: unconditional calls, plus the calls Docker
/// allows only with certain arguments.
fn rules(abi: Abi) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .filter_map(|name| number(name, abi))
        .map(|nr| (nr, Vec::new()))
        .collect();
    let mut conditional = |name: &str, chain: Vec<SeccompRule>| {
        if let Some(nr) = number(name, abi) {
            rules.insert(nr, chain);
        }
    };
    conditional(
        "clone",
        vec![arg_rule(
            0,
            SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
            0,
        )?],
    );
    conditional("socket", vec![arg_rule(0, SeccompCmpOp::Ne, AF_VSOCK)?]);
    let personality = PERSONALITIES
        .iter()
        .map(|p| arg_rule(0, SeccompCmpOp::Eq, *p))
        .collect::<Result<Vec<_>, _>>()?;
    conditional("personality", personality);
    Ok(rules)
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: BPF_JEQ_K,
        jt,
        jf,
        k,
    }
}

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// The filter section of one ABI (the architecture is already checked): `clone3` answers
/// ENOSYS, then seccompiler's allow-list with EPERM for everything else.
fn section(abi: Abi) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(
        rules(abi)?,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )?;
    let compiled: BpfProgram = filter.try_into()?;
    let body = strip_arch_check(compiled)?;
    let mut out = Vec::with_capacity(body.len() + 3);
    if let Some(clone3) = number("clone3", abi) {
        out.push(stmt(BPF_LD_W_ABS, NR_OFFSET));
        out.push(jeq(clone3 as u32, 0, 1));
        out.push(stmt(BPF_RET_K, errno(libc::ENOSYS)));
    }
    out.extend(body);
    Ok(out)
}

/// Removes the architecture check seccompiler puts first (load arch, compare, kill), which
/// the dispatch in front of every section replaces. Jumps in BPF are relative and only go
/// forward, so the rest of the program stays valid.
fn strip_arch_check(program: BpfProgram) -> Result<BpfProgram, SeccompError> {
    let expected = [
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    if program.len() <= expected.len() || program[..expected.len()] != expected {
        return Err(SeccompError::Layout(
            "the program does not start with the x86_64 architecture check",
        ));
    }
    Ok(program[expected.len()..].to_vec())
}

/// The whole program: dispatch on the architecture to the x86_64 or i386 section; any other
/// architecture (none exists on an x86_64 kernel) kills the process.
fn compose(x86_64: BpfProgram, i386: BpfProgram) -> Result<BpfProgram, SeccompError> {
    let to_i386 = u32::try_from(1 + x86_64.len())
        .map_err(|_| SeccompError::Layout("the x86_64 section is too long"))?;
    let mut out = vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        jeq(AUDIT_ARCH_X86_64, 0, 1),
        stmt(BPF_JA, 3),
        jeq(AUDIT_ARCH_I386, 0, 1),
        stmt(BPF_JA, to_i386),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    out.extend(x86_64);
    out.extend(i386);
    if out.len() >= 4096 {
        return Err(SeccompError::Layout(
            "the program is longer than the kernel accepts",
        ));
    }
    Ok(out)
}

/// The default profile as a BPF program for this host.
pub(crate) fn default_program() -> Result<BpfProgram, SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedHost(std::env::consts::ARCH));
    }
    compose(section(Abi::X86_64)?, section(Abi::I386)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` over one `struct seccomp_data` the way the kernel's classic BPF
    /// interpreter does, for the instructions this module and seccompiler emit.
    fn eval(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_le_bytes());
        data.extend_from_slice(&arch.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            data.extend_from_slice(&a.to_le_bytes());
        }
        let word = |off: u32| {
            let o = off as usize;
            u32::from_le_bytes(data[o..o + 4].try_into().unwrap())
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &program[pc];
            let class = ins.code & 0x07;
            pc += 1;
            match class {
                0x00 => acc = word(ins.k),
                0x04 => match ins.code & 0xf0 {
                    0x50 => acc &= ins.k,
                    op => panic!("alu op {op:#x}"),
                },
                0x05 => {
                    let taken = match ins.code & 0xf0 {
                        0x00 => {
                            pc += ins.k as usize;
                            continue;
                        }
                        0x10 => acc == ins.k,
                        0x20 => acc > ins.k,
                        0x30 => acc >= ins.k,
                        0x40 => acc & ins.k != 0,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += if taken { ins.jt } else { ins.jf } as usize;
                }
                0x06 => return ins.k,
                c => panic!("class {c:#x}"),
            }
        }
    }

    fn nr(name: &str, abi: Abi) -> u32 {
        number(name, abi).unwrap() as u32
    }

    #[test]
    fn every_profile_name_is_a_known_syscall() {
        for name in ALLOWED
            .iter()
            .chain(&["clone", "clone3", "socket", "personality"])
        {
            assert!(
                SYSCALLS.iter().any(|(n, _, _)| n == name),
                "{name} is in neither table"
            );
        }
    }

    #[test]
    fn the_filter_allows_ordinary_calls_on_both_abis() {
        let p = default_program().unwrap();
        for (arch, abi) in [
            (AUDIT_ARCH_X86_64, Abi::X86_64),
            (AUDIT_ARCH_I386, Abi::I386),
        ] {
            for name in ["read", "execve", "chown", "setuid", "chroot", "mknod"] {
                assert_eq!(
                    eval(&p, arch, nr(name, abi), [0; 6]),
                    libc::SECCOMP_RET_ALLOW,
                    "{name} {abi:?}"
                );
            }
            let fork_like = [libc::SIGCHLD as u64 | 0x0100_0000, 0, 0, 0, 0, 0];
            assert_eq!(
                eval(&p, arch, nr("clone", abi), fork_like),
                libc::SECCOMP_RET_ALLOW
            );
            assert_eq!(
                eval(&p, arch, nr("personality", abi), [8, 0, 0, 0, 0, 0]),
                libc::SECCOMP_RET_ALLOW
            );
            assert_eq!(
                eval(&p, arch, nr("socket", abi), [2, 3, 1, 0, 0, 0]),
                libc::SECCOMP_RET_ALLOW
            );
        }
        assert_eq!(
            eval(&p, AUDIT_ARCH_I386, nr("socketcall", Abi::I386), [0; 6]),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn the_filter_refuses_what_docker_refuses() {
        let p = default_program().unwrap();
        let eperm = errno(libc::EPERM);
        for (arch, abi) in [
            (AUDIT_ARCH_X86_64, Abi::X86_64),
            (AUDIT_ARCH_I386, Abi::I386),
        ] {
            for name in [
                "mount",
                "umount2",
                "unshare",
                "setns",
                "pivot_root",
                "keyctl",
                "add_key",
                "request_key",
                "bpf",
                "perf_event_open",
                "kexec_load",
                "init_module",
                "finit_module",
                "delete_module",
                "open_by_handle_at",
                "swapon",
                "swapoff",
                "reboot",
                "clock_settime",
                "settimeofday",
                "acct",
                "quotactl",
                "lookup_dcookie",
                "userfaultfd",
                "fsopen",
                "fsmount",
                "move_mount",
                "open_tree",
                "mount_setattr",
                "sethostname",
                "syslog",
                "io_uring_setup",
            ] {
                if let Some(n) = number(name, abi) {
                    assert_eq!(eval(&p, arch, n as u32, [0; 6]), eperm, "{name} {abi:?}");
                }
            }
            let new_user = [0x1000_0000 | libc::SIGCHLD as u64, 0, 0, 0, 0, 0];
            assert_eq!(eval(&p, arch, nr("clone", abi), new_user), eperm);
            assert_eq!(
                eval(&p, arch, nr("clone3", abi), [0; 6]),
                errno(libc::ENOSYS)
            );
            assert_eq!(
                eval(
                    &p,
                    arch,
                    nr("personality", abi),
                    [0x0040_0000, 0, 0, 0, 0, 0]
                ),
                eperm
            );
            assert_eq!(
                eval(&p, arch, nr("socket", abi), [AF_VSOCK, 1, 0, 0, 0, 0]),
                eperm
            );
        }
        let x32_read = 0x4000_0000;
        assert_eq!(eval(&p, AUDIT_ARCH_X86_64, x32_read, [0; 6]), eperm);
        assert_eq!(
            eval(&p, 0xC000_00B7, 63, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn the_table_matches_the_kernel_headers() {
        let dir = std::path::Path::new("/usr/include/x86_64-linux-gnu/asm");
        let (Ok(h64), Ok(h32)) = (
            std::fs::read_to_string(dir.join("unistd_64.h")),
            std::fs::read_to_string(dir.join("unistd_32.h")),
        ) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the kernel headers (linux-libc-dev) are missing"
            );
            eprintln!(
                "SKIPPED: no kernel headers in {} (install linux-libc-dev)",
                dir.display()
            );
            return;
        };
        let parse = |text: &str| -> BTreeMap<String, i64> {
            text.lines()
                .filter_map(|l| l.strip_prefix("#define __NR_"))
                .filter_map(|l| {
                    let (name, nr) = l.split_once(' ')?;
                    Some((name.to_string(), nr.trim().parse().ok()?))
                })
                .collect()
        };
        for (abi, table) in [(Abi::X86_64, parse(&h64)), (Abi::I386, parse(&h32))] {
            for (name, nr) in &table {
                assert_eq!(number(name, abi), Some(*nr), "{name} {abi:?}");
            }
        }
    }
}

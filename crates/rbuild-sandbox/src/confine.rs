//! What a step's process may do once it runs: capabilities, `no_new_privs` and the seccomp
//! filter, set last in the command's process before it executes the step's command.
//!
//! The default ([`Security::Sandbox`]) matches Docker's default for containers: Docker's 14
//! capabilities in the effective, permitted and bounding sets, nothing inheritable or
//! ambient (as moby and containerd do since CVE-2022-24769), `no_new_privs` and the default
//! seccomp profile ([`crate::seccomp`]). [`Security::Insecure`] leaves the process as the
//! sandbox helper is: every capability of the build's user namespace, no filter.

use serde::{Deserialize, Serialize};

/// How tightly a step's process is confined (`RUN --security`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Security {
    /// Docker's default capabilities, `no_new_privs` and seccomp profile.
    #[default]
    Sandbox,
    /// Every capability, no seccomp filter (`RUN --security=insecure`).
    Insecure,
}

/// Docker's default capabilities: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPABILITIES: u64 =
    capability_set(&[0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]);

/// The bit set of capability numbers.
const fn capability_set(caps: &[u32]) -> u64 {
    let mut set = 0u64;
    let mut i = 0;
    while i < caps.len() {
        set |= 1 << caps[i];
        i += 1;
    }
    set
}

/// Why a step's process could not be confined.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfineError {
    /// A prctl or capset call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The seccomp program could not be built.
    #[error(transparent)]
    Program(#[from] crate::seccomp::SeccompError),
    /// The kernel refused the seccomp program.
    #[error("install the seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
}

fn os_err(what: &str) -> ConfineError {
    ConfineError::Os {
        what: what.to_string(),
        source: std::io::Error::last_os_error(),
    }
}

/// Removes every capability outside `keep` from the bounding set. Needs CAP_SETPCAP, so it
/// runs before the process changes its user.
pub(crate) fn drop_bounding_set(keep: u64) -> Result<(), ConfineError> {
    for cap in 0..64u32 {
        // SAFETY: prctl with integer arguments only.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if present < 0 {
            break; // past the kernel's last capability
        }
        if present == 1 && keep & (1 << cap) == 0 {
            // SAFETY: as above.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(os_err(&format!(
                    "drop capability {cap} from the bounding set"
                )));
            }
        }
    }
    Ok(())
}

/// Empties the ambient set.
pub(crate) fn clear_ambient() -> Result<(), ConfineError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(os_err("clear the ambient capabilities"));
    }
    Ok(())
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets the effective and permitted sets to `set` and empties the inheritable set.
pub(crate) fn set_capabilities(set: u64) -> Result<(), ConfineError> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| CapData {
        effective: (set >> shift) as u32,
        permitted: (set >> shift) as u32,
        inheritable: 0,
    };
    let data = [half(0), half(32)];
    // SAFETY: a version-3 header and the two data structs that version expects.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(os_err("set the step's capabilities"));
    }
    Ok(())
}

/// Sets `no_new_privs`: no later execve can gain privileges (setuid bits, file capabilities).
pub(crate) fn set_no_new_privs() -> Result<(), ConfineError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(os_err("set no_new_privs"));
    }
    Ok(())
}

/// Installs `program` as this process's seccomp filter (`no_new_privs` must be set).
pub(crate) fn install_filter(program: &seccompiler::BpfProgram) -> Result<(), ConfineError> {
    Ok(seccompiler::apply_filter(program)?)
}

/// The confinement a step's command gets, prepared by pid 1 before it forks the command.
pub(crate) enum Confinement {
    /// Default capabilities, `no_new_privs`, this seccomp program.
    Sandbox(seccompiler::BpfProgram),
    /// Nothing taken away.
    Insecure,
}

impl Confinement {
    /// Builds the confinement for `security`.
    pub(crate) fn new(security: Security) -> Result<Confinement, ConfineError> {
        match security {
            Security::Insecure => Ok(Confinement::Insecure),
            Security::Sandbox => Ok(Confinement::Sandbox(crate::seccomp::default_program()?)),
        }
    }

    /// The part that needs privileges the user change drops: the bounding and ambient sets.
    pub(crate) fn before_user_change(&self) -> Result<(), ConfineError> {
        match self {
            Confinement::Insecure => Ok(()),
            Confinement::Sandbox(_) => {
                drop_bounding_set(DEFAULT_CAPABILITIES)?;
                clear_ambient()
            }
        }
    }

    /// The rest, last before execve: capabilities (the default set for root, none for other
    /// users, as their user change already cleared them), `no_new_privs`, the filter.
    pub(crate) fn before_exec(&self, uid: u32) -> Result<(), ConfineError> {
        let Confinement::Sandbox(program) = self else {
            return Ok(());
        };
        set_capabilities(if uid == 0 { DEFAULT_CAPABILITIES } else { 0 })?;
        set_no_new_privs()?;
        install_filter(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_dockers() {
        assert_eq!(DEFAULT_CAPABILITIES, 0x0000_0000_a804_25fb);
    }
}

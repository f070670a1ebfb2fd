//! Runs one build step's process in Linux namespaces over a root filesystem,
//! rootless or as root, natively or through QEMU user-mode emulation.
//!
//! The crate knows nothing of images. A program uses it in three places:
//! 1. first thing in `main`: if `argv[1] == INIT_ARG`, call [`init_main`];
//! 2. before any thread exists: [`enter_build_namespace`];
//! 3. per build: [`Emulation::prepare`], then [`run`] per step.
//!
//! [`platform_report`] tells, without building or changing the host, how each
//! platform would run here.
//!
//! Every namespace and mount system call of the project lives here.

mod binfmt;
mod confine;
mod error;
mod idmap;
mod init;
mod mounts;
mod overlay;
mod plan;
mod run;
mod seccomp;
mod syscall_table;
mod user;
mod userns;

pub use binfmt::{
    ELF_MATCHES, ElfMatch, Emulation, HANDLER_FLAGS, HandlerSource, HostFacts, KNOWN_PLATFORMS,
    PlatformLine, PlatformState, PlatformSupport, QEMU_PATH_ENV, classify_platforms,
    elf_architecture, find_emulator, platform_report, register_line,
};
pub use confine::{DEFAULT_CAPABILITIES, Security};
pub use error::SandboxError;
pub use idmap::{
    IdMap, IdMaps, SUBID_MAPPED, SUBID_MIN_RANGE, SubidRange, describe_map, format_map, id_maps,
    is_mapped, parse_map, subid_ranges, usable_range,
};
pub use init::init_main;
pub use overlay::OverlayMount;
pub use plan::{DEFAULT_PATH, OverlayData, find_in_path, mount_target, overlay_data};
pub use run::{
    Attach, ExitStatus, INIT_ARG, Mount, Network, Rootfs, RunOutcome, RunSpec, run, run_attached,
};
pub use user::{ResolvedUser, resolve_user};
pub use userns::{IN_USERNS_ENV, enter_build_namespace, enter_build_namespace_with};

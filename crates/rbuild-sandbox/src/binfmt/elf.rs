//! binfmt_misc handlers as the kernel reads them: the ELF magic and mask of each QEMU
//! target, the registration line, a handler file's status, and an ELF header's CPU.

use super::*;

/// Flags of the handlers registered in the private instance: P keeps argv[0], O and C
/// open the binary for the interpreter and keep its credentials, F opens the
/// interpreter at registration so it works inside any root filesystem.
pub const HANDLER_FLAGS: &str = "POCF";

/// ELF magic and mask that select one architecture's binaries (from QEMU's binfmt tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfMatch {
    /// QEMU's name for the architecture (`qemu-<name>-static`).
    pub qemu: &'static str,
    /// Bytes to match at offset 0, in binfmt_misc `\x` notation.
    pub magic: &'static str,
    /// Mask applied before matching, in binfmt_misc `\x` notation.
    pub mask: &'static str,
}

const ELF_MASK_LE: &str =
    r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
const ELF_MASK_X86: &str =
    r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";

/// Handler table, taken from QEMU's `qemu-binfmt-conf.sh` / Debian's `/usr/share/binfmts`.
pub const ELF_MATCHES: &[ElfMatch] = &[
    ElfMatch {
        qemu: "aarch64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        mask: ELF_MASK_LE,
    },
    ElfMatch {
        qemu: "arm",
        magic: r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        mask: ELF_MASK_LE,
    },
    ElfMatch {
        qemu: "i386",
        magic: r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00",
        mask: ELF_MASK_X86,
    },
    ElfMatch {
        qemu: "x86_64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
        mask: ELF_MASK_X86,
    },
    ElfMatch {
        qemu: "ppc64le",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
    },
    ElfMatch {
        qemu: "ppc64",
        magic: r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    ElfMatch {
        qemu: "s390x",
        magic: r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    ElfMatch {
        qemu: "riscv64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        mask: ELF_MASK_LE,
    },
    ElfMatch {
        qemu: "mips64el",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
    ElfMatch {
        qemu: "mips64",
        magic: r"\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    ElfMatch {
        qemu: "loongarch64",
        magic: r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x01",
        mask: r"\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
];

/// The handler table entry for a QEMU architecture name.
pub fn elf_match(qemu: &str) -> Option<&'static ElfMatch> {
    ELF_MATCHES.iter().find(|m| m.qemu == qemu)
}

/// The line written to `register` to add a handler named `qemu-<arch>`.
pub fn register_line(m: &ElfMatch, interpreter: &Path, flags: &str) -> Result<String, String> {
    let interp = interpreter
        .to_str()
        .ok_or("interpreter path is not UTF-8")?;
    if interp.contains(':') || interp.contains('\n') {
        return Err(format!(
            "interpreter path {interp:?} contains ':' or a newline"
        ));
    }
    Ok(format!(
        ":{}:M:0:{}:{}:{}:{}",
        handler_name(m.qemu),
        m.magic,
        m.mask,
        interp,
        flags
    ))
}

/// The handler's file name in a binfmt_misc directory.
pub fn handler_name(qemu: &str) -> String {
    format!("qemu-{qemu}")
}

/// The state of a handler file: whether it is enabled, its interpreter and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerStatus {
    /// `enabled` as the first line.
    pub enabled: bool,
    /// The `interpreter` line.
    pub interpreter: Option<PathBuf>,
    /// The `flags:` line.
    pub flags: String,
}

/// Parses the text of a handler file under a binfmt_misc mount.
pub fn parse_handler(text: &str) -> HandlerStatus {
    let mut status = HandlerStatus {
        enabled: text.lines().next() == Some("enabled"),
        interpreter: None,
        flags: String::new(),
    };
    for line in text.lines() {
        if let Some(i) = line.strip_prefix("interpreter ") {
            status.interpreter = Some(PathBuf::from(i.trim()));
        } else if let Some(f) = line.strip_prefix("flags:") {
            status.flags = f.trim().to_string();
        }
    }
    status
}

/// The architecture (as an OCI name) an ELF header was built for, for error messages.
pub fn elf_architecture(header: &[u8]) -> Option<&'static str> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    let class64 = header[4] == 2;
    let little = header[5] == 1;
    let machine = if little {
        u16::from_le_bytes([header[18], header[19]])
    } else {
        u16::from_be_bytes([header[18], header[19]])
    };
    Some(match (machine, class64, little) {
        (3, false, _) => "386",
        (62, true, _) => "amd64",
        (183, true, _) => "arm64",
        (40, false, _) => "arm",
        (21, true, true) => "ppc64le",
        (21, true, false) => "ppc64",
        (22, true, _) => "s390x",
        (243, true, _) => "riscv64",
        (8, true, true) => "mips64le",
        (8, true, false) => "mips64",
        (8, false, true) => "mipsle",
        (8, false, false) => "mips",
        (258, true, _) => "loong64",
        _ => return None,
    })
}

//! `--chmod` values: octal bits, or symbolic changes (`u+x,go-w`, `a=r`) applied to each
//! copied file's own mode the way chmod(1) does.

/// What `--chmod` does to the copied files and directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Every file and directory gets exactly these bits.
    Octal(u32),
    /// Each file's mode is changed by these clauses; directories get `X` as execute.
    Symbolic(SymbolicMode),
}

impl Chmod {
    /// The mode a file whose source mode is `mode` ends up with.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(bits) => bits & 0o7777,
            Chmod::Symbolic(s) => s.apply(mode, is_dir),
        }
    }
}

/// A parsed symbolic mode: comma-separated clauses of `[ugoa]*` followed by one or more
/// `[-+=]` actions, each with permissions `[rwxXst]*` or a copy of one class (`u`, `g`, `o`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolicMode {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    /// Who bits mask (0o4700 user, 0o2070 group, 0o1007 other); all when none was named.
    who: u32,
    actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Action {
    op: char,
    perms: Perms,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perms {
    /// `r`, `w`, `x`, `X`, `s`, `t` letters.
    Letters(String),
    /// Copy the bits of a class: `u`, `g` or `o`.
    Copy(char),
}

/// The symbolic mode is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbolic mode {0:?}")]
pub struct BadMode(pub String);

impl SymbolicMode {
    /// Parses `u+x,go-w` style modes; rejects anything chmod(1) would not accept.
    pub fn parse(s: &str) -> Result<SymbolicMode, BadMode> {
        let bad = || BadMode(s.to_string());
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => break,
                };
                chars.next();
            }
            let mut actions = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad());
                }
                let mut letters = String::new();
                let mut perms = None;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' | 'w' | 'x' | 'X' | 's' | 't' if perms.is_none() => letters.push(c),
                        'u' | 'g' | 'o' if letters.is_empty() && perms.is_none() => {
                            perms = Some(Perms::Copy(c))
                        }
                        '+' | '-' | '=' => break,
                        _ => return Err(bad()),
                    }
                    chars.next();
                }
                actions.push(Action {
                    op,
                    perms: perms.unwrap_or(Perms::Letters(letters)),
                });
            }
            if actions.is_empty() {
                return Err(bad());
            }
            clauses.push(Clause {
                who: if who == 0 { 0o7777 } else { who },
                actions,
            });
        }
        Ok(SymbolicMode { clauses })
    }

    /// Applies the clauses in order to `mode` (permission bits); `X` sets execute only on
    /// directories and on files that already have an execute bit.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut mode = mode & 0o7777;
        for clause in &self.clauses {
            for action in &clause.actions {
                let bits = match &action.perms {
                    Perms::Letters(l) => letter_bits(l, mode, is_dir),
                    Perms::Copy(c) => copy_bits(*c, mode),
                } & clause.who;
                mode = match action.op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    _ => (mode & !(clause.who & 0o0777) & !special_of(clause.who)) | bits,
                };
            }
        }
        mode
    }
}

/// The setuid/setgid/sticky bits a who mask may touch with `=`.
fn special_of(who: u32) -> u32 {
    who & 0o7000
}

/// The bits (for all classes) that permission letters stand for.
fn letter_bits(letters: &str, mode: u32, is_dir: bool) -> u32 {
    let mut bits = 0;
    for c in letters.chars() {
        bits |= match c {
            'r' => 0o444,
            'w' => 0o222,
            'x' => 0o111,
            'X' if is_dir || mode & 0o111 != 0 => 0o111,
            's' => 0o6000,
            't' => 0o1000,
            _ => 0,
        };
    }
    bits
}

/// `g=u` and the like: one class's rwx bits spread over all classes.
fn copy_bits(class: char, mode: u32) -> u32 {
    let rwx = match class {
        'u' => (mode >> 6) & 7,
        'g' => (mode >> 3) & 7,
        _ => mode & 7,
    };
    rwx << 6 | rwx << 3 | rwx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(s: &str, mode: u32, dir: bool) -> u32 {
        SymbolicMode::parse(s).unwrap().apply(mode, dir)
    }

    #[test]
    fn symbolic_modes_change_the_existing_bits() {
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("u+x,go-w", 0o666, false), 0o744);
        assert_eq!(apply("a=r", 0o755, false), 0o444);
        assert_eq!(apply("=r", 0o755, false), 0o444);
        assert_eq!(apply("go=", 0o777, false), 0o700);
        assert_eq!(apply("g=u", 0o740, false), 0o770);
        assert_eq!(apply("u=rwx,g=rx,o=", 0o000, false), 0o750);
        assert_eq!(apply("+t", 0o755, true), 0o1755);
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("u-x+w", 0o500, false), 0o600);
    }

    #[test]
    fn capital_x_is_execute_for_directories_and_executables_only() {
        assert_eq!(apply("a+X", 0o644, false), 0o644);
        assert_eq!(apply("a+X", 0o744, false), 0o755);
        assert_eq!(apply("a+X", 0o644, true), 0o755);
    }

    #[test]
    fn malformed_modes_are_rejected() {
        for s in ["", "u", "u+y", "x+r", "u+x,", "+ur", "755"] {
            assert!(SymbolicMode::parse(s).is_err(), "{s:?}");
        }
    }
}

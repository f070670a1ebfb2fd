//! `rbuild run -t`: the command gets a pseudo-terminal; rbuild copies between it and its
//! own stdin/stdout, with the caller's terminal in raw mode meanwhile.

use rbuild_sandbox::{Attach, Emulation, ExitStatus, RunSpec, SandboxError};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

fn setup(what: &str) -> impl FnOnce(nix::Error) -> SandboxError + '_ {
    move |e| SandboxError::Setup(format!("{what}: {e}"))
}

/// Puts the caller's terminal (if stdin is one) in raw mode until dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// The caller's window size, if stdout is a terminal.
fn window_size() -> Option<nix::pty::Winsize> {
    let mut ws = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some(ws)
}

/// Runs `spec` on a new pseudo-terminal; with `interactive`, stdin is copied to it.
pub fn run(
    spec: &RunSpec,
    emulation: &Emulation,
    interactive: bool,
) -> Result<ExitStatus, SandboxError> {
    let pty =
        nix::pty::openpty(window_size().as_ref(), None).map_err(setup("open a pseudo-terminal"))?;
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| SandboxError::Setup(format!("duplicate the terminal: {e}")))
    };
    let attach = Attach {
        stdin: Some(dup(&pty.slave)?),
        stdout: dup(&pty.slave)?,
        stderr: pty.slave,
        tty: true,
    };
    let _raw = interactive.then(RawMode::enter);
    let master_out = std::fs::File::from(dup(&pty.master)?);
    let output = std::thread::spawn(move || copy_out(master_out));
    if interactive {
        let master_in = std::fs::File::from(dup(&pty.master)?);
        // Left running when the command ends: it is blocked reading rbuild's stdin.
        std::thread::spawn(move || copy_in(master_in));
    }
    let result = rbuild_sandbox::run_attached(spec, emulation, attach);
    drop(pty.master);
    let _ = output.join();
    Ok(result?.status)
}

/// Terminal → stdout until the terminal's last user closes it (EIO).
fn copy_out(mut master: std::fs::File) {
    let mut buf = [0u8; 8192];
    let mut out = std::io::stdout();
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}

/// stdin → terminal; at the end of stdin, an end-of-file character (^D).
fn copy_in(mut master: std::fs::File) {
    let mut buf = [0u8; 8192];
    let mut input = std::io::stdin();
    loop {
        match input.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = master.write_all(&[4]);
                return;
            }
            Ok(n) => {
                if master.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

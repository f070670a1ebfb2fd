//! The registry BuildKit pulls the base image from: the one already listening on
//! 127.0.0.1:5000 (buildkitd treats `localhost:5000` as plain HTTP), or Debian's
//! `docker-registry` started there for the benchmark and stopped afterwards.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

const PORT: u16 = 5000;

/// A registry on localhost:5000; stops the one it started when dropped.
pub struct Registry {
    started: Option<Child>,
    _dir: Option<util::TempDir>,
}

fn listening() -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The config of a registry on 127.0.0.1:PORT storing under `data`, without auth.
fn config(data: &Path) -> String {
    format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: 127.0.0.1:{PORT}\n",
        data.display()
    )
}

impl Registry {
    /// Reuses a registry on localhost:5000 or starts one there.
    pub fn ensure() -> Result<Registry> {
        if listening() {
            util::info(&format!("using the registry on localhost:{PORT}"));
            return Ok(Registry {
                started: None,
                _dir: None,
            });
        }
        if !util::on_path("docker-registry") {
            bail!("nothing listens on localhost:{PORT} and docker-registry is not installed");
        }
        let dir = util::TempDir::new("bench-registry")?;
        let file = dir.path().join("config.yml");
        std::fs::write(&file, config(&dir.path().join("data")))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start docker-registry")?;
        let mut registry = Registry {
            started: Some(child),
            _dir: Some(dir),
        };
        registry.wait_until_listening()?;
        util::info(&format!("started docker-registry on localhost:{PORT}"));
        Ok(registry)
    }

    fn wait_until_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if listening() {
                return Ok(());
            }
            if let Some(child) = &mut self.started
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("docker-registry exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("docker-registry does not listen on localhost:{PORT} after 15 s")
    }

    /// Pushes every platform of the OCI layout `layout` (tag `latest`) as
    /// `localhost:5000/<name>:latest`; returns the reference without the tag.
    pub fn push(&self, layout: &Path, name: &str) -> Result<String> {
        let reference = format!("localhost:{PORT}/{name}");
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{reference}:latest"));
        util::run(&mut cmd)?;
        Ok(reference)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.started {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_binds_localhost_only() {
        let text = config(Path::new("/tmp/r/data"));
        assert!(text.contains("addr: 127.0.0.1:5000\n"), "{text}");
        assert!(text.contains("rootdirectory: /tmp/r/data\n"), "{text}");
        assert!(!text.contains("auth"), "{text}");
    }
}

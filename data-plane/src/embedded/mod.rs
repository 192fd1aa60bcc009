//! Platform services started from the system's own binaries, private to one Hangar (or one
//! test run): they listen on loopback only, on a free port, with password authentication.

pub mod postgres;
pub mod redis;

pub use postgres::{PostgresError, PrivatePostgres};
pub use redis::{PrivateRedis, RedisError};

use std::path::{Path, PathBuf};

/// A directory held by one process at a time: an exclusive `flock` on its `lock` file (which
/// names the holder's pid), released when the holder exits, however it exits.
#[derive(Debug)]
pub struct DirLock(
    #[allow(dead_code, reason = "held, never read")] nix::fcntl::Flock<std::fs::File>,
);

#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    #[error("failed to lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir} is in use by another process (pid {holder}): stop it first")]
    Held { dir: PathBuf, holder: String },
}

impl DirLock {
    /// Takes `dir` (which must exist), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, DirLockError> {
        use std::io::Write;
        let path = dir.join("lock");
        let failed = |source| DirLockError::Lock {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(failed)?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                let mut f: &std::fs::File = &lock;
                f.set_len(0).map_err(failed)?;
                writeln!(f, "{}", std::process::id()).map_err(failed)?;
                Ok(Self(lock))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(DirLockError::Held {
                dir: dir.to_owned(),
                holder: std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            }),
            Err((_, errno)) => Err(failed(std::io::Error::from(errno))),
        }
    }
}

/// The first folder above `dir` that other users may not pass through (no `o+x`): a service
/// running as another user could not reach `dir` through it.
pub fn unsearchable_ancestor(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .skip(1)
        .find(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(std::path::Path::to_owned)
}

/// A free TCP port on loopback (free when asked; the server binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `cleanup` (a shell snippet) once process `pid` has exited, from a detached session:
/// how test harnesses, whose statics are never dropped, stop the servers they started.
pub fn run_after_exit(pid: u32, cleanup: &str) -> std::io::Result<()> {
    let script = format!("while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}");
    std::process::Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_directory_is_held_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "in use by another process (pid {})",
                std::process::id()
            )),
            "{err}"
        );
        drop(held);
        DirLock::acquire(dir.path()).unwrap();
    }
}

//! Platform services started from the system's own binaries, private to one Hangar (or one
//! test run): they listen on loopback only, on a free port, with password authentication.

pub mod postgres;
pub mod redis;

pub use postgres::{PostgresError, PrivatePostgres};
pub use redis::{PrivateRedis, RedisError};

/// A free TCP port on loopback (free when asked; the server binds it right after).
/// The first folder above `dir` that other users may not pass through (no `o+x`): a service
/// running as another user could not reach `dir` through it.
pub fn unsearchable_ancestor(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .skip(1)
        .find(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(std::path::Path::to_owned)
}

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

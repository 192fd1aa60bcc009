//! A private Redis 7 server for the platform's brokers: loopback only, a free port, ACLs on
//! (the `default` user is disabled; an admin user `hangar` manages one user per environment,
//! see [`crate::broker`]), users and data kept in its directory so a restart keeps them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

use super::free_port;

/// The admin user of a private server.
pub const ADMIN_USER: &str = "hangar";

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis-server not found on PATH: install redis-server (scripts/bootstrap does)")]
    MissingBinary,
    #[error("failed to prepare {path}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run redis-server")]
    Spawn(#[source] std::io::Error),
    #[error("redis-server did not start: {log}")]
    NotStarted { log: String },
    #[error("failed to talk to the private Redis")]
    Client(#[source] redis::RedisError),
}

/// A running private server.
#[derive(Debug)]
pub struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    password: SecretString,
    /// Whether it takes TLS connections only ([`PrivateRedis::require_tls`]).
    tls: bool,
}

fn prepare(path: &Path) -> impl Fn(std::io::Error) -> RedisError + '_ {
    move |source| RedisError::Prepare {
        path: path.to_owned(),
        source,
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), RedisError> {
    std::fs::write(path, text).map_err(prepare(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(prepare(path))
}

impl PrivateRedis {
    /// Starts the server whose files live in `dir` (created if needed); users made earlier in
    /// the same directory are kept.
    pub async fn start(dir: &Path) -> Result<Self, RedisError> {
        Self::start_with(dir, true).await
    }

    /// Starts a server that refuses `ACL` commands to everyone, admin included, as
    /// ElastiCache, Memorystore and Azure Cache for Redis do: the environments' brokers then
    /// need the broker gateway ([`crate::broker_gateway`]).
    pub async fn start_without_acl_commands(dir: &Path) -> Result<Self, RedisError> {
        Self::start_with(dir, false).await
    }

    async fn start_with(dir: &Path, acl_commands: bool) -> Result<Self, RedisError> {
        let status = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if !status.is_ok_and(|s| s.success()) {
            return Err(RedisError::MissingBinary);
        }
        std::fs::create_dir_all(dir).map_err(prepare(dir))?;
        let dir = std::fs::canonicalize(dir).map_err(prepare(dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(prepare(&dir))?;
        let pw_path = dir.join("password");
        let password = match std::fs::read_to_string(&pw_path) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
            _ => {
                let p = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
                write_private(&pw_path, &format!("{p}\n"))?;
                p
            }
        };
        let acl = dir.join("users.acl");
        if !acl.exists() {
            write_private(
                &acl,
                &format!("user default off\nuser {ADMIN_USER} on >{password} ~* &* +@all\n"),
            )?;
        }
        let conf = dir.join("redis.conf");
        // A server a previous run left running on this directory (one killed before it could
        // stop it) is taken over as it is, on its port: the environments' brokers stay up.
        if let Some(port) = configured_port(&conf) {
            let server = Self {
                dir: dir.clone(),
                port,
                password: SecretString::from(password.clone()),
                tls: false,
            };
            if pid_alive(&dir.join("redis.pid")) && server.ping().await.is_ok() {
                tracing::info!(dir = %dir.display(), port, "took over the private Redis a previous run left running");
                return Ok(server);
            }
        }
        let port = free_port().map_err(prepare(&dir))?;
        // Durable enough for a broker on one machine: an append-only file synced every second.
        write_private(
            &conf,
            &format!(
                "bind 127.0.0.1\nprotected-mode yes\nport {port}\ndir {d}\naclfile {acl}\n\
                 daemonize yes\npidfile {d}/redis.pid\nlogfile {d}/redis.log\n\
                 appendonly yes\nappendfsync everysec\nsave \"\"\n{no_acl}",
                d = dir.display(),
                acl = acl.display(),
                no_acl = if acl_commands {
                    ""
                } else {
                    "rename-command ACL \"\"\n"
                },
            ),
        )?;
        let out = Command::new("redis-server")
            .arg(&conf)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(RedisError::Spawn)?;
        let server = Self {
            dir: dir.clone(),
            port,
            password: SecretString::from(password),
            tls: false,
        };
        for _ in 0..100 {
            if server.ping().await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        Err(RedisError::NotStarted {
            log: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            ),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for the admin user (`rediss://…#insecure` once it requires TLS: its certificate
    /// is a test's own).
    pub fn admin_url(&self) -> SecretString {
        let (scheme, fragment) = if self.tls {
            ("rediss", "#insecure")
        } else {
            ("redis", "")
        };
        SecretString::from(format!(
            "{scheme}://{ADMIN_USER}:{}@127.0.0.1:{}/0{fragment}",
            self.password.expose_secret(),
            self.port
        ))
    }

    /// Moves the server to TLS only, with the certificate `cert_pem` and its key `key_pem`, on
    /// a new port: a server like the managed ones that require TLS, for testing the clients.
    pub async fn require_tls(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), RedisError> {
        let (cert, key) = (self.dir.join("tls.crt"), self.dir.join("tls.key"));
        write_private(&cert, cert_pem)?;
        write_private(&key, key_pem)?;
        let tls_port = free_port().map_err(prepare(&self.dir))?;
        let mut conn = self.admin_connection().await?;
        for (name, value) in [
            ("tls-auth-clients", "no".to_owned()),
            ("tls-cert-file", cert.display().to_string()),
            ("tls-key-file", key.display().to_string()),
            ("tls-port", tls_port.to_string()),
            ("port", "0".to_owned()),
        ] {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(&value)
                .query_async::<()>(&mut conn)
                .await
                .map_err(RedisError::Client)?;
        }
        self.port = tls_port;
        self.tls = true;
        let _ = rustls::crypto::ring::default_provider().install_default();
        self.ping().await
    }

    /// [`PrivateRedis::require_tls`] with a self-signed certificate for 127.0.0.1: for tests.
    #[cfg(test)]
    #[allow(clippy::expect_used)]
    pub(crate) async fn require_test_tls(&mut self) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
        self.require_tls(&cert.cert.pem(), &cert.key_pair.serialize_pem())
            .await
            .expect("a Redis on TLS");
    }

    async fn admin_connection(&self) -> Result<redis::aio::MultiplexedConnection, RedisError> {
        redis::Client::open(self.admin_url().expose_secret())
            .map_err(RedisError::Client)?
            .get_multiplexed_async_connection()
            .await
            .map_err(RedisError::Client)
    }

    async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.admin_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(RedisError::Client)?;
        Ok(())
    }

    /// Stops the server, writing its data first.
    pub async fn stop(&self) -> Result<(), RedisError> {
        let mut conn = self.admin_connection().await?;
        // The server closes the connection as it shuts down, so an I/O error here means success.
        let _ = redis::cmd("SHUTDOWN").query_async::<()>(&mut conn).await;
        for _ in 0..100 {
            if !self.dir.join("redis.pid").exists() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Arranges for the server to be killed and its directory removed once process `pid`
    /// exits: for test harnesses whose statics are never dropped.
    pub fn stop_and_remove_after(&self, pid: u32) -> Result<(), RedisError> {
        super::run_after_exit(
            pid,
            &format!(
                "kill $(cat {d}/redis.pid) 2>/dev/null; sleep 0.5; rm -rf {d}",
                d = self.dir.display()
            ),
        )
        .map_err(RedisError::Spawn)?;
        Ok(())
    }
}

/// The port a server's configuration file names.
fn configured_port(conf: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(conf).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("port "))
        .and_then(|p| p.trim().parse().ok())
}

/// Whether the process of a pid file runs.
fn pid_alive(pid_file: &Path) -> bool {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .is_some_and(|pid| {
            pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn starts_with_acls_on_and_keeps_its_password_across_restarts() {
        let tmp = tempfile::Builder::new()
            .prefix("hangar-redis-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("redis");
        let r = PrivateRedis::start(&dir).await.unwrap();
        // The default user is off: an unauthenticated client is refused.
        let anon = redis::Client::open(format!("redis://127.0.0.1:{}/0", r.port())).unwrap();
        let mut conn = anon.get_multiplexed_async_connection().await.unwrap();
        let err = redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .unwrap_err();
        let msg = err.to_string().to_ascii_uppercase();
        assert!(msg.contains("NOAUTH") || msg.contains("NOPERM"), "{err}");
        let url = r.admin_url().expose_secret().to_owned();
        r.stop().await.unwrap();
        let again = PrivateRedis::start(&dir).await.unwrap();
        assert_eq!(
            again.admin_url().expose_secret().split('@').next(),
            url.split('@').next(),
            "same admin password"
        );
        // Its owner killed before it could stop it: the next start takes it over as it is.
        let pid = std::fs::read_to_string(dir.join("redis.pid")).unwrap();
        let taken = PrivateRedis::start(&dir).await.unwrap();
        assert_eq!(taken.port(), again.port());
        assert_eq!(std::fs::read_to_string(dir.join("redis.pid")).unwrap(), pid);
        taken.ping().await.unwrap();
        taken.stop().await.unwrap();
        assert!(!pid_alive(&dir.join("redis.pid")));
    }
}

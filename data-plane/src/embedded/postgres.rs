//! A private PostgreSQL 15 server: `initdb` (SCRAM passwords) into a directory of its own, then
//! `pg_ctl start` on a free loopback port with its socket in that directory. Starting again on
//! the same directory reuses the cluster and its password. `initdb` refuses to run as root, so
//! as root the server runs as the `postgres` system user (present wherever the Debian package is).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

use super::free_port;

/// Where Debian's postgresql-15 package puts the server binaries (not on PATH).
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser of a private cluster.
pub const SUPERUSER: &str = "hangar";

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL server binaries not found in {0}: install postgresql-15 (scripts/bootstrap does)")]
    MissingBinaries(PathBuf),
    #[error("failed to prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("running as root, but there is no `postgres` system user to run the server as")]
    NoServiceUser,
    #[error("the postgres user cannot reach {dir}: {blocked} is not searchable by others (chmod o+x it, or choose a directory elsewhere)")]
    Unreachable { dir: PathBuf, blocked: PathBuf },
    #[error("failed to configure the private Postgres")]
    Configure(#[source] sqlx::Error),
}

/// A running private server.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: SecretString,
    run_as: Option<(u32, u32)>,
}

fn prepare(path: &Path) -> impl Fn(std::io::Error) -> PostgresError + '_ {
    move |source| PostgresError::Prepare {
        path: path.to_owned(),
        source,
    }
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
impl PrivatePostgres {
    /// A server in a new folder under `/tmp` named `prefix…` (which environment users can pass
    /// through), kept as long as the folder is: for tests.
    pub(crate) async fn in_temp_dir(prefix: &str) -> (tempfile::TempDir, Self) {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .expect("a folder in /tmp");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("the folder's mode");
        let pg = Self::start(&tmp.path().join("pg"))
            .await
            .expect("a private Postgres");
        (tmp, pg)
    }
}

impl PrivatePostgres {
    /// Starts the server whose files live in `dir` (created if needed), initialising the
    /// cluster on first use.
    pub async fn start(dir: &Path) -> Result<Self, PostgresError> {
        Self::start_with(dir, Path::new(DEFAULT_BIN_DIR)).await
    }

    pub async fn start_with(dir: &Path, bin: &Path) -> Result<Self, PostgresError> {
        if !bin.join("initdb").exists() {
            return Err(PostgresError::MissingBinaries(bin.to_owned()));
        }
        let run_as = if is_root() {
            Some(postgres_user().ok_or(PostgresError::NoServiceUser)?)
        } else {
            None
        };
        std::fs::create_dir_all(dir).map_err(prepare(dir))?;
        let dir = &std::fs::canonicalize(dir).map_err(prepare(dir))?;
        if run_as.is_some() {
            if let Some(blocked) = super::unsearchable_ancestor(dir) {
                return Err(PostgresError::Unreachable {
                    dir: dir.to_owned(),
                    blocked,
                });
            }
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(prepare(dir))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(prepare(dir))?;
        }
        let pw_path = dir.join("password");
        let data = dir.join("data");
        let password = if data.join("PG_VERSION").exists() {
            std::fs::read_to_string(&pw_path)
                .map_err(prepare(&pw_path))?
                .trim()
                .to_owned()
        } else {
            let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
            std::fs::write(&pw_path, format!("{password}\n")).map_err(prepare(&pw_path))?;
            std::fs::set_permissions(&pw_path, std::fs::Permissions::from_mode(0o600))
                .map_err(prepare(&pw_path))?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(&pw_path, Some(uid), Some(gid))
                    .map_err(prepare(&pw_path))?;
            }
            let pwfile = format!("--pwfile={}", pw_path.display());
            let datadir = data.display().to_string();
            run(
                bin.join("initdb"),
                &[
                    "-D",
                    &datadir,
                    "-U",
                    SUPERUSER,
                    &pwfile,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                run_as,
            )
            .await?;
            password
        };
        // A server a previous run left running on this directory (one killed before it could
        // stop it) is taken over as it is: the environments connected to it keep their
        // connections, and its port stays theirs.
        if let Some(port) = running_port(bin, &data, run_as).await {
            tracing::info!(dir = %dir.display(), port, "took over the private Postgres a previous run left running");
            return Ok(Self {
                dir: dir.to_owned(),
                bin: bin.to_owned(),
                port,
                password: SecretString::from(password),
                run_as,
            });
        }
        let port = free_port().map_err(prepare(dir))?;
        let pg = Self {
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            port,
            password: SecretString::from(password),
            run_as,
        };
        // Settings for a local platform database: loopback only, many connections (every
        // environment's components hold some), durability relaxed only where noted by callers.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=500 -c shared_buffers=128MB",
            dir.display()
        );
        let log = dir.join("server.log").display().to_string();
        run(
            bin.join("pg_ctl"),
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            run_as,
        )
        .await?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Turns TLS on with the certificate `cert_pem` and its key `key_pem`, and from then on
    /// refuses every TCP connection without it: a server like the managed ones that require
    /// TLS, for testing the clients. Connect with `?sslmode=require` afterwards.
    pub async fn require_tls(&self, cert_pem: &str, key_pem: &str) -> Result<(), PostgresError> {
        use sqlx::Connection;
        let data = self.dir.join("data");
        let (cert, key) = (data.join("hangar-tls.crt"), data.join("hangar-tls.key"));
        for (path, text) in [(&cert, cert_pem), (&key, key_pem)] {
            std::fs::write(path, text).map_err(prepare(path))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(prepare(path))?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(prepare(path))?;
            }
        }
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).map_err(prepare(&hba))?;
        let tls_only: String = rules
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, tls_only).map_err(prepare(&hba))?;
        let mut conn = sqlx::PgConnection::connect(self.url("postgres").expose_secret())
            .await
            .map_err(PostgresError::Configure)?;
        for sql in [
            "ALTER SYSTEM SET ssl = on".to_owned(),
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            sqlx::query(&sql)
                .execute(&mut conn)
                .await
                .map_err(PostgresError::Configure)?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// A URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> SecretString {
        SecretString::from(format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password.expose_secret(),
            self.port
        ))
    }

    /// Stops the server (fast shutdown: connections are closed, data is kept).
    pub async fn stop(&self) -> Result<(), PostgresError> {
        let data = self.dir.join("data").display().to_string();
        run(
            self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "fast", "-w", "stop"],
            self.run_as,
        )
        .await?;
        Ok(())
    }

    /// Restarts the server on the same port and settings (fast shutdown: every connection is
    /// closed, data is kept); returns once it accepts connections again.
    pub async fn restart(&self) -> Result<(), PostgresError> {
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        run(
            self.bin.join("pg_ctl"),
            &[
                "-D", &data, "-l", &log, "-m", "fast", "-w", "-t", "60", "restart",
            ],
            self.run_as,
        )
        .await?;
        Ok(())
    }

    /// Arranges for the server to be stopped and its directory removed once process `pid`
    /// exits: for test harnesses whose statics are never dropped.
    pub fn stop_and_remove_after(&self, pid: u32) -> Result<(), PostgresError> {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.dir.join("data").display().to_string();
        let stop = match self.run_as {
            Some(_) => format!("runuser -u postgres -- {pg_ctl} -D {data} -m immediate stop"),
            None => format!("{pg_ctl} -D {data} -m immediate stop"),
        };
        super::run_after_exit(
            pid,
            &format!("{stop} >/dev/null 2>&1; rm -rf {}", self.dir.display()),
        )
        .map_err(|source| PostgresError::Spawn {
            program: "setsid".to_owned(),
            source,
        })?;
        Ok(())
    }
}

/// The port of the server running on `data`, if one does (`pg_ctl status`, then the port
/// line of its `postmaster.pid`).
async fn running_port(bin: &Path, data: &Path, run_as: Option<(u32, u32)>) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let datadir = data.display().to_string();
    run(bin.join("pg_ctl"), &["-D", &datadir, "status"], run_as)
        .await
        .ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
}

async fn run(
    program: PathBuf,
    args: &[&str],
    run_as: Option<(u32, u32)>,
) -> Result<(), PostgresError> {
    let name = program.display().to_string();
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
        // The server must not inherit root's home as its working directory.
        cmd.current_dir("/tmp");
    }
    let out = cmd.output().await.map_err(|source| PostgresError::Spawn {
        program: name.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(PostgresError::Failed {
            program: name,
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn starts_stops_and_restarts_on_the_same_directory() {
        let tmp = tempfile::Builder::new()
            .prefix("hangar-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        // The server may run as another user, who must be able to reach its directory.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tmp.path().join("pg");
        let pg = PrivatePostgres::start(&dir).await.unwrap();
        let first_password = std::fs::read_to_string(dir.join("password")).unwrap();
        pg.stop().await.unwrap();
        let again = PrivatePostgres::start(&dir).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("password")).unwrap(),
            first_password
        );
        let conn = std::net::TcpStream::connect(("127.0.0.1", again.port()));
        assert!(conn.is_ok(), "server answers on its port");
        // Its owner killed before it could stop it: the next start takes it over as it is.
        let pid = std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap();
        let taken = PrivatePostgres::start(&dir).await.unwrap();
        assert_eq!(taken.port(), again.port());
        assert_eq!(
            std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap(),
            pid,
            "the same server"
        );
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(taken.url("postgres").expose_secret())
            .await
            .unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(one, 1);
        db.close().await.unwrap();
        taken.stop().await.unwrap();
        assert!(!dir.join("data/postmaster.pid").exists());
    }
}

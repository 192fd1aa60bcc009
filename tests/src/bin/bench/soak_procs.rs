//! The soak's platform processes: the control plane (`hangar serve`) and the agent
//! (`hangar agent`) of this build run as child processes, so that their memory and open
//! descriptors are their own and not the benchmark's; what /proc says of them; and what is
//! left on the machine once every environment is deleted and the agent stopped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use hangar_client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use secrecy::ExposeSecret;

/// The platform admin token of the soak's control plane.
const ADMIN_TOKEN: &str = "soak-platform-admin-token-0000000";

/// A platform process of this build, killed if the benchmark drops it (fails) before
/// stopping it.
pub struct Platform {
    name: &'static str,
    child: tokio::process::Child,
    pid: u32,
    pub log: PathBuf,
}

impl Platform {
    fn spawn(
        name: &'static str,
        args: &[&str],
        envs: &[(&str, String)],
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        let child = tokio::process::Command::new(hangar_tests::hangar_bin())
            .args(args)
            .envs(envs.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start the {name}"))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the {name} exited at once"))?;
        Ok(Self {
            name,
            child,
            pid,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Some(how it ended)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| format!("{s}; see {}", self.log.display()))
    }

    /// SIGTERM, as an operator stops it, then up to `grace` for it to exit: how it exited, or
    /// `None` when it had to be killed.
    pub async fn stop(
        mut self,
        grace: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let pid = Pid::from_raw(i32::try_from(self.pid)?);
        kill(pid, Signal::SIGTERM)
            .with_context(|| format!("failed to signal the {}", self.name))?;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => {
                self.child.kill().await?;
                Ok(None)
            }
        }
    }
}

/// `hangar serve` on a fresh database of the stack's Postgres and a free port, with the
/// stack's bucket; returns it once `/healthz` answers, with a platform admin's client.
pub async fn start_control_plane(
    stack: &hangar_tests::Stack,
    logs: &Path,
) -> anyhow::Result<(Platform, String, Client)> {
    let database = hangar_tests::fresh_database().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let mut cp = Platform::spawn(
        "control-plane",
        &["serve"],
        &[
            ("HANGAR_DATABASE_URL", database),
            ("HANGAR_LISTEN", format!("127.0.0.1:{port}")),
            ("HANGAR_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            (
                "HANGAR_MASTER_KEY",
                hangar_control_plane::secrets::MasterKey::generate(),
            ),
            (
                "HANGAR_BUCKET_URL",
                format!("file://{}", stack.bucket.display()),
            ),
        ],
        logs,
    )?;
    let admin = hangar_tests::client(&address, Some(ADMIN_TOKEN));
    let start = Instant::now();
    while admin.healthz().await.is_err() {
        if let Some(how) = cp.exited() {
            anyhow::bail!("hangar serve exited: {how}");
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "hangar serve did not answer in 60 s; see {}",
            cp.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((cp, address, admin))
}

/// `hangar agent` for the cell `local` with the process runtime on the stack's folder,
/// Postgres, Redis, bucket and cgroup parent (as `start_agent_with` in the end-to-end tests),
/// otherwise as shipped (2 s tick, 60 s scale-down cooldown, the machine's slots).
pub fn start_agent(
    stack: &hangar_tests::Stack,
    address: &str,
    cell_token: &str,
    logs: &Path,
) -> anyhow::Result<Platform> {
    Platform::spawn(
        "agent",
        &["agent"],
        &[
            ("HANGAR_URL", address.to_owned()),
            ("HANGAR_CELL", "local".to_owned()),
            ("HANGAR_CELL_TOKEN", cell_token.to_owned()),
            ("HANGAR_AGENT_DIR", stack.dir.display().to_string()),
            ("HANGAR_CGROUP_PARENT", stack.cgroup_parent.clone()),
            ("HANGAR_PLATFORM_POSTGRES_URL", stack.postgres_admin.clone()),
            (
                "HANGAR_PLATFORM_REDIS_URL",
                stack.redis_admin.expose_secret().to_owned(),
            ),
            (
                "HANGAR_BUCKET_URL",
                format!("file://{}", stack.bucket.display()),
            ),
        ],
        logs,
    )
}

/// Kills `platform` once this benchmark has exited, whatever happened (a failure drops and
/// kills them; this covers an exit that skips the drops), each only if it is still this
/// build's `hangar`.
pub fn kill_after_exit(platform: &[&Platform]) -> anyhow::Result<()> {
    let bin = hangar_tests::hangar_bin();
    let pids: Vec<String> = platform.iter().map(|p| p.pid.to_string()).collect();
    hangar_data_plane::embedded::run_after_exit(
        std::process::id(),
        &format!(
            "for p in {}; do [ \"$(readlink /proc/$p/exe)\" = \"{}\" ] && kill -9 $p; done",
            pids.join(" "),
            bin.display()
        ),
    )?;
    Ok(())
}

/// A process's resident memory, open file descriptors and threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_kb: u64,
    pub fds: u64,
    pub threads: u64,
}

impl Usage {
    pub fn rss_mb(&self) -> f64 {
        (self.rss_kb as f64 / 1024.0 * 10.0).round() / 10.0
    }
}

/// `pid`'s usage from /proc (zero when it is gone).
pub fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Usage {
        rss_kb: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
    }
}

/// Whether `pid` is running (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// Running processes whose command line mentions `dir` or whose working directory is under
/// it: the environments' processes (Airflow's components, workers, tasks) — except what the
/// benchmark's stack runs there itself: the platform's Redis (its `redis/redis.pid`) and the
/// shells that clean up after the benchmark (`run_after_exit`).
pub fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let redis: Option<u32> = std::fs::read_to_string(dir.join("redis/redis.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let watcher = format!("sh -c while kill -0 {} ", std::process::id());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Some(*pid) != redis && alive(*pid))
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let under = cmd.contains(&needle) || cwd.starts_with(dir);
            (under && !cmd.starts_with(&watcher)).then_some((pid, cmd.trim().to_owned()))
        })
        .collect()
}

/// What the environments left on the machine after they were deleted and the agent stopped.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Processes under the stack's folder ([`processes_under`]).
    pub processes: Vec<(u32, String)>,
    /// Processes still in an environment's cgroup (any hierarchy) under the cell's parent.
    pub in_cgroups: usize,
    /// Environments' Unix users (a home under the stack's folder) still there.
    pub users: usize,
}

pub fn leftovers(dir: &Path, cgroup_parent: &str) -> Leftovers {
    let mut pids = BTreeSet::new();
    let roots = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    for root in std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(roots) {
        let mut todo = vec![root.join(cgroup_parent)];
        while let Some(group) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&group) else {
                continue;
            };
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                todo.push(e.path());
            }
            let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    let prefix = format!("{}/", dir.display());
    let users = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(':').nth(5).is_some_and(|h| h.starts_with(&prefix)))
        .count();
    Leftovers {
        processes: processes_under(dir),
        in_cgroups: pids.into_iter().filter(|p| alive(*p)).count(),
        users,
    }
}

//! Tenant isolation on the process runtime. Tenants run hostile code by design (their DAGs), so
//! every process of an environment — its Airflow components, the tasks they start, its CLI
//! commands — is confined before it runs:
//! - as the environment's own Unix user and group, no supplementary groups ([`users`]): other
//!   environments' processes (`/proc/<pid>/environ`, signals) and files (`0700`/`0600`) are
//!   the kernel's business to refuse;
//! - in the environment's cgroups with the memory, CPU weight and process limits of its class
//!   ([`cgroups`]);
//! - under a Landlock ruleset: it may write only its own logs and scratch folders and read only
//!   its own folder, its Python runtime and the system's files ([`exec`]).
//!
//! The agent must be root to do this. Without root it refuses the process runtime unless
//! `HANGAR_INSECURE_SINGLE_USER=true` (a laptop with one tenant): then the environments run as
//! the agent's user and the cell reports itself not isolated. Whatever cannot be enforced on
//! this machine (no cgroup controllers, a kernel without Landlock) is reported with the cell.

pub mod cgroups;
pub mod exec;
pub mod users;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hangar_tenants::api::CellIsolation;
use uuid::Uuid;

use cgroups::{Cgroups, Limits};
use exec::ExecArgs;

/// The variable that lets a non-root agent run environments as itself.
pub const INSECURE_SINGLE_USER: &str = "HANGAR_INSECURE_SINGLE_USER";

/// The system folders an environment's processes may read (and execute from), besides its own
/// folder and its Python runtime.
const SYSTEM_READ: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys",
];
/// Besides its logs and scratch folders, what an environment's processes may write: devices
/// (`/dev/null`, and `/dev/shm` for the semaphores of Celery's worker pool), still subject to
/// their permissions.
const SYSTEM_WRITE: &[&str] = &["/dev"];

#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The `hangar` binary, whose `sandbox-exec` confines each process.
    pub program: PathBuf,
    /// `HANGAR_INSECURE_SINGLE_USER`: accept running without root (no per-environment users).
    pub insecure_single_user: bool,
    /// The cell's parent cgroup (one per cell on a machine).
    pub cgroup_parent: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the process runtime isolates tenants with one Unix user per environment, which needs \
         the agent to run as root; run it as root, or set {INSECURE_SINGLE_USER}=true to run \
         every environment as this user (fit only for a single trusted tenant)"
    )]
    NotRoot,
    #[error(transparent)]
    User(#[from] users::UserError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error("failed to prepare {path} for its environment")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How this cell confines environments, found once at start-up.
#[derive(Debug, Clone)]
pub struct Sandbox {
    program: PathBuf,
    users: bool,
    cgroups: Option<Cgroups>,
    landlock: bool,
    private_proc: bool,
    report: CellIsolation,
    /// The user database takes one change at a time.
    user_lock: Arc<tokio::sync::Mutex<()>>,
}

/// How one environment's processes are confined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// The `hangar` binary whose `sandbox-exec` is put before every program (none: run it as
    /// it is), and its arguments.
    program: Option<PathBuf>,
    args: ExecArgs,
    /// The environment's folder, readable by its components.
    home: PathBuf,
    owner: Option<(u32, u32)>,
    /// The environment's memory group on cgroup v1, under which a task of the task pool gets
    /// a group of its own ([`Confinement::for_task`]).
    v1_memory_group: Option<PathBuf>,
}

impl Confinement {
    /// The command line that runs `argv` confined.
    pub fn wrap(&self, argv: &[String]) -> Vec<String> {
        let Some(program) = &self.program else {
            return argv.to_vec();
        };
        [program.display().to_string(), "sandbox-exec".to_owned()]
            .into_iter()
            .chain(self.args.to_args())
            .chain(argv.iter().cloned())
            .collect()
    }

    /// The environment's user and group, when it has its own.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Where [`Self::for_task`] puts task `name`'s memory group (cgroup v1 only).
    pub fn task_group_path(&self, name: &str) -> Option<PathBuf> {
        self.v1_memory_group
            .as_ref()
            .map(|g| g.join(format!("task-{name}")))
    }

    /// The confinement of one task of the task pool, `name`:
    /// - it may read, of the environment's folder, only `readable` (its DAGs, plugins, its
    ///   workload and settings without secrets), never the environment's secrets
    ///   (`airflow.cfg`, the UI's passwords) that its components read; being in a Landlock
    ///   domain of its own, it cannot trace them or read their memory either;
    /// - on cgroup v1, it gets a memory group of its own, `task-<name>` under the environment's
    ///   (which it still counts against), limited to `memory_bytes`, so a task that exceeds it
    ///   is killed alone. On v2 the environment's group holds its components' processes and
    ///   cannot have children with controllers (the "no internal processes" rule): the task
    ///   runs in the environment's group.
    ///
    /// Returns the confinement and the task's memory group, if it has one.
    pub fn for_task(
        &self,
        name: &str,
        readable: &[PathBuf],
        memory_bytes: u64,
    ) -> Result<(Confinement, Option<PathBuf>), cgroups::CgroupError> {
        let mut task = self.clone();
        task.v1_memory_group = None;
        task.args.read.retain(|p| *p != self.home);
        task.args.read.extend(readable.iter().cloned());
        // Of the environment's folder it writes only its logs and scratch folders (not the
        // files its components may write).
        let (logs, scratch) = (self.home.join("logs"), self.home.join("tmp"));
        task.args
            .write
            .retain(|p| !p.starts_with(&self.home) || *p == logs || *p == scratch);
        let group = match (&self.v1_memory_group, self.task_group_path(name)) {
            (Some(env_group), Some(group)) => {
                cgroups::make_memory_group(&group, memory_bytes)?;
                for g in &mut task.args.cgroups {
                    if g == env_group {
                        g.clone_from(&group);
                    }
                }
                Some(group)
            }
            _ => None,
        };
        Ok((task, group))
    }
}

fn files(path: &Path) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Files {
        path: path.to_owned(),
        source,
    }
}

/// Sets the owner and mode of `path`.
pub fn own(path: &Path, owner: Option<(u32, u32)>, mode: u32) -> Result<(), SandboxError> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(files(path))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(files(path))
}

impl Sandbox {
    /// Finds what this machine allows: refuses to run without root unless told to, makes the
    /// cell's parent cgroup, and asks the kernel how far it enforces Landlock.
    pub async fn probe(settings: &SandboxSettings) -> Result<Self, SandboxError> {
        let root = nix::unistd::geteuid().is_root();
        if !root && !settings.insecure_single_user {
            return Err(SandboxError::NotRoot);
        }
        let mut problems = Vec::new();
        if !root {
            problems.push(format!(
                "environments run as the agent's own user ({INSECURE_SINGLE_USER}=true): \
                 they can read each other's processes and files"
            ));
        }
        let cgroups = match Cgroups::detect(&settings.cgroup_parent) {
            Ok(c) => Some(c),
            Err(why) => {
                problems.push(format!("no memory, CPU or process limits: {why}"));
                None
            }
        };
        let probe = run_probe(&settings.program)
            .await
            .unwrap_or_else(|e| exec::Probe {
                landlock: Err(e.clone()),
                private_proc: Err(e),
            });
        let landlock = probe.landlock;
        match landlock.as_deref() {
            Ok("full") => {}
            Ok("partial") => problems.push(format!(
                "Landlock is only partly enforced (this kernel predates ABI {})",
                exec::LANDLOCK_ABI_NUMBER
            )),
            Ok(_) => problems.push(
                "no filesystem confinement: this kernel does not enforce Landlock".to_owned(),
            ),
            Err(e) => problems.push(format!("no filesystem confinement: {e}")),
        }
        let landlock_on = matches!(landlock.as_deref(), Ok("full" | "partial"));
        let private_proc = root && probe.private_proc.is_ok();
        if let (true, Err(e)) = (root, &probe.private_proc) {
            problems.push(format!(
                "environments can read every process's command line (no private /proc: {e})"
            ));
        }
        let report = CellIsolation {
            isolated: problems.is_empty(),
            users: root,
            cgroups: cgroups.as_ref().map(|c| c.version().label().to_owned()),
            landlock: (landlock.as_deref() == Ok("full")).then_some(exec::LANDLOCK_ABI_NUMBER),
            namespaces: false,
            problems,
        };
        for p in &report.problems {
            tracing::warn!(problem = %p, "tenant isolation is incomplete on this cell");
        }
        Ok(Self {
            program: settings.program.clone(),
            users: root,
            cgroups,
            landlock: landlock_on,
            private_proc,
            report,
            user_lock: Arc::default(),
        })
    }

    /// What the cell reports about its isolation.
    pub fn report(&self) -> CellIsolation {
        self.report.clone()
    }

    /// Whether environments run as users of their own.
    pub fn has_users(&self) -> bool {
        self.users
    }

    /// Makes the environment's user, folders and cgroups, and says how to confine its
    /// processes. `home` is made `root:<its group> 0750` (it reads, the agent writes), its
    /// `logs` and `tmp` its own `0700`; `runtime` is its Python runtime; `writable_files` are
    /// files in `home` its processes may also write (the agent writes them, as the environment's
    /// own, before they start).
    pub async fn prepare(
        &self,
        id: Uuid,
        home: &Path,
        runtime: &Path,
        writable_files: &[PathBuf],
        spec: &hangar_tenants::EnvironmentSpec,
    ) -> Result<Confinement, SandboxError> {
        let owner = if self.users {
            let _held = self.user_lock.lock().await;
            let u = users::ensure(id, home).await?;
            Some((u.uid, u.gid))
        } else {
            None
        };
        let logs = home.join("logs");
        let scratch = home.join("tmp");
        for dir in [home, &logs, &scratch] {
            std::fs::create_dir_all(dir).map_err(files(dir))?;
        }
        if let Some(parent) = home.parent() {
            // Environments may pass through the folder of all environments, not list it.
            own(parent, None, 0o711)?;
        }
        own(home, owner.map(|(_, gid)| (0, gid)), 0o750)?;
        own(&logs, owner, 0o700)?;
        own(&scratch, owner, 0o700)?;
        let cgroups = match &self.cgroups {
            Some(c) => c.ensure(id, Limits::for_environment(spec))?,
            None => Vec::new(),
        };
        let mut read = vec![home.to_owned(), runtime.to_owned()];
        read.extend(python_home(runtime));
        read.extend(SYSTEM_READ.iter().map(PathBuf::from));
        let mut write = vec![logs, scratch];
        write.extend(writable_files.iter().cloned());
        write.extend(SYSTEM_WRITE.iter().map(PathBuf::from));
        let args = ExecArgs {
            user: owner,
            private_proc: self.private_proc,
            cgroups,
            landlock: self.landlock,
            read,
            write,
            probe: false,
            command: Vec::new(),
        };
        let v1_memory_group = self
            .cgroups
            .as_ref()
            .filter(|c| c.version() == cgroups::Version::V1)
            .and_then(|_| {
                args.cgroups
                    .iter()
                    .find(|g| g.starts_with(Path::new(cgroups::ROOT).join("memory")))
                    .cloned()
            });
        Ok(Confinement {
            program: Some(self.program.clone()),
            args,
            home: home.to_owned(),
            owner,
            v1_memory_group,
        })
    }

    /// Kills every process of the environment still running, found by its cgroups and by its
    /// user: what outlives the supervisor's process groups (an Airflow task runner has a group
    /// of its own, and a task may `setsid`). Returns once none is left, or after about 5 s.
    pub async fn kill_all(&self, id: Uuid) {
        let uid = if self.users {
            nix::unistd::User::from_name(&users::user_name(id))
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        } else {
            None
        };
        for _ in 0..50 {
            let mut pids = self
                .cgroups
                .as_ref()
                .map(|c| c.processes(id))
                .unwrap_or_default();
            if let Some(uid) = uid {
                pids.extend(processes_of(uid));
            }
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::warn!(env = %id, "processes of the environment still run after being killed");
    }

    /// Removes the environment's user and cgroups once its supervised processes are stopped:
    /// first kills whatever of it still runs ([`Self::kill_all`]). Idempotent.
    pub async fn remove(&self, id: Uuid) -> Result<(), SandboxError> {
        self.kill_all(id).await;
        if let Some(c) = &self.cgroups {
            c.remove(id);
        }
        if self.users {
            let _held = self.user_lock.lock().await;
            users::remove(id).await?;
        }
        Ok(())
    }
}

/// The processes running as `uid` (from `/proc/<pid>/status`).
fn processes_of(uid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
                    line.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(uid)
        })
        .collect()
}

/// The installation of the interpreter a runtime's virtualenv runs on (its `pyvenv.cfg`
/// `home`, one folder up), which its processes must be able to read.
fn python_home(runtime: &Path) -> Option<PathBuf> {
    let cfg = std::fs::read_to_string(runtime.join("pyvenv.cfg")).ok()?;
    let home = cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "home").then(|| PathBuf::from(v.trim()))
    })?;
    Some(home.parent().map_or(home.clone(), Path::to_owned))
}

/// Runs `hangar sandbox-exec --probe` (it confines itself, so it runs as its own process).
async fn run_probe(program: &Path) -> Result<exec::Probe, String> {
    let out = tokio::process::Command::new(program)
        .args(["sandbox-exec", "--probe"])
        .env_clear()
        .output()
        .await
        .map_err(|e| format!("failed to run {} sandbox-exec: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} sandbox-exec --probe failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{} sandbox-exec --probe printed no probe ({e}): is it this version of hangar?",
            program.display()
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_interpreter_of_a_runtime_is_found_from_its_pyvenv_cfg() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pyvenv.cfg"),
            "home = /usr/bin\nimplementation = CPython\n",
        )
        .unwrap();
        assert_eq!(python_home(dir.path()), Some(PathBuf::from("/usr")));
    }

    /// On the machine's real hierarchies (as root): a process that left its parent's process
    /// group and session (as an Airflow task runner, or a task calling `setsid`, does) is still
    /// killed by its environment's cgroup.
    #[tokio::test]
    async fn killing_an_environment_reaches_what_left_its_process_groups() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let cgroups = Cgroups::detect(&format!("hangar-unit-kill-{}", std::process::id())).unwrap();
        let id = Uuid::new_v4();
        let limits = Limits {
            memory_bytes: 256 << 20,
            cpu_weight: 100,
            pids: 64,
        };
        let groups = cgroups.ensure(id, limits).unwrap();
        // A shell joins the groups, starts a `sleep` in a session of its own and exits.
        let joins: String = groups
            .iter()
            .map(|g| format!("echo $$ > {}/cgroup.procs; ", g.display()))
            .collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{joins}setsid sleep 600 >/dev/null 2>&1 & echo $!"))
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let running = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            })
        };
        let ours = nix::unistd::getsid(None).unwrap();
        let own_session = || {
            nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(
                i32::try_from(pid).unwrap(),
            )))
            .is_ok_and(|sid| sid != ours)
        };
        for _ in 0..100 {
            if own_session() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(running(pid), "the escaped sleep runs");
        assert!(
            own_session(),
            "it has a session (and process group) of its own"
        );
        assert_eq!(cgroups.processes(id), vec![pid]);

        let sandbox = Sandbox {
            program: PathBuf::new(),
            users: false,
            cgroups: Some(cgroups),
            landlock: false,
            private_proc: false,
            report: CellIsolation::default(),
            user_lock: Arc::default(),
        };
        sandbox.kill_all(id).await;
        assert!(!running(pid), "killed by its cgroup");
        sandbox.remove(id).await.unwrap();
        for g in &groups {
            assert!(!g.exists());
            std::fs::remove_dir(g.parent().unwrap()).unwrap();
        }
    }

    #[test]
    fn a_confinement_puts_sandbox_exec_before_the_program() {
        let c = Confinement {
            program: Some("hangar".into()),
            args: ExecArgs {
                user: Some((1000, 1000)),
                landlock: true,
                read: vec!["/envs/a".into(), "/usr".into()],
                write: vec!["/envs/a/logs".into(), "/envs/a/passwords".into()],
                ..ExecArgs::default()
            },
            home: "/envs/a".into(),
            owner: Some((1000, 1000)),
            v1_memory_group: None,
        };
        assert_eq!(
            c.wrap(&["airflow".into(), "scheduler".into()]),
            [
                "hangar",
                "sandbox-exec",
                "--uid",
                "1000",
                "--gid",
                "1000",
                "--landlock",
                "--read",
                "/envs/a",
                "--read",
                "/usr",
                "--write",
                "/envs/a/logs",
                "--write",
                "/envs/a/passwords",
                "--",
                "airflow",
                "scheduler"
            ]
        );
        assert_eq!(Confinement::default().wrap(&["x".into()]), ["x"]);
        // A task reads only what it is given of the environment's folder.
        let (task, group) = c
            .for_task("t", &["/envs/a/dags.d".into()], 1 << 29)
            .unwrap();
        assert_eq!(group, None);
        assert_eq!(
            task.wrap(&["python".into()])[7..14],
            [
                "--read",
                "/usr",
                "--read",
                "/envs/a/dags.d",
                "--write",
                "/envs/a/logs",
                "--"
            ]
        );
    }
}

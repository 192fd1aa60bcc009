//! Supervises the processes of one environment: starts each in its own process group (so an
//! agent that dies or is restarted does not take the environment down), captures its output in
//! its own log file, restarts it with exponential backoff when it exits, and re-adopts the
//! processes a previous agent left running.
//!
//! Each running process has a pid file `run/<name>.pid` holding its pid, its start time (from
//! `/proc/<pid>/stat`, so a recycled pid is never mistaken for it) and the hash of the spec it
//! was started from, so that applying a new revision restarts only the processes that changed.
//!
//! Stopping sends SIGTERM to the process group and SIGKILL to what is left after the grace.
//!
//! A worker that is replaced or no longer wanted is *retired* instead: SIGTERM to the worker
//! process alone, so it makes a Celery warm shutdown (it takes no new task and waits for the
//! running ones, whose own processes are not signalled), while its successor starts at once. It
//! drains in the background (`run/draining-<name>-<pid>.pid`, adopted by a restarted agent like
//! any other process) for as long as its tasks run, up to the drain limit, then its group is
//! killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hangar_tenants::blueprint::{ComponentKind, ProcessSpec};
use hangar_tenants::ComponentStatus;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A process that stayed up this long is considered healthy again: its backoff resets.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Restarts in a row after which the component is reported unhealthy.
const UNHEALTHY_AFTER: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("failed to prepare {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start {name} ({program})")]
    Spawn {
        name: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Identity of a process: pid and kernel start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    pub(crate) start_ticks: u64,
}

/// Start time of `pid` in clock ticks since boot, or `None` if it does not exist or is a zombie.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    // Field 22 overall is the 20th after the command name.
    fields.get(19)?.parse().ok()
}

pub(crate) fn alive(id: Identity) -> bool {
    start_ticks(id.pid) == Some(id.start_ticks)
}

/// Hash of everything that defines a process: a different hash means it must be restarted.
pub fn spec_hash(spec: &ProcessSpec) -> String {
    let mut h = Sha256::new();
    for a in &spec.argv {
        h.update(a.as_bytes());
        h.update([0]);
    }
    for (k, v) in &spec.env {
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    short_hex(&h.finalize())
}

/// The first 8 bytes of a digest, in hex: enough to tell versions of a spec apart.
pub(crate) fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
struct Managed {
    spec: ProcessSpec,
    hash: String,
    /// Running process, if any.
    running: Option<Identity>,
    /// Our child handle, when we started it (adopted processes have none); kept to reap it.
    child: Option<Child>,
    started_at: Instant,
    restarts_in_a_row: u32,
    restart_at: Option<Instant>,
    last_exit: Option<String>,
}

/// A retired worker finishing its running tasks.
#[derive(Debug)]
struct Draining {
    name: String,
    id: Identity,
    child: Option<Child>,
    /// When it gets SIGKILL if it is still running (wall clock, so it survives an agent restart).
    deadline: std::time::SystemTime,
    file: PathBuf,
}

/// The processes of one environment.
#[derive(Debug)]
pub struct Supervisor {
    run_dir: PathBuf,
    log_dir: PathBuf,
    procs: BTreeMap<String, Managed>,
    draining: Vec<Draining>,
    /// How long a retired worker may take to finish its tasks.
    drain_limit: Duration,
    /// How every process is confined (its user, cgroups, Landlock).
    confinement: crate::sandbox::Confinement,
}

/// The last word of a worker's pid file, so that a later agent that no longer wants it retires
/// it instead of stopping it.
const WORKER_MARK: &str = "worker";

/// How long a retired worker may take to finish its running tasks unless told otherwise.
pub const DEFAULT_DRAIN_LIMIT: Duration = Duration::from_secs(6 * 3600);

impl Supervisor {
    pub fn new(run_dir: &Path, log_dir: &Path) -> Self {
        Self {
            run_dir: run_dir.to_owned(),
            log_dir: log_dir.to_owned(),
            procs: BTreeMap::new(),
            draining: Vec::new(),
            drain_limit: DEFAULT_DRAIN_LIMIT,
            confinement: crate::sandbox::Confinement::default(),
        }
    }

    /// Starts every process from now on confined this way. It is not part of a process's
    /// spec hash: how the agent confines is its own business, not a reason to restart.
    pub fn set_confinement(&mut self, confinement: crate::sandbox::Confinement) {
        self.confinement = confinement;
    }

    /// Sets how long a retired worker may take to finish its running tasks.
    pub fn with_drain_limit(mut self, limit: Duration) -> Self {
        self.drain_limit = limit;
        self
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.pid"))
    }

    /// The log file of a component.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// A pid file's process if it still runs: (identity, spec hash).
    fn read_pid_file(&self, name: &str) -> Option<(Identity, String)> {
        let text = std::fs::read_to_string(self.pid_file(name)).ok()?;
        let mut parts = text.split_whitespace();
        let id = Identity {
            pid: parts.next()?.parse().ok()?,
            start_ticks: parts.next()?.parse().ok()?,
        };
        let hash = parts.next()?.to_owned();
        alive(id).then_some((id, hash))
    }

    /// Makes the supervised set equal `desired`: adopts what a previous agent left running
    /// with the same spec, starts what is missing, restarts what changed (stopping the old
    /// process first, within `grace`), and stops what is no longer wanted.
    pub async fn apply(
        &mut self,
        desired: &[ProcessSpec],
        grace: Duration,
    ) -> Result<(), SupervisorError> {
        for dir in [&self.run_dir, &self.log_dir] {
            std::fs::create_dir_all(dir).map_err(|source| SupervisorError::Files {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let wanted: Vec<&str> = desired.iter().map(|p| p.name.as_str()).collect();
        let extra: Vec<String> = self
            .procs
            .keys()
            .filter(|n| !wanted.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in extra {
            self.stop_or_retire(&name, grace).await;
            self.procs.remove(&name);
        }
        self.adopt_draining();
        self.stop_strays(&wanted, grace).await;
        // Processes of a previous agent that this one does not know yet.
        for spec in desired {
            if self.procs.contains_key(&spec.name) {
                continue;
            }
            if let Some((id, hash)) = self.read_pid_file(&spec.name) {
                if hash != spec_hash(spec) {
                    if spec.kind == ComponentKind::Worker {
                        self.retire(&spec.name, id, None);
                    } else {
                        stop_group(id, None, grace).await;
                    }
                } else {
                    tracing::info!(process = %spec.name, pid = id.pid, "adopted a running process");
                    self.procs.insert(
                        spec.name.clone(),
                        Managed {
                            hash,
                            spec: spec.clone(),
                            running: Some(id),
                            child: None,
                            started_at: Instant::now(),
                            restarts_in_a_row: 0,
                            restart_at: None,
                            last_exit: None,
                        },
                    );
                }
            }
        }
        for spec in desired {
            let hash = spec_hash(spec);
            let same = self.procs.get(&spec.name).is_some_and(|m| m.hash == hash);
            if same {
                continue;
            }
            if self.procs.contains_key(&spec.name) {
                self.stop_or_retire(&spec.name, grace).await;
            }
            self.procs.insert(
                spec.name.clone(),
                Managed {
                    spec: spec.clone(),
                    hash,
                    running: None,
                    child: None,
                    started_at: Instant::now(),
                    restarts_in_a_row: 0,
                    restart_at: None,
                    last_exit: None,
                },
            );
            self.start(&spec.name)?;
        }
        Ok(())
    }

    fn start(&mut self, name: &str) -> Result<(), SupervisorError> {
        let log = self.log_file(name);
        let pid_file = self.pid_file(name);
        let Some(m) = self.procs.get_mut(name) else {
            return Ok(());
        };
        let files = |path: &Path| {
            let path = path.to_owned();
            move |source| SupervisorError::Files { path, source }
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(files(&log))?;
        let err = out.try_clone().map_err(files(&log))?;
        let argv = self.confinement.wrap(&m.spec.argv);
        let program = argv.first().cloned().unwrap_or_default();
        let mut command = Command::new(&program);
        if let Some(home) = self.run_dir.parent() {
            command.current_dir(home);
        }
        let child = command
            .args(argv.iter().skip(1))
            .env_clear()
            .envs(inherited_env())
            .envs(&m.spec.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| SupervisorError::Spawn {
                name: name.to_owned(),
                program: program.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        let id = Identity {
            pid,
            start_ticks: start_ticks(pid).unwrap_or_default(),
        };
        let kind = if m.spec.kind == ComponentKind::Worker {
            WORKER_MARK
        } else {
            "component"
        };
        std::fs::write(
            &pid_file,
            format!("{} {} {} {kind}\n", id.pid, id.start_ticks, m.hash),
        )
        .map_err(files(&pid_file))?;
        tracing::info!(process = %name, pid, "started");
        m.running = Some(id);
        m.child = Some(child);
        m.started_at = Instant::now();
        m.restart_at = None;
        Ok(())
    }

    /// Notices exited processes and restarts them once their backoff has passed; returns the
    /// status of every component.
    pub fn tick(&mut self) -> Vec<ComponentStatus> {
        let now = Instant::now();
        let mut to_start = Vec::new();
        for (name, m) in &mut self.procs {
            if let Some(id) = m.running {
                let exited = match m.child.as_mut() {
                    Some(child) => match child.try_wait() {
                        Ok(Some(status)) => Some(status.to_string()),
                        Ok(None) => None,
                        Err(e) => Some(e.to_string()),
                    },
                    None => (!alive(id)).then(|| "exited (adopted; status unknown)".to_owned()),
                };
                if let Some(how) = exited {
                    if m.started_at.elapsed() >= STABLE_AFTER {
                        m.restarts_in_a_row = 0;
                    }
                    let backoff =
                        (MIN_BACKOFF * 2u32.saturating_pow(m.restarts_in_a_row)).min(MAX_BACKOFF);
                    tracing::warn!(process = %name, pid = id.pid, %how, ?backoff, "process exited; restarting");
                    m.restarts_in_a_row += 1;
                    m.last_exit = Some(how);
                    m.running = None;
                    m.child = None;
                    m.restart_at = Some(now + backoff);
                }
            } else if m.restart_at.is_some_and(|t| t <= now) {
                to_start.push(name.clone());
            }
            if m.running.is_some() && m.started_at.elapsed() >= STABLE_AFTER {
                m.restarts_in_a_row = 0;
            }
        }
        self.poll_draining();
        for name in to_start {
            if let Err(e) = self.start(&name) {
                tracing::warn!(process = %name, error = %e, "failed to restart");
                if let Some(m) = self.procs.get_mut(&name) {
                    m.last_exit = Some(e.to_string());
                    m.restart_at = Some(now + MAX_BACKOFF);
                }
            }
        }
        self.statuses()
    }

    pub fn statuses(&self) -> Vec<ComponentStatus> {
        let draining = self.draining.iter().map(|d| ComponentStatus {
            name: format!("{} (retired, pid {})", d.name, d.id.pid),
            healthy: true,
            message: Some(
                "finishing its running tasks (warm shutdown); it takes no new ones".to_owned(),
            ),
        });
        self.procs
            .iter()
            .map(|(name, m)| {
                let healthy = m.running.is_some() && m.restarts_in_a_row < UNHEALTHY_AFTER;
                let message = match (&m.running, &m.last_exit) {
                    (Some(_), _) if healthy => None,
                    (_, Some(exit)) => Some(format!(
                        "restarted {} times in a row; last exit: {exit}; log: {}",
                        m.restarts_in_a_row,
                        self.log_file(name).display()
                    )),
                    _ => Some("not running".to_owned()),
                };
                ComponentStatus {
                    name: name.clone(),
                    healthy,
                    message,
                }
            })
            .chain(draining)
            .collect()
    }

    /// The pids of the retired workers still finishing their tasks.
    pub fn draining_pids(&self) -> Vec<u32> {
        self.draining.iter().map(|d| d.id.pid).collect()
    }

    /// Stops a component, or retires it if it is a worker.
    async fn stop_or_retire(&mut self, name: &str, grace: Duration) {
        let is_worker = self
            .procs
            .get(name)
            .is_some_and(|m| m.spec.kind == ComponentKind::Worker);
        if !is_worker {
            return self.stop(name, grace).await;
        }
        let _ = std::fs::remove_file(self.pid_file(name));
        if let Some(m) = self.procs.get_mut(name) {
            m.restart_at = None;
            if let Some(id) = m.running.take() {
                let child = m.child.take();
                self.retire(name, id, child);
            }
        }
    }

    /// Sends a worker its warm-shutdown signal and leaves it draining in the background.
    fn retire(&mut self, name: &str, id: Identity, child: Option<Child>) {
        let deadline = std::time::SystemTime::now() + self.drain_limit;
        let file = self.run_dir.join(format!("draining-{name}-{}.pid", id.pid));
        let secs = deadline
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Err(e) = std::fs::write(&file, format!("{} {} {secs}\n", id.pid, id.start_ticks)) {
            tracing::warn!(process = %name, error = %e, "failed to record a retired worker");
        }
        let _ = std::fs::remove_file(self.pid_file(name));
        let _ = kill(pid_of(id), Signal::SIGTERM);
        tracing::info!(process = %name, pid = id.pid, "retired; finishing its running tasks");
        self.draining.push(Draining {
            name: name.to_owned(),
            id,
            child,
            deadline,
            file,
        });
    }

    /// Live processes with a pid file (left by this or a previous agent) whose name starts with
    /// `prefix`: a new agent's view of what runs before it has applied anything.
    pub fn live_pid_files(&self, prefix: &str) -> usize {
        self.pid_files()
            .into_iter()
            .filter(|n| n.starts_with(prefix) && self.read_pid_file(n).is_some())
            .count()
    }

    /// Names of the components with a pid file (not the draining ones).
    fn pid_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let f = e.file_name().to_string_lossy().into_owned();
                let name = f.strip_suffix(".pid")?;
                (!name.starts_with("draining-")).then(|| name.to_owned())
            })
            .collect()
    }

    /// Processes a previous agent started that are no longer wanted (say, workers it had
    /// scaled up): workers are retired (they finish their tasks), anything else is stopped.
    async fn stop_strays(&mut self, wanted: &[&str], grace: Duration) {
        for name in self.pid_files() {
            if wanted.contains(&name.as_str()) || self.procs.contains_key(&name) {
                continue;
            }
            let is_worker = std::fs::read_to_string(self.pid_file(&name))
                .is_ok_and(|t| t.split_whitespace().nth(3) == Some(WORKER_MARK));
            match self.read_pid_file(&name) {
                Some((id, _)) if is_worker => self.retire(&name, id, None),
                Some((id, _)) => {
                    tracing::info!(process = %name, pid = id.pid, "stopping a process no longer wanted");
                    stop_group(id, None, grace).await;
                    let _ = std::fs::remove_file(self.pid_file(&name));
                }
                None => {
                    let _ = std::fs::remove_file(self.pid_file(&name));
                }
            }
        }
    }

    /// Takes over the retired workers a previous agent left draining.
    fn adopt_draining(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.path();
            let fname = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = fname
                .strip_prefix("draining-")
                .and_then(|r| r.strip_suffix(".pid"))
            else {
                continue;
            };
            if self.draining.iter().any(|d| d.file == file) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let nums: Vec<u64> = text
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            let (Some(&pid), Some(&start_ticks), Some(&deadline)) =
                (nums.first(), nums.get(1), nums.get(2))
            else {
                let _ = std::fs::remove_file(&file);
                continue;
            };
            let id = Identity {
                pid: u32::try_from(pid).unwrap_or(0),
                start_ticks,
            };
            if !alive(id) {
                let _ = std::fs::remove_file(&file);
                continue;
            }
            let name = rest.rsplit_once('-').map_or(rest, |(n, _)| n).to_owned();
            self.draining.push(Draining {
                name,
                id,
                child: None,
                deadline: std::time::UNIX_EPOCH + Duration::from_secs(deadline),
                file,
            });
        }
    }

    /// Forgets retired workers that finished, and kills those past the drain limit.
    fn poll_draining(&mut self) {
        let now = std::time::SystemTime::now();
        self.draining.retain_mut(|d| {
            let gone = match d.child.as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => !alive(d.id),
            };
            if gone {
                tracing::info!(process = %d.name, pid = d.id.pid, "retired worker finished");
            } else if now >= d.deadline {
                tracing::warn!(process = %d.name, pid = d.id.pid, "retired worker passed the drain limit; killed");
            } else {
                return true;
            }
            let _ = killpg(pid_of(d.id), Signal::SIGKILL);
            if let Some(c) = d.child.as_mut() {
                let _ = c.try_wait();
            }
            let _ = std::fs::remove_file(&d.file);
            false
        });
    }

    /// The pid of a running component.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.get(name)?.running.map(|id| id.pid)
    }

    /// Stops one component: SIGTERM to its process group, SIGKILL after `grace`.
    pub async fn stop(&mut self, name: &str, grace: Duration) {
        let pid_file = self.pid_file(name);
        if let Some(m) = self.procs.get_mut(name) {
            if let Some(id) = m.running.take() {
                stop_group(id, m.child.take(), grace).await;
            }
            m.child = None;
            m.restart_at = None;
        }
        let _ = std::fs::remove_file(pid_file);
    }

    /// Stops every component at once (SIGTERM to all, then SIGKILL to what is left after
    /// `grace`), so stopping takes as long as the slowest component, not the sum.
    pub async fn stop_all(&mut self, grace: Duration) {
        self.adopt_draining();
        let mut stopping = Vec::new();
        for (name, m) in &mut self.procs {
            if let Some(id) = m.running.take() {
                stopping.push(stop_group(id, m.child.take(), grace));
            }
            let _ = std::fs::remove_file(self.run_dir.join(format!("{name}.pid")));
        }
        for d in self.draining.drain(..) {
            let _ = std::fs::remove_file(&d.file);
            stopping.push(stop_group(d.id, d.child, grace));
        }
        futures::future::join_all(stopping).await;
        self.procs.clear();
    }

    /// Forgets the processes without stopping them (they keep running for the next agent).
    pub fn detach(&mut self) {
        self.procs.clear();
        self.draining.clear();
    }
}

pub(crate) fn pid_of(id: Identity) -> Pid {
    Pid::from_raw(i32::try_from(id.pid).unwrap_or(i32::MAX))
}

async fn stop_group(id: Identity, mut child: Option<Child>, grace: Duration) {
    let group = pid_of(id);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        let gone = match child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => !alive(id),
        };
        if gone {
            // The leader is gone; make sure nothing else of its group stays behind.
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
        if Instant::now() >= deadline {
            let _ = killpg(group, Signal::SIGKILL);
            if let Some(c) = child.as_mut() {
                let _ = c.wait().await;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a component inherits from the agent's environment: only the basics a process needs.
pub(crate) fn inherited_env() -> Vec<(String, String)> {
    [
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "HOME",
        "TMPDIR",
        "PYTHONDONTWRITEBYTECODE",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
    .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use hangar_tenants::blueprint::ComponentKind;

    fn sh(name: &str, script: &str) -> ProcessSpec {
        ProcessSpec {
            name: name.to_owned(),
            kind: ComponentKind::Scheduler,
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("MARK".to_owned(), name.to_owned())]),
        }
    }

    fn worker(name: &str, script: &str) -> ProcessSpec {
        ProcessSpec {
            kind: ComponentKind::Worker,
            ..sh(name, script)
        }
    }

    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (r, l) = (t.path().join("run"), t.path().join("logs"));
        (t, r, l)
    }

    async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..100 {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn runs_processes_with_their_env_and_captures_their_output() {
        let (_t, run, logs) = dirs();
        let mut s = Supervisor::new(&run, &logs);
        s.apply(
            &[sh("a", "echo hello $MARK; sleep 30")],
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert!(
            wait_until(|| std::fs::read_to_string(logs.join("a.log"))
                .unwrap_or_default()
                .contains("hello a"))
            .await
        );
        assert!(s.tick().iter().all(|c| c.healthy));
        s.stop_all(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_killed_process_is_restarted_and_a_crash_loop_turns_unhealthy() {
        let (_t, run, logs) = dirs();
        let mut s = Supervisor::new(&run, &logs);
        s.apply(
            &[sh("steady", "sleep 30"), sh("crashy", "exit 3")],
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let first = s.pid("steady").unwrap();
        nix::sys::signal::kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
        assert!(
            wait_until(|| {
                s.tick();
                s.pid("steady").is_some_and(|p| p != first)
            })
            .await,
            "restarted after kill -9"
        );
        // crashy exits at once every time: after three restarts in a row it is unhealthy.
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let st = s.tick();
                let c = st.iter().find(|c| c.name == "crashy").unwrap().clone();
                if !c.healthy
                    && c.message
                        .as_deref()
                        .unwrap_or("")
                        .contains("exit status: 3")
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("crash loop reported");
        s.stop_all(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_new_supervisor_adopts_running_processes_and_restarts_only_changed_ones() {
        let (_t, run, logs) = dirs();
        let mut first = Supervisor::new(&run, &logs);
        let specs = [sh("keep", "sleep 60"), sh("change", "sleep 60")];
        first.apply(&specs, Duration::from_secs(2)).await.unwrap();
        let (keep, change) = (first.pid("keep").unwrap(), first.pid("change").unwrap());
        first.detach(); // the agent goes away; its processes stay

        let mut second = Supervisor::new(&run, &logs);
        let mut changed = specs.clone();
        changed[1].env.insert("NEW".into(), "1".into());
        second
            .apply(&changed, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(second.pid("keep"), Some(keep), "adopted, not restarted");
        assert_ne!(
            second.pid("change"),
            Some(change),
            "restarted with its new spec"
        );
        assert!(start_ticks(change).is_none(), "the old process was stopped");
        assert!(second.tick().iter().all(|c| c.healthy));

        // Removing a component stops it.
        second
            .apply(&changed[..1], Duration::from_secs(2))
            .await
            .unwrap();
        let gone = second.pid("change");
        assert!(gone.is_none());
        second.stop_all(Duration::from_secs(2)).await;
        assert!(start_ticks(keep).is_none());
    }

    #[tokio::test]
    async fn stop_kills_what_ignores_sigterm_after_the_grace() {
        let (_t, run, logs) = dirs();
        let mut s = Supervisor::new(&run, &logs);
        s.apply(
            &[sh("stubborn", "trap '' TERM; sleep 60 & wait")],
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let pid = s.pid("stubborn").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        s.stop("stubborn", Duration::from_millis(500)).await;
        assert!(t.elapsed() >= Duration::from_millis(450));
        assert!(start_ticks(pid).is_none());
    }

    /// A worker with a running "task" in its own child process: on SIGTERM it waits for the task.
    const WARM_WORKER: &str = "trap 'echo warm-shutdown; wait $task; echo drained; exit 0' TERM; \
        (sleep 2; echo task-finished $MARK) & task=$!; echo started; \
        while true; do sleep 0.1; done";

    #[tokio::test]
    async fn a_replaced_worker_finishes_its_task_while_its_successor_already_runs() {
        let (_t, run, logs) = dirs();
        let mut s = Supervisor::new(&run, &logs).with_drain_limit(Duration::from_secs(30));
        let v1 = worker("worker-0", WARM_WORKER);
        s.apply(std::slice::from_ref(&v1), Duration::from_secs(2))
            .await
            .unwrap();
        let old = s.pid("worker-0").unwrap();
        let log = logs.join("worker-0.log");
        assert!(
            wait_until(|| std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("started"))
            .await
        );

        let mut v2 = v1.clone();
        v2.env.insert("NEW".into(), "1".into());
        let t = Instant::now();
        s.apply(std::slice::from_ref(&v2), Duration::from_secs(2))
            .await
            .unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "the update did not wait for the old worker"
        );
        let new = s.pid("worker-0").unwrap();
        assert_ne!(new, old);
        assert_eq!(s.draining_pids(), vec![old]);
        assert!(s
            .tick()
            .iter()
            .any(|c| c.name == format!("worker-0 (retired, pid {old})") && c.healthy));

        // The old worker's task is not signalled: it finishes, then the worker exits by itself.
        assert!(
            wait_until(|| {
                s.tick();
                s.draining_pids().is_empty()
            })
            .await,
            "the retired worker drained"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("warm-shutdown"), "{text}");
        assert!(text.contains("task-finished worker-0"), "{text}");
        assert!(text.contains("drained"), "{text}");
        assert!(start_ticks(old).is_none());
        assert_eq!(s.pid("worker-0"), Some(new));
        assert!(std::fs::read_dir(&run)
            .unwrap()
            .flatten()
            .all(|f| !f.file_name().to_string_lossy().starts_with("draining-")));
        s.stop_all(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn a_retired_worker_is_adopted_by_the_next_agent_and_killed_at_the_drain_limit() {
        let (_t, run, logs) = dirs();
        let stubborn = worker("worker-0", "trap '' TERM; sleep 60 & wait");
        let mut first = Supervisor::new(&run, &logs).with_drain_limit(Duration::from_secs(1));
        first
            .apply(std::slice::from_ref(&stubborn), Duration::from_secs(2))
            .await
            .unwrap();
        let old = first.pid("worker-0").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.apply(&[], Duration::from_secs(2)).await.unwrap();
        assert_eq!(first.draining_pids(), vec![old]);
        first.detach();

        let mut second = Supervisor::new(&run, &logs);
        second.apply(&[], Duration::from_secs(2)).await.unwrap();
        assert_eq!(second.draining_pids(), vec![old], "adopted while draining");
        assert!(start_ticks(old).is_some(), "it ignores SIGTERM");
        tokio::time::timeout(Duration::from_secs(10), async {
            while !second.draining_pids().is_empty() {
                second.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("killed at the drain limit");
        assert!(wait_until(|| start_ticks(old).is_none()).await);
    }

    #[tokio::test]
    async fn a_new_agent_counts_and_winds_down_what_a_previous_one_left_running() {
        let (_t, run, logs) = dirs();
        let specs = [
            sh("scheduler-0", "sleep 60"),
            sh("scheduler-1", "sleep 60"),
            worker("worker-0", "sleep 60"),
            worker("worker-1", "trap 'sleep 1; exit 0' TERM; sleep 60 & wait"),
        ];
        let mut first = Supervisor::new(&run, &logs);
        first.apply(&specs, Duration::from_secs(2)).await.unwrap();
        let (extra, busy) = (
            first.pid("scheduler-1").unwrap(),
            first.pid("worker-1").unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.detach();

        let mut second = Supervisor::new(&run, &logs);
        assert_eq!(second.live_pid_files("worker-"), 2);
        second
            .apply(
                &[specs[0].clone(), specs[2].clone()],
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert!(start_ticks(extra).is_none(), "a stray component is stopped");
        assert_eq!(second.draining_pids(), vec![busy], "a stray worker drains");
        assert!(
            wait_until(|| {
                second.tick();
                second.draining_pids().is_empty()
            })
            .await
        );
        assert_eq!(second.live_pid_files("worker-"), 1);
        second.stop_all(Duration::from_secs(2)).await;
    }
}

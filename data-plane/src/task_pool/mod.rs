//! The cell's pool of task slots, for environments with the `hangar` executor: their
//! schedulers hand each queued task's workload to this pool (over a Unix socket per
//! environment, the environment user's alone), and the pool runs each task as a process of its
//! own in its environment's runtime, as its user and in its cgroups, when the environment's
//! fair share of the cell's slots has room ([`share`]). The unit of sharing is one task, not
//! a Celery worker: a slot is free again the moment a task ends.
//!
//! Nothing is lost with the agent: submitted tasks are on disk before the submit is answered,
//! task processes run in process groups of their own and are adopted by the next agent
//! ([`store`]), and a key once queued is never run twice.

mod env;
pub mod protocol;
pub mod share;
mod store;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::agent::supervise::{lock, supervise};
use crate::sandbox::Confinement;
use env::EnvTasks;
use protocol::Answer;
use share::Load;
use store::Store;

/// How often the pool looks at its tasks when nothing wakes it.
const TICK: Duration = Duration::from_millis(250);
/// How long one request may take to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Memory a task slot is budgeted at: a task's supervisor and task process (two Python
/// processes with Airflow's task SDK imported).
const TASK_SLOT_MEMORY_MIB: u64 = 512;

/// The process runtime's default number of task slots: four per core, no more than the memory
/// budget allows (`mem_total_mib` / 512 MiB), at least one.
pub fn default_task_slots(cores: usize, mem_total_mib: u64) -> u32 {
    let by_cores = u64::try_from(cores).unwrap_or(1).saturating_mul(4);
    let by_memory = mem_total_mib / TASK_SLOT_MEMORY_MIB;
    u32::try_from(by_cores.min(by_memory).max(1)).unwrap_or(u32::MAX)
}

/// [`default_task_slots`] of this machine.
pub fn machine_task_slots() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    default_task_slots(cores, crate::autoscaler::machine_memory_mib())
}

/// An environment's claim on the pool, from its spec: `min_workers` and `max_workers` times
/// its class's concurrency, as many task slots as its Celery workers would have had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub min_tasks: u32,
    pub max_tasks: u32,
    pub weight: u32,
}

impl Quota {
    pub fn for_environment(spec: &hangar_tenants::EnvironmentSpec) -> Self {
        let c = spec.worker_concurrency();
        Self {
            min_tasks: spec.min_workers.saturating_mul(c),
            max_tasks: spec.max_workers.max(spec.min_workers).saturating_mul(c),
            weight: spec.worker_weight.max(1),
        }
    }
}

/// How the pool runs one environment's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvTarget {
    pub id: Uuid,
    /// The environment's home: its tasks folder is `<home>/tasks`.
    pub home: PathBuf,
    /// Its runtime's interpreter.
    pub python: PathBuf,
    /// Its tasks' Airflow settings (without secrets).
    pub env: BTreeMap<String, String>,
    /// What its tasks may read of its home, besides their own workload file.
    pub readable: Vec<PathBuf>,
    /// Its components' confinement, from which each task's is made.
    pub confinement: Confinement,
    /// Where its executor connects.
    pub socket: PathBuf,
    /// Where the task processes' own output goes (the task logs themselves are Airflow's, in
    /// its logs folder).
    pub log_file: PathBuf,
    pub quota: Quota,
    /// The memory one task may use (cgroup v1: a group of its own under its environment's).
    pub task_memory_mib: u32,
}

/// The memory one task of an environment may use: its class's worker memory shared by the
/// tasks a worker runs (MWAA's budget per task), at least 512 MiB.
pub fn task_memory_mib(spec: &hangar_tenants::EnvironmentSpec) -> u32 {
    (spec.environment_class.worker_memory_mib() / spec.worker_concurrency().max(1)).max(512)
}

#[derive(Debug, thiserror::Error)]
pub enum TaskPoolError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("failed to listen on {path} for the environment's executor")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the pool holds now, for the cell's report and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub slots: u32,
    pub running: u32,
    pub queued: u32,
}

struct Member {
    tasks: EnvTasks,
    listener: CancellationToken,
}

struct Inner {
    slots: AtomicU32,
    members: Mutex<BTreeMap<Uuid, Member>>,
    wake: tokio::sync::Notify,
}

/// The cell's task pool; clones share it. Its loop runs while a clone is alive.
#[derive(Clone)]
pub struct TaskPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskPool")
            .field("usage", &self.usage())
            .finish()
    }
}

impl TaskPool {
    /// A pool of `slots` task slots; starts its loop (call within a Tokio runtime).
    pub fn start(slots: u32) -> Self {
        let inner = Arc::new(Inner {
            slots: AtomicU32::new(slots),
            members: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        });
        // Started again should it panic; it ends with the pool.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(supervise(
            "task pool".to_owned(),
            move || run(weak.clone()),
            CancellationToken::new(),
        ));
        Self { inner }
    }

    pub fn slots(&self) -> u32 {
        self.inner.slots.load(Ordering::Relaxed)
    }

    pub fn usage(&self) -> Usage {
        let m = lock(&self.inner.members);
        Usage {
            slots: self.slots(),
            running: m.values().map(|e| e.tasks.running()).sum(),
            queued: m.values().map(|e| e.tasks.queued()).sum(),
        }
    }

    /// Queued and running tasks of one environment (for its autoscaling report and idleness).
    pub fn environment_usage(&self, id: Uuid) -> Option<(u32, u32)> {
        let m = lock(&self.inner.members);
        m.get(&id).map(|e| (e.tasks.queued(), e.tasks.running()))
    }

    /// Takes an environment into the pool, or updates how its tasks run: the first time, it
    /// recovers what a previous agent left (queued tasks, running processes) and listens on
    /// its socket. Idempotent.
    pub fn attach(&self, target: EnvTarget) -> Result<(), TaskPoolError> {
        let mut members = lock(&self.inner.members);
        if let Some(m) = members.get_mut(&target.id) {
            if m.tasks.target.socket == target.socket && !m.listener.is_cancelled() {
                m.tasks.target = target;
                return Ok(());
            }
        }
        let store = Store::open(&target.home, target.confinement.owner())?;
        let listener = listen(&target)?;
        let cancel = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            target.id,
            target.confinement.owner().map(|(uid, _)| uid),
            Arc::downgrade(&self.inner),
            cancel.clone(),
        ));
        let tasks = match members.remove(&target.id) {
            Some(old) => {
                old.listener.cancel();
                let mut t = old.tasks;
                t.target = target;
                t
            }
            None => EnvTasks::recover(target, store),
        };
        members.insert(
            tasks.target.id,
            Member {
                tasks,
                listener: cancel,
            },
        );
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Takes an environment out (hibernated, deleted, stopped, or no longer on the `hangar`
    /// executor): its socket closes; its task processes are left to whoever stops the
    /// environment, and its queued tasks stay on disk for a later attach.
    pub fn detach(&self, id: Uuid) {
        let mut members = lock(&self.inner.members);
        if let Some(m) = members.remove(&id) {
            m.listener.cancel();
            let _ = std::fs::remove_file(&m.tasks.target.socket);
        }
    }
}

/// The longest socket path `bind` takes (`sun_path` holds 108 bytes with its final NUL).
const SUN_PATH_MAX: usize = 107;

/// Binds the environment's socket (replacing a stale one), the environment user's alone.
fn listen(target: &EnvTarget) -> Result<UnixListener, TaskPoolError> {
    let path = &target.socket;
    let err = |source| TaskPoolError::Listen {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let _ = std::fs::remove_file(path);
    // A socket's path has at most 107 bytes; a longer one is bound through its folder's
    // descriptor (the executor connects the same way).
    let listener = if path.as_os_str().len() < SUN_PATH_MAX {
        UnixListener::bind(path).map_err(err)?
    } else {
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (d, n),
            _ => return Err(err(std::io::Error::other("not a file path"))),
        };
        let dir = std::fs::File::open(dir).map_err(err)?;
        let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        UnixListener::bind(short).map_err(err)?
    };
    crate::sandbox::own(path, target.confinement.owner(), 0o600)
        .map_err(|e| err(std::io::Error::other(e.to_string())))?;
    Ok(listener)
}

/// Answers an environment's executor until cancelled: one request per connection, from the
/// environment's own user (or the agent's).
async fn serve(
    listener: UnixListener,
    id: Uuid,
    uid: Option<u32>,
    inner: Weak<Inner>,
    cancel: CancellationToken,
) {
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            s = listener.accept() => s,
        };
        let Ok((stream, _)) = stream else { continue };
        let peer = stream.peer_cred().map(|c| c.uid()).ok();
        if !peer.is_some_and(|p| p == me || Some(p) == uid) {
            tracing::warn!(env = %id, ?peer, "refused a task-pool connection from another user");
            continue;
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, id, inner).await {
                tracing::debug!(env = %id, error = %e, "task-pool request failed");
            }
        });
    }
}

async fn answer(stream: UnixStream, id: Uuid, inner: Weak<Inner>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let limit = u64::try_from(protocol::MAX_REQUEST + 1).unwrap_or(u64::MAX);
    let mut reader = BufReader::new(read.take(limit));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| std::io::Error::other("the request took too long"))??;
    let answer = match protocol::parse(line.trim_ascii()) {
        Err(error) => Answer::Error { error },
        Ok(request) => match inner.upgrade() {
            None => Answer::Error {
                error: "the task pool is stopping".to_owned(),
            },
            Some(inner) => {
                let a = {
                    let mut members = lock(&inner.members);
                    match members.get_mut(&id) {
                        Some(m) => m.tasks.handle(request),
                        None => Answer::Error {
                            error: "this environment is not in the task pool".to_owned(),
                        },
                    }
                };
                inner.wake.notify_one();
                a
            }
        },
    };
    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// The pool's loop: reaps ended tasks and starts queued ones by fair share, on every request
/// and at least every [`TICK`].
async fn run(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        round(&strong);
        // Holding the pool while waiting is fine: the next round finds it dropped.
        let _ = tokio::time::timeout(TICK, strong.wake.notified()).await;
    }
}

/// One round: reap, share, start.
fn round(inner: &Inner) {
    let mut members = lock(&inner.members);
    for m in members.values_mut() {
        m.tasks.reap();
    }
    let loads: Vec<Load> = members
        .values()
        .map(|m| Load {
            queued: m.tasks.startable(),
            running: m.tasks.running(),
            min_tasks: m.tasks.target.quota.min_tasks,
            max_tasks: m.tasks.target.quota.max_tasks,
            weight: m.tasks.target.quota.weight,
        })
        .collect();
    let starts = share::starts(inner.slots.load(Ordering::Relaxed), &loads);
    for (m, n) in members.values_mut().zip(starts) {
        if n > 0 {
            m.tasks.start(n);
        }
    }
}

/// Where an environment's executor reaches the pool.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("run").join("task-pool.sock")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_slots_follow_cores_and_memory() {
        assert_eq!(default_task_slots(2, 24 * 1024), 8);
        assert_eq!(default_task_slots(16, 2048), 4);
        assert_eq!(default_task_slots(1, 100), 1);
    }

    #[test]
    fn quotas_are_the_workers_slots() {
        let spec = hangar_tenants::EnvironmentSpec::create(
            serde_json::from_value(serde_json::json!({
                "name": "a", "executor": "hangar", "environment_class": "micro",
                "min_workers": 1, "max_workers": 4, "worker_weight": 3,
            }))
            .unwrap(),
            &hangar_tenants::spec::Platform::default(),
        )
        .unwrap();
        assert_eq!(
            Quota::for_environment(&spec),
            Quota {
                min_tasks: 3,
                max_tasks: 12,
                weight: 3
            }
        );
    }
}

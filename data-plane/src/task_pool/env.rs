//! One environment in the task pool: its queue, its running task processes and the ends not
//! yet asked for, kept on disk by its [`Store`]; the requests of its executor; starting and
//! reaping its task processes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, Signal};
use tokio::process::{Child, Command};

use super::protocol::{self, Answer, Refused, Request, TaskState};
use super::store::{Found, Record, Store};
use super::EnvTarget;
use crate::supervisor::{alive, inherited_env, pid_of, start_ticks, Identity};

/// How long an end is remembered after it was first reported, so a repeated question (or a
/// duplicate submit) gets the same answer.
const ENDED_KEEP: Duration = Duration::from_secs(3600);
/// A workload whose token expires within this is not started: its first call would fail.
const EXPIRY_MARGIN_S: i64 = 5;
/// How long a workload whose token expired waits for its scheduler to take it back (Airflow
/// revokes and requeues tasks queued longer than `[scheduler] task_queued_timeout`, checked
/// every `task_queued_timeout_check_interval`) before the pool fails it itself.
const EXPIRED_GRACE_S: i64 = 15 * 60;

/// The most tasks one environment may keep waiting in the pool: its scheduler hands over at
/// most `[core] parallelism` at once, so more is a runaway (or hostile) client filling the
/// agent's memory and disk.
const MAX_QUEUED: usize = 2_000;

/// The module Airflow 3 runs a workload with.
const EXECUTE_WORKLOAD: &str = "airflow.sdk.execution_time.execute_workload";

#[derive(Debug)]
struct Task {
    record: Record,
    digest: String,
    expires: Option<i64>,
    process: Option<Process>,
    /// A new workload of the same key that came while this one ran: a deferred task resumed
    /// by its triggerer comes back with the same try number. It is queued when this one ends.
    next: Option<Record>,
}

impl Task {
    fn new(record: Record, process: Option<Process>, next: Option<Record>) -> Self {
        let info = protocol::check_workload(&record.workload).ok();
        Self {
            digest: digest(&record.workload),
            expires: info.and_then(|w| w.expires),
            record,
            process,
            next,
        }
    }
}

/// What tells two deliveries of one key apart: the same workload sent again is a duplicate, a
/// new one (a new token) is a new run of the key.
fn digest(workload: &str) -> String {
    use sha2::Digest;
    crate::supervisor::short_hex(&sha2::Sha256::digest(workload.as_bytes()))
}

#[derive(Debug)]
struct Process {
    id: Identity,
    /// Our child, when this agent started it (an adopted process has none: its exit status
    /// is unknown).
    child: Option<Child>,
}

/// An environment's tasks.
pub(super) struct EnvTasks {
    pub(super) target: EnvTarget,
    store: Store,
    queue: VecDeque<String>,
    tasks: HashMap<String, Task>,
    /// Ended keys: their state, when, and the digest of the workload that ran.
    ended: HashMap<String, (TaskState, Instant, String)>,
    /// [`MAX_QUEUED`], but for tests.
    max_queued: usize,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl EnvTasks {
    /// The environment's tasks as a previous agent left them: live processes are adopted,
    /// finished ones reported as ended, the rest queued again in their order.
    pub(super) fn recover(target: EnvTarget, store: Store) -> Self {
        let mut me = Self {
            target,
            store,
            queue: VecDeque::new(),
            tasks: HashMap::new(),
            ended: HashMap::new(),
            max_queued: MAX_QUEUED,
        };
        for Found {
            record,
            process,
            next,
            ran,
        } in me.store.load()
        {
            let key = record.key.clone();
            match process {
                Some(id) if alive(id) => {
                    tracing::info!(env = %me.target.id, pid = id.pid, key = %key, "adopted a running task");
                    let process = Some(Process { id, child: None });
                    me.tasks.insert(key, Task::new(record, process, next));
                }
                Some(_) if ran => {
                    // It ended while no agent watched: its exit status is gone. Airflow
                    // reads the task instance's own state.
                    me.store.remove(&key);
                    match next {
                        Some(next) => me.requeue(next),
                        None => {
                            let d = digest(&record.workload);
                            me.ended
                                .insert(key, (TaskState::Unknown, Instant::now(), d));
                        }
                    }
                }
                _ => {
                    // Never started, or its agent died before letting its process run the
                    // task: it is started again.
                    if process.is_some() {
                        tracing::info!(env = %me.target.id, key = %key, "a task whose start was cut short is queued again");
                        me.store.forget_process(&key);
                    }
                    me.queue.push_back(key.clone());
                    me.tasks.insert(key, Task::new(record, None, next));
                }
            }
        }
        me
    }

    /// Queues a record again (a resumed task whose first part ended), on disk first.
    fn requeue(&mut self, record: Record) {
        if let Err(e) = self.store.save(&record) {
            tracing::warn!(env = %self.target.id, error = %e, "failed to keep a resumed task");
        }
        let key = record.key.clone();
        self.queue.retain(|k| *k != key);
        self.queue.push_back(key.clone());
        self.tasks.insert(key, Task::new(record, None, None));
    }

    pub(super) fn running(&self) -> u32 {
        u32::try_from(self.tasks.values().filter(|t| t.process.is_some()).count())
            .unwrap_or(u32::MAX)
    }

    /// Queued tasks whose token is still good enough to start.
    pub(super) fn startable(&self) -> u32 {
        let now = now_s();
        u32::try_from(
            self.queue
                .iter()
                .filter(|k| self.tasks.get(*k).is_some_and(|t| startable(t, now)))
                .count(),
        )
        .unwrap_or(u32::MAX)
    }

    pub(super) fn queued(&self) -> u32 {
        u32::try_from(self.queue.len()).unwrap_or(u32::MAX)
    }

    /// Answers one request of the environment's executor.
    pub(super) fn handle(&mut self, request: Request) -> Answer {
        match request {
            Request::Submit { tasks } => {
                let mut accepted = Vec::new();
                let mut refused = Vec::new();
                for t in tasks {
                    // The same workload again (a submit whose answer was lost) is a duplicate:
                    // never run twice.
                    let d = digest(&t.workload);
                    let known = self.tasks.get(&t.key).is_some_and(|k| {
                        k.digest == d || k.next.as_ref().is_some_and(|n| digest(&n.workload) == d)
                    }) || self.ended.get(&t.key).is_some_and(|e| e.2 == d);
                    if known {
                        accepted.push(t.key);
                        continue;
                    }
                    if let Err(reason) = protocol::check_workload(&t.workload) {
                        refused.push(Refused { key: t.key, reason });
                        continue;
                    }
                    if self.queue.len() >= self.max_queued && !self.tasks.contains_key(&t.key) {
                        refused.push(Refused {
                            key: t.key,
                            reason: format!(
                                "the task pool already holds {} waiting tasks of this environment",
                                self.max_queued
                            ),
                        });
                        continue;
                    }
                    let record = Record {
                        key: t.key.clone(),
                        workload: t.workload,
                        submitted: now_s(),
                    };
                    // A new workload of a key still running (a deferred task resumed before its
                    // first part was seen ending) waits for it; a queued one is replaced.
                    if let Some(task) = self.tasks.get_mut(&t.key) {
                        if task.process.is_some() {
                            if let Err(e) = self.store.save_next(&record) {
                                tracing::warn!(env = %self.target.id, error = %e, "failed to keep a resumed task");
                                refused.push(Refused {
                                    key: t.key,
                                    reason: "the task pool could not keep the task; it is \
                                             retried"
                                        .to_owned(),
                                });
                                continue;
                            }
                            task.next = Some(record);
                            accepted.push(t.key);
                            continue;
                        }
                    }
                    self.ended.remove(&t.key);
                    if let Err(e) = self.store.save(&record) {
                        tracing::warn!(env = %self.target.id, error = %e, "failed to keep a submitted task");
                        refused.push(Refused {
                            key: t.key,
                            reason: "the task pool could not keep the task; it is retried"
                                .to_owned(),
                        });
                        continue;
                    }
                    if !self.queue.contains(&t.key) {
                        self.queue.push_back(t.key.clone());
                    }
                    self.tasks
                        .insert(t.key.clone(), Task::new(record, None, None));
                    accepted.push(t.key);
                }
                Answer::Submitted { accepted, refused }
            }
            Request::Status { keys } => {
                let now = now_s();
                let tasks: BTreeMap<String, TaskState> = keys
                    .into_iter()
                    .map(|k| {
                        let state = match self.tasks.get(&k) {
                            Some(t) if t.process.is_some() => TaskState::Running,
                            Some(t) if !startable(t, now) => TaskState::Queued {
                                info: Some(
                                    "its token expired before a slot was free; Airflow \
                                     requeues it"
                                        .to_owned(),
                                ),
                            },
                            Some(_) => TaskState::Queued { info: None },
                            None => self
                                .ended
                                .get(&k)
                                .map_or(TaskState::Unknown, |(s, _, _)| s.clone()),
                        };
                        (k, state)
                    })
                    .collect();
                Answer::Status { tasks }
            }
            Request::Adopt { keys } => Answer::Adopted {
                adopted: keys
                    .into_iter()
                    .filter(|k| self.tasks.contains_key(k))
                    .collect(),
            },
            Request::Revoke { key } => {
                let Some(task) = self.tasks.remove(&key) else {
                    return Answer::Revoked { revoked: false };
                };
                self.queue.retain(|k| *k != key);
                if let Some(p) = &task.process {
                    tracing::info!(env = %self.target.id, pid = p.id.pid, key = %key, "stopping a revoked task");
                    let _ = killpg(pid_of(p.id), Signal::SIGTERM);
                }
                self.store.remove(&key);
                Answer::Revoked { revoked: true }
            }
        }
    }

    /// Notices ended task processes, fails workloads whose token expired long ago, and forgets
    /// old ends.
    pub(super) fn reap(&mut self) {
        let mut ended = Vec::new();
        let mut cut_short = Vec::new();
        for (key, task) in &mut self.tasks {
            let Some(p) = task.process.as_mut() else {
                continue;
            };
            if p.child.is_none() && !alive(p.id) && !self.store.ran(key) {
                // Adopted at its gate: the agent that started it died before letting it run.
                cut_short.push(key.clone());
                continue;
            }
            let state = match p.child.as_mut() {
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => Some(exit_state(status)),
                    Ok(None) => None,
                    Err(e) => Some(TaskState::Failed {
                        info: format!("its process could not be waited for: {e}"),
                    }),
                },
                None => (!alive(p.id)).then_some(TaskState::Unknown),
            };
            if let Some(state) = state {
                tracing::info!(env = %self.target.id, pid = p.id.pid, key = %key, ?state, "task ended");
                ended.push((key.clone(), state));
            }
        }
        for key in cut_short.into_iter().rev() {
            tracing::info!(env = %self.target.id, key = %key, "a task whose start was cut short is queued again");
            self.store.forget_process(&key);
            if let Some(t) = self.tasks.get_mut(&key) {
                t.process = None;
                self.queue.push_front(key);
            }
        }
        let now = now_s();
        for key in &self.queue {
            if let Some(t) = self.tasks.get(key) {
                if t.expires.is_some_and(|e| e + EXPIRED_GRACE_S < now) {
                    tracing::warn!(env = %self.target.id, key = %key, "failing a task whose token expired long ago in the pool");
                    ended.push((
                        key.clone(),
                        TaskState::Failed {
                            info: "its workload token expired while it waited for a slot, and \
                                   its scheduler did not take it back"
                                .to_owned(),
                        },
                    ));
                }
            }
        }
        for (key, state) in ended {
            let Some(task) = self.tasks.remove(&key) else {
                continue;
            };
            let state = if task.process.is_some() {
                self.memory_verdict(&key, state)
            } else {
                state
            };
            self.queue.retain(|k| *k != key);
            self.store.remove(&key);
            match task.next {
                Some(next) => self.requeue(next),
                None => {
                    self.ended.insert(key, (state, Instant::now(), task.digest));
                }
            }
        }
        self.ended.retain(|_, (_, at, _)| at.elapsed() < ENDED_KEEP);
    }

    /// A task's end as its memory group saw it: killed for going over its limit, whatever its
    /// process said; the group is removed.
    fn memory_verdict(&self, key: &str, state: TaskState) -> TaskState {
        let Some(group) = self
            .target
            .confinement
            .task_group_path(&super::store::stem(key))
        else {
            return state;
        };
        let killed = crate::sandbox::cgroups::oom_kills(&group) > 0;
        let _ = std::fs::remove_dir(&group);
        if killed {
            let mib = self.target.task_memory_mib;
            append_log(
                &self.target.log_file,
                &format!("{key}: killed for using more than its {mib} MiB of memory"),
            );
            TaskState::Failed {
                info: format!(
                    "killed: it used more than its {mib} MiB of memory (the task alone, its \
                     environment's other tasks go on)"
                ),
            }
        } else {
            state
        }
    }

    /// Starts up to `n` queued tasks, oldest first (skipping those whose token has expired);
    /// returns how many started. A task that cannot start is failed with the reason.
    pub(super) fn start(&mut self, n: u32) -> u32 {
        let now = now_s();
        let mut started = 0;
        let mut skipped = VecDeque::new();
        while started < n {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            if !startable(task, now) {
                skipped.push_back(key);
                continue;
            }
            // The process waits at its gate until its pid is on disk: an agent that dies in
            // between leaves a task that is started again, never one that runs unrecorded.
            let launched = launch(&self.target, &self.store, &task.record).and_then(|(p, gate)| {
                self.store
                    .save_process(&key, p.id)
                    .map_err(|e| format!("{e}: {}", e.source))?;
                gate.open()
                    .map_err(|e| format!("its process ended before it ran the task: {e}"))?;
                Ok(p)
            });
            match launched {
                Ok(process) => {
                    tracing::info!(env = %self.target.id, pid = process.id.pid, key = %key, "task started");
                    task.process = Some(process);
                    started += 1;
                }
                Err(reason) => {
                    tracing::warn!(env = %self.target.id, key = %key, %reason, "a task could not start");
                    append_log(&self.target.log_file, &format!("{key}: {reason}"));
                    let d = self
                        .tasks
                        .remove(&key)
                        .map(|t| t.digest)
                        .unwrap_or_default();
                    self.store.remove(&key);
                    self.ended
                        .insert(key, (TaskState::Failed { info: reason }, Instant::now(), d));
                }
            }
        }
        // Expired ones keep their place at the front until their scheduler takes them back.
        while let Some(k) = skipped.pop_back() {
            self.queue.push_front(k);
        }
        started
    }
}

fn startable(task: &Task, now: i64) -> bool {
    task.expires.is_none_or(|e| e > now + EXPIRY_MARGIN_S)
}

fn exit_state(status: std::process::ExitStatus) -> TaskState {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => TaskState::Success,
        (Some(code), _) => TaskState::Failed {
            info: format!("its process exited with status {code}"),
        },
        (None, Some(9)) => TaskState::Failed {
            info: "its process was killed (SIGKILL: out of memory, or stopped)".to_owned(),
        },
        (None, Some(sig)) => TaskState::Failed {
            info: format!("its process was killed by signal {sig}"),
        },
        (None, None) => TaskState::Failed {
            info: format!("its process ended: {status}"),
        },
    }
}

/// Adds a line to the environment's task-pool log (the agent opens it; the environment reads).
fn append_log(path: &PathBuf, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(
            f,
            "{} hangar task pool: {line}",
            chrono::Utc::now().to_rfc3339()
        );
    }
}

/// What a task's process runs first (as `sh -c GATE gate MARKER ARGV…`): it waits for a line
/// `go` on its standard input, which the agent writes once the process's pid is on disk, marks
/// that it runs the task, and becomes the task. Should the agent die before, the pipe ends
/// and the process exits without running anything (status 75).
const GATE: &str = r#"IFS= read -r go && [ "$go" = go ] || exit 75
exec </dev/null
: >"$1" || exit 75
shift
exec "$@""#;

/// The agent's end of a starting task's gate: [`Gate::open`] lets it run the task; dropped
/// unopened, the process exits without running it.
struct Gate(std::fs::File);

impl Gate {
    fn open(mut self) -> std::io::Result<()> {
        use std::io::Write;
        self.0.write_all(b"go\n")
    }
}

/// Starts a task's process, held at its [`GATE`]: `python -m
/// airflow.sdk.execution_time.execute_workload --json-path FILE` in the environment's runtime,
/// confined as its other processes are (its user, cgroups, Landlock), from an empty environment
/// plus its Airflow settings, in a process group of its own, its output appended to the
/// environment's task-pool log.
fn launch(target: &EnvTarget, store: &Store, record: &Record) -> Result<(Process, Gate), String> {
    if !target.python.exists() {
        return Err(format!(
            "failed to start: the environment's runtime has no {}",
            target.python.display()
        ));
    }
    let file = store
        .write_workload(record)
        .map_err(|e| format!("{e}: {}", e.source))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&target.log_file)
        .map_err(|e| format!("failed to open {}: {e}", target.log_file.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("failed to open {}: {e}", target.log_file.display()))?;
    let bytes = u64::from(target.task_memory_mib) << 20;
    let mut readable = target.readable.clone();
    readable.push(file.clone());
    let (confinement, _) = target
        .confinement
        .for_task(&super::store::stem(&record.key), &readable, bytes)
        .map_err(|e| format!("failed to make the task's memory group: {e}"))?;
    let argv = confinement.wrap(&[
        target.python.display().to_string(),
        "-m".to_owned(),
        EXECUTE_WORKLOAD.to_owned(),
        "--json-path".to_owned(),
        file.display().to_string(),
    ]);
    // Both ends close on exec: the process gets its end as its standard input, no other
    // process of the agent's ever holds the agent's.
    let (gate_in, gate) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("failed to make the task's gate: {e}"))?;
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(GATE)
        .arg("hangar-task-gate")
        .arg(store.ran_path(&record.key))
        .args(&argv)
        .current_dir(&target.home)
        .env_clear()
        .envs(inherited_env())
        .envs(&target.env)
        .stdin(std::process::Stdio::from(gate_in))
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| format!("failed to start /bin/sh: {e}"))?;
    let pid = child.id().unwrap_or_default();
    let process = Process {
        id: Identity {
            pid,
            start_ticks: start_ticks(pid).unwrap_or_default(),
        },
        child: Some(child),
    };
    Ok((process, Gate(std::fs::File::from(gate))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::task_pool::Quota;
    use base64::Engine;

    /// An environment whose "interpreter" is `program` (it gets the task's argv and ignores it).
    fn env(home: &std::path::Path, program: &str) -> EnvTasks {
        let target = EnvTarget {
            id: uuid::Uuid::new_v4(),
            home: home.to_owned(),
            python: program.into(),
            env: BTreeMap::new(),
            readable: Vec::new(),
            confinement: crate::sandbox::Confinement::default(),
            socket: home.join("run/task-pool.sock"),
            log_file: home.join("tasks.log"),
            quota: Quota {
                min_tasks: 0,
                max_tasks: 10,
                weight: 1,
            },
            task_memory_mib: 512,
        };
        let store = Store::open(home, None).unwrap();
        EnvTasks::recover(target, store)
    }

    fn workload(exp: i64, salt: &str) -> String {
        let claims = format!(r#"{{"exp":{exp},"jti":"{salt}"}}"#);
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            r#"{{"type":"ExecuteTask","token":"{}.{}.sig"}}"#,
            enc("{}"),
            enc(&claims)
        )
    }

    fn submit(e: &mut EnvTasks, key: &str, w: &str) -> Answer {
        e.handle(Request::Submit {
            tasks: vec![protocol::Submitted {
                key: key.into(),
                workload: w.into(),
            }],
        })
    }

    fn state(e: &mut EnvTasks, key: &str) -> TaskState {
        match e.handle(Request::Status {
            keys: vec![key.into()],
        }) {
            Answer::Status { mut tasks } => tasks.remove(key).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    async fn until_ended(e: &mut EnvTasks, key: &str) -> TaskState {
        for _ in 0..100 {
            e.reap();
            if !e.tasks.contains_key(key) {
                return state(e, key);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{key} did not end")
    }

    #[tokio::test]
    async fn a_duplicate_never_runs_twice_and_a_new_workload_of_the_key_runs_again() {
        let home = tempfile::tempdir().unwrap();
        let mut e = env(home.path(), "/bin/true");
        let w = workload(now_s() + 600, "a");
        submit(&mut e, "k", &w);
        submit(&mut e, "k", &w);
        assert_eq!(e.queued(), 1, "the same workload twice is one task");
        assert_eq!(e.start(5), 1);
        assert_eq!(until_ended(&mut e, "k").await, TaskState::Success);
        // Sent again after it ended: still a duplicate.
        submit(&mut e, "k", &w);
        assert_eq!(e.queued(), 0);
        // A resumed deferred task: same key, new token.
        submit(&mut e, "k", &workload(now_s() + 600, "b"));
        assert_eq!(e.queued(), 1);
        assert_eq!(state(&mut e, "k"), TaskState::Queued { info: None });
    }

    #[tokio::test]
    async fn a_key_resubmitted_while_it_runs_is_queued_when_it_ends() {
        let home = tempfile::tempdir().unwrap();
        let script = home.path().join("slow");
        std::fs::write(&script, "#!/bin/sh\nsleep 0.3\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut e = env(home.path(), script.to_str().unwrap());
        submit(&mut e, "k", &workload(now_s() + 600, "a"));
        assert_eq!(e.start(1), 1);
        submit(&mut e, "k", &workload(now_s() + 600, "b"));
        assert_eq!(state(&mut e, "k"), TaskState::Running);
        for _ in 0..100 {
            e.reap();
            if e.running() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(state(&mut e, "k"), TaskState::Queued { info: None });
        assert_eq!(e.queued(), 1);
    }

    #[tokio::test]
    async fn a_new_agent_finds_what_was_queued_and_adopts_what_runs() {
        let home = tempfile::tempdir().unwrap();
        let mut e = env(home.path(), "/bin/true");
        submit(&mut e, "queued", &workload(now_s() + 600, "a"));
        submit(&mut e, "running", &workload(now_s() + 600, "b"));
        // A process of a previous agent, past its gate: a sleep recorded as the task's.
        let mut sleep = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = Identity {
            pid: sleep.id(),
            start_ticks: start_ticks(sleep.id()).unwrap(),
        };
        e.store.save_process("running", id).unwrap();
        std::fs::write(e.store.ran_path("running"), "").unwrap();
        drop(e);
        let mut next = env(home.path(), "/bin/true");
        assert_eq!(state(&mut next, "queued"), TaskState::Queued { info: None });
        assert_eq!(state(&mut next, "running"), TaskState::Running);
        assert_eq!(next.running(), 1);
        sleep.kill().unwrap();
        sleep.wait().unwrap();
        // Its exit status went with the previous agent.
        assert_eq!(until_ended(&mut next, "running").await, TaskState::Unknown);
    }

    #[tokio::test]
    async fn an_expired_workload_is_not_started_and_a_revoked_one_is_forgotten() {
        let home = tempfile::tempdir().unwrap();
        let mut e = env(home.path(), "/bin/true");
        submit(&mut e, "old", &workload(now_s() - 1, "a"));
        submit(&mut e, "new", &workload(now_s() + 600, "b"));
        assert_eq!(e.startable(), 1);
        assert_eq!(e.start(5), 1, "only the one whose token is good");
        assert!(matches!(
            state(&mut e, "old"),
            TaskState::Queued { info: Some(_) }
        ));
        assert_eq!(
            e.handle(Request::Revoke { key: "old".into() }),
            Answer::Revoked { revoked: true }
        );
        assert_eq!(state(&mut e, "old"), TaskState::Unknown);
        // Long expired and never taken back: failed with the reason.
        submit(
            &mut e,
            "ancient",
            &workload(now_s() - EXPIRED_GRACE_S - 5, "c"),
        );
        e.reap();
        assert!(matches!(state(&mut e, "ancient"), TaskState::Failed { .. }));
        assert!(e.store.load().iter().all(|f| f.record.key != "ancient"));
    }

    #[tokio::test]
    async fn an_environment_cannot_fill_the_pool_without_bound() {
        let home = tempfile::tempdir().unwrap();
        let mut e = env(home.path(), "/bin/true");
        assert_eq!(e.max_queued, MAX_QUEUED);
        e.max_queued = 3;
        let tasks = (0..=3)
            .map(|i| protocol::Submitted {
                key: format!("k{i}"),
                workload: workload(now_s() + 600, &i.to_string()),
            })
            .collect();
        let Answer::Submitted { accepted, refused } = e.handle(Request::Submit { tasks }) else {
            panic!("a submit answer")
        };
        assert_eq!(accepted.len(), 3);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].reason.contains("waiting tasks"),
            "{:?}",
            refused[0]
        );
    }

    /// A program that counts its runs in `<home>/runs`.
    fn counting(home: &std::path::Path) -> String {
        let script = home.join("count");
        let runs = home.join("runs");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho run >> {}\n", runs.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script.display().to_string()
    }

    fn runs(home: &std::path::Path) -> usize {
        std::fs::read_to_string(home.join("runs"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_task_whose_agent_dies_while_starting_it_runs_once_all_the_same() {
        let home = tempfile::tempdir().unwrap();
        let program = counting(home.path());
        let mut e = env(home.path(), &program);
        submit(&mut e, "k", &workload(now_s() + 600, "a"));
        let record = e.tasks["k"].record.clone();

        // The agent dies after starting the process, before its pid is on disk: the process
        // never runs the task, and the next agent starts it again.
        let (mut p, gate) = launch(&e.target, &e.store, &record).unwrap();
        drop(gate);
        let status = p.child.as_mut().unwrap().wait().await.unwrap();
        assert_eq!(status.code(), Some(75));
        assert_eq!(runs(home.path()), 0);
        drop(e);
        let e = env(home.path(), &program);
        assert_eq!(e.queued(), 1);

        // The same, after its pid is on disk.
        let (mut p, gate) = launch(&e.target, &e.store, &record).unwrap();
        e.store.save_process("k", p.id).unwrap();
        drop(gate);
        p.child.as_mut().unwrap().wait().await.unwrap();
        drop(e);
        let e = env(home.path(), &program);
        assert_eq!(e.queued(), 1);
        assert_eq!(e.running(), 0);

        // The next agent comes while the process still waits at its gate: it adopts it, sees
        // it end without running the task, and starts the task again.
        let (p, gate) = launch(&e.target, &e.store, &record).unwrap();
        e.store.save_process("k", p.id).unwrap();
        drop(e);
        let mut e = env(home.path(), &program);
        assert_eq!(e.running(), 1);
        drop(gate);
        let mut child = p.child.unwrap();
        child.wait().await.unwrap();
        e.reap();
        assert_eq!(e.running(), 0);
        assert_eq!(state(&mut e, "k"), TaskState::Queued { info: None });
        assert_eq!(runs(home.path()), 0);

        // Started for good: it runs once, and a new agent knows it ran.
        assert_eq!(e.start(1), 1);
        assert_eq!(until_ended(&mut e, "k").await, TaskState::Success);
        assert_eq!(runs(home.path()), 1);
    }

    #[tokio::test]
    async fn a_task_that_ran_while_no_agent_watched_is_not_run_again() {
        let home = tempfile::tempdir().unwrap();
        let program = counting(home.path());
        let mut e = env(home.path(), &program);
        submit(&mut e, "k", &workload(now_s() + 600, "a"));
        assert_eq!(e.start(1), 1);
        // The agent dies; the task ends before the next one comes.
        let mut child = e
            .tasks
            .get_mut("k")
            .unwrap()
            .process
            .take()
            .unwrap()
            .child
            .unwrap();
        drop(e);
        assert!(child.wait().await.unwrap().success());
        let mut e = env(home.path(), &program);
        assert_eq!(e.queued(), 0);
        assert_eq!(state(&mut e, "k"), TaskState::Unknown);
        assert_eq!(runs(home.path()), 1);
    }

    #[tokio::test]
    async fn a_task_that_cannot_start_fails_with_the_reason() {
        let home = tempfile::tempdir().unwrap();
        let mut e = env(home.path(), "/nonexistent/python");
        submit(&mut e, "k", &workload(now_s() + 600, "a"));
        assert_eq!(e.start(1), 0);
        let TaskState::Failed { info } = state(&mut e, "k") else {
            panic!("failed")
        };
        assert!(info.contains("failed to start"), "{info}");
        assert!(std::fs::read_to_string(home.path().join("tasks.log"))
            .unwrap()
            .contains("failed to start"));
    }
}

//! Log capture and shipping for the environments of a cell (issue 6).
//!
//! The supervisor points every component's stdout and stderr at a file of its own
//! (`{home}/components/{name}.log`), so a process keeps logging while the agent restarts. This
//! module tails those files from where it last got to, and turns each line into a [`LogLine`]:
//! its timestamp and level from the line itself (Airflow's structlog and classic formats,
//! uvicorn, Celery, gunicorn), the line before's for a traceback's frames. Lines go two ways:
//!
//! - **live**, to the control plane every pass (0.5 s), where followers (`follow=true`) and
//!   recent reads pick them up;
//! - **durably**, in chunks of NDJSON in the platform bucket under the environment's prefix
//!   (`logs/{env id}/components/{component}/{first ms}-{last ms}-{offset}.ndjson`), written
//!   every 30 s or 1 MiB. The file offset a chunk ends at is kept in `{home}/log-ship.json`
//!   only after the chunk is written, so a crash re-reads and rewrites the same chunk (same
//!   name), never loses one.
//!
//! Task logs (`{home}/logs/dag_id=…/run_id=…/task_id=…/attempt=N.log`, written by Airflow) are
//! copied whole to `logs/{env id}/tasks/…` whenever they change, so they outlive the worker that
//! wrote them (scale to zero, a new machine). Chunks and task logs older than the retention
//! are deleted from the bucket.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use hangar_client::Client;
use hangar_tenants::api::{EnvironmentLogLines, LogBatch, LogLevel, LogLine};
use object_store::path::Path as ObjectPath;
use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use hangar_tenants::bucket_layout::{self as layout, chunk_name, parse_chunk_name};

use crate::bucket::{Bucket, BucketError};

/// Below this much room for its processes a log folder's disk is full: a line written now
/// may be dropped.
pub const FULL_BELOW: u64 = 1024 * 1024;

/// The environment's log folders whose disk is full (room below [`FULL_BELOW`] for an
/// unprivileged writer, as its processes are): `tasks` for `{home}/logs`, the task logs
/// Airflow writes, and `components` for `{home}/components`. A folder that cannot be looked
/// at is not counted full.
pub fn full_log_folders(home: &Path) -> Vec<String> {
    [("tasks", "logs"), ("components", "components")]
        .into_iter()
        .filter(|(_, dir)| {
            nix::sys::statvfs::statvfs(&home.join(dir))
                .is_ok_and(|s| s.blocks_available().saturating_mul(s.fragment_size()) < FULL_BELOW)
        })
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// An environment whose logs are shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub tenant: String,
    pub name: String,
    /// The environment's home on this machine.
    pub home: PathBuf,
}

/// The environments of the cell whose logs are shipped, kept by their reconcilers.
#[derive(Debug, Clone, Default)]
pub struct LogSources {
    map: Arc<Mutex<HashMap<Uuid, LogSource>>>,
    /// Held by the shipper for each pass, from taking its list of sources to the last write.
    pass: Arc<tokio::sync::Mutex<()>>,
}

impl LogSources {
    pub fn insert(&self, id: Uuid, source: LogSource) {
        crate::agent::supervise::lock(&self.map).insert(id, source);
    }

    /// Stops shipping the environment's logs, and returns once no pass that still had it in
    /// its list is running: nothing of the environment is written to the bucket afterwards
    /// (so deleting its logs then deletes them all).
    pub async fn remove(&self, id: Uuid) {
        crate::agent::supervise::lock(&self.map).remove(&id);
        drop(self.pass.lock().await);
    }

    fn snapshot(&self) -> HashMap<Uuid, LogSource> {
        crate::agent::supervise::lock(&self.map).clone()
    }
}

#[derive(Debug, Clone)]
pub struct ShipSettings {
    /// How often log files are read and new lines sent live.
    pub pass: Duration,
    /// A chunk is written to the bucket once its first line is this old…
    pub chunk_age: Duration,
    /// …or once it holds this many bytes.
    pub chunk_bytes: usize,
    /// How often task log files are looked at for changes.
    pub task_scan: Duration,
    /// How long the bucket keeps component chunks and task logs.
    pub retention: Duration,
}

impl Default for ShipSettings {
    fn default() -> Self {
        Self {
            pass: Duration::from_millis(500),
            chunk_age: Duration::from_secs(30),
            chunk_bytes: 1024 * 1024,
            task_scan: Duration::from_secs(5),
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Most bytes read from one file in one pass.
const READ_LIMIT: u64 = 1024 * 1024;
/// Holes are punched in whole blocks of this size.
const HOLE_ALIGN: u64 = 4096;
/// A line longer than this is cut (with `…`); a partial line this long is taken as it is.
const MAX_LINE: usize = 16 * 1024;
/// Live lines kept for the control plane while it cannot be reached, per environment.
const MAX_UNSENT: usize = 20_000;
/// Task log files larger than this are shipped cut to their last this many bytes.
const MAX_TASK_LOG: u64 = 64 * 1024 * 1024;
/// How often the bucket is swept for expired logs.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

// ---- names in the bucket -------------------------------------------------------------------

/// `logs/{env id}` of the environment's prefix ([`layout::logs_prefix`]).
pub fn logs_prefix(bucket: &Bucket, tenant: &str, env: &str, id: Uuid) -> ObjectPath {
    bucket.path(&layout::logs_prefix(tenant, env, id))
}

pub fn components_prefix(bucket: &Bucket, tenant: &str, env: &str, id: Uuid) -> ObjectPath {
    bucket.path(&layout::components_prefix(tenant, env, id))
}

pub fn tasks_prefix(bucket: &Bucket, tenant: &str, env: &str, id: Uuid) -> ObjectPath {
    bucket.path(&layout::tasks_prefix(tenant, env, id))
}

// ---- reading a line ------------------------------------------------------------------------

static TIMESTAMP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^\[?(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s?(Z|UTC|[+-]\d{2}:?\d{2})?",
    )
    .ok()
});
static LEVEL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(debug|info|warning|warn|error|critical|fatal)\b").ok());
static LEADING_LEVEL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)^\[?(debug|info|warning|warn|error|critical|fatal)\b").ok());
static ANSI: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\x1b\[[0-9;]*[A-Za-z]").ok());

/// A timestamp at the start of a line, in the forms Airflow, Celery and gunicorn write
/// (`2026-11-25T10:00:00.123456Z`, `[2026-11-25T10:00:00.123+0000]`,
/// `[2026-11-25 10:00:00,123: …`); a time without a zone is UTC. Returns it and where it ends.
fn leading_timestamp(line: &str) -> Option<(DateTime<Utc>, usize)> {
    let c = TIMESTAMP.as_ref()?.captures(line)?;
    let date = NaiveDate::parse_from_str(c.get(1)?.as_str(), "%Y-%m-%d").ok()?;
    let time = NaiveTime::parse_from_str(c.get(2)?.as_str(), "%H:%M:%S").ok()?;
    let nanos = c.get(3).map_or(Some(0), |f| {
        format!("{:0<9}", f.as_str()).parse::<i64>().ok()
    })?;
    let zone = match c.get(4).map(|z| z.as_str()) {
        None | Some("Z") | Some("UTC") => 0,
        Some(z) => {
            let digits: String = z.chars().filter(char::is_ascii_digit).collect();
            let (h, m) = (digits.get(0..2)?, digits.get(2..4)?);
            let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            if z.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
    };
    let local = NaiveDateTime::new(date, time) + TimeDelta::nanoseconds(nanos);
    let utc = (local - TimeDelta::seconds(zone)).and_utc();
    Some((utc, c.get(0)?.end()))
}

/// The time and level of a line. A line that starts with neither a timestamp nor a level
/// (a traceback's frames, a banner) continues the line before: it takes that line's time and
/// level. Otherwise a line without a time was written when it was captured.
pub fn classify(
    line: &str,
    captured: DateTime<Utc>,
    before: Option<(DateTime<Utc>, LogLevel)>,
) -> (DateTime<Utc>, LogLevel) {
    let inherited = before.unwrap_or((captured, LogLevel::Info));
    if let Some((ts, end)) = leading_timestamp(line) {
        // The level follows the time closely in every format (`[info     ]`, `INFO -`,
        // `: INFO/MainProcess]`, `[INFO]`).
        let rest: String = line.get(end..).unwrap_or("").chars().take(80).collect();
        let level = LEVEL
            .as_ref()
            .and_then(|r| r.captures(&rest))
            .and_then(|c| LogLevel::parse(c.get(1)?.as_str()))
            .unwrap_or(LogLevel::Info);
        return (ts, level);
    }
    if let Some(level) = LEADING_LEVEL
        .as_ref()
        .and_then(|r| r.captures(line))
        .and_then(|c| LogLevel::parse(c.get(1)?.as_str()))
    {
        return (captured, level);
    }
    inherited
}

/// A line as it is kept: colours stripped, cut at [`MAX_LINE`].
fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut text = match ANSI.as_ref() {
        Some(r) => r.replace_all(text, "").into_owned(),
        None => text.to_owned(),
    };
    if text.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The complete lines of `path` from `from` on (at most [`READ_LIMIT`] bytes), each with the
/// offset it starts at, and the offset after the last one. A file shorter than `from` was
/// replaced: it is read from its start.
fn read_lines(path: &Path, from: u64) -> std::io::Result<(Vec<(u64, String)>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let asked = if len < from { 0 } else { from };
    if len == asked {
        return Ok((vec![], asked));
    }
    // Shipped lines are a hole (see `release_shipped`), which ends before the saved shipped
    // offset; only a read from the start (the shipping state was lost) can begin in one. It
    // starts at the first data, past the line the hole cut in two.
    let from = if asked > 0 {
        asked
    } else {
        match nix::unistd::lseek(f.as_raw_fd(), 0, nix::unistd::Whence::SeekData) {
            Ok(o) => u64::try_from(o).unwrap_or(0),
            Err(nix::errno::Errno::ENXIO) => return Ok((vec![], len)),
            Err(_) => 0,
        }
    };
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(READ_LIMIT).read_to_end(&mut buf)?;
    let mut lines = Vec::new();
    let mut start = if from > asked {
        buf.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    for (i, b) in buf.iter().enumerate().skip(start) {
        if *b == b'\n' {
            lines.push((from + start as u64, clean(&buf[start..i])));
            start = i + 1;
        }
    }
    // A partial line waits for its end, unless it is already too long to be a line.
    if buf.len() - start >= MAX_LINE {
        lines.push((from + start as u64, clean(&buf[start..])));
        start = buf.len();
    }
    Ok((lines, from + start as u64))
}

// ---- the shipper ---------------------------------------------------------------------------

/// What survives an agent restart: how far each component's lines are in the bucket, and
/// which task log versions are there.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    #[serde(default)]
    shipped: BTreeMap<String, u64>,
    /// Task log path → (size, modification time in ms) as last copied.
    #[serde(default)]
    tasks: BTreeMap<String, (u64, i64)>,
}

#[derive(Debug, Default)]
struct Component {
    /// Lines up to here were read (and sent live).
    read: u64,
    /// Lines up to here are in the bucket.
    shipped: u64,
    /// The file is a hole up to here.
    released: u64,
    before: Option<(DateTime<Utc>, LogLevel)>,
    chunk: Vec<LogLine>,
    chunk_bytes: usize,
    chunk_started: Option<Instant>,
}

#[derive(Debug, Default)]
struct EnvState {
    loaded: bool,
    components: BTreeMap<String, Component>,
    tasks: BTreeMap<String, (u64, i64)>,
    unsent: Vec<LogLine>,
}

fn state_file(home: &Path) -> PathBuf {
    home.join("log-ship.json")
}

/// Reads, sends and ships the logs of the cell's environments; one per agent.
pub struct Shipper {
    bucket: Option<Bucket>,
    settings: ShipSettings,
    envs: HashMap<Uuid, EnvState>,
    last_task_scan: Option<Instant>,
    last_expiry: Option<Instant>,
}

impl Shipper {
    pub fn new(bucket: Option<Bucket>, settings: ShipSettings) -> Self {
        Self {
            bucket,
            settings,
            envs: HashMap::new(),
            last_task_scan: None,
            last_expiry: None,
        }
    }

    /// Reads what the environments' components wrote since the last pass: the batch to send
    /// live (with what could not be sent before), and the lines join their chunks.
    pub fn read(&mut self, sources: &HashMap<Uuid, LogSource>, now: DateTime<Utc>) -> LogBatch {
        self.envs.retain(|id, _| sources.contains_key(id));
        let mut batch = LogBatch::default();
        for (id, source) in sources {
            let state = self.envs.entry(*id).or_default();
            if !state.loaded {
                let saved: Persisted = std::fs::read(state_file(&source.home))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                for (name, offset) in saved.shipped {
                    state.components.insert(
                        name,
                        Component {
                            read: offset,
                            shipped: offset,
                            ..Default::default()
                        },
                    );
                }
                state.tasks = saved.tasks;
                state.loaded = true;
            }
            let mut fresh = Vec::new();
            for name in component_files(&source.home.join("components")) {
                let c = state.components.entry(name.clone()).or_default();
                let path = source.home.join("components").join(format!("{name}.log"));
                let (lines, next) = match read_lines(&path, c.read) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(file = %path.display(), error = %e, "failed to read a log file");
                        continue;
                    }
                };
                if lines.first().is_some_and(|(offset, _)| *offset < c.read) {
                    // The file was replaced: its lines start over.
                    c.shipped = 0;
                    c.released = 0;
                    c.before = None;
                }
                c.read = next;
                for (offset, message) in lines {
                    let (ts, level) = classify(&message, now, c.before);
                    c.before = Some((ts, level));
                    let line = LogLine {
                        ts,
                        component: name.clone(),
                        level,
                        message,
                        offset,
                    };
                    c.chunk_bytes += line.message.len() + 64;
                    c.chunk_started.get_or_insert_with(Instant::now);
                    c.chunk.push(line.clone());
                    fresh.push(line);
                }
            }
            state.unsent.extend(fresh);
            let excess = state.unsent.len().saturating_sub(MAX_UNSENT);
            state.unsent.drain(..excess);
            if !state.unsent.is_empty() {
                batch.environments.push(EnvironmentLogLines {
                    environment_id: *id,
                    lines: state.unsent.clone(),
                });
            }
        }
        batch
    }

    /// The live batch reached the control plane: its lines are not sent again.
    pub fn sent(&mut self, batch: &LogBatch) {
        for e in &batch.environments {
            if let Some(state) = self.envs.get_mut(&e.environment_id) {
                let n = e.lines.len().min(state.unsent.len());
                state.unsent.drain(..n);
            }
        }
    }

    /// Writes the chunks that are due (all of them with `all`) to the bucket and records how
    /// far each component is shipped.
    pub async fn flush(&mut self, sources: &HashMap<Uuid, LogSource>, all: bool) {
        let Some(bucket) = self.bucket.clone() else {
            // Without a bucket nothing is kept beyond the live tail.
            for state in self.envs.values_mut() {
                for c in state.components.values_mut() {
                    c.chunk.clear();
                    c.chunk_bytes = 0;
                    c.chunk_started = None;
                }
            }
            return;
        };
        for (id, source) in sources {
            let Some(state) = self.envs.get_mut(id) else {
                continue;
            };
            let prefix = components_prefix(&bucket, &source.tenant, &source.name, *id);
            let mut changed = false;
            for (name, c) in &mut state.components {
                let due = c.chunk_started.is_some_and(|t| {
                    all || t.elapsed() >= self.settings.chunk_age
                        || c.chunk_bytes >= self.settings.chunk_bytes
                });
                if !due {
                    continue;
                }
                // Lines' own times need not rise (a component's formats differ): the name
                // carries the chunk's earliest and latest, so reads by time never miss it.
                let (Some(first), Some(earliest), Some(latest)) = (
                    c.chunk.first(),
                    c.chunk.iter().map(|l| l.ts).min(),
                    c.chunk.iter().map(|l| l.ts).max(),
                ) else {
                    continue;
                };
                let mut body = Vec::with_capacity(c.chunk_bytes);
                for line in &c.chunk {
                    if serde_json::to_writer(&mut body, line).is_ok() {
                        body.push(b'\n');
                    }
                }
                let path = prefix.clone().join(name.as_str()).join(chunk_name(
                    earliest,
                    latest,
                    first.offset,
                ));
                match bucket.put(&path, body.into()).await {
                    Ok(()) => {
                        c.shipped = c.read;
                        c.chunk.clear();
                        c.chunk_bytes = 0;
                        c.chunk_started = None;
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(env = %source.name, component = %name, error = %e, "failed to ship a log chunk")
                    }
                }
            }
            if changed {
                save(source, state);
                let dir = source.home.join("components");
                for (name, c) in &mut state.components {
                    let end = c.shipped / HOLE_ALIGN * HOLE_ALIGN;
                    if end > c.released {
                        let path = dir.join(format!("{name}.log"));
                        if let Err(e) = release_shipped(&path, c.released, end) {
                            tracing::debug!(file = %path.display(), error = %e, "failed to free shipped log lines");
                        }
                        // Not tried again on a filesystem without holes.
                        c.released = end;
                    }
                }
            }
        }
    }

    /// Copies task logs that changed since they were last copied; at most every `task_scan`.
    pub async fn ship_task_logs(&mut self, sources: &HashMap<Uuid, LogSource>, all: bool) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        if !all
            && self
                .last_task_scan
                .is_some_and(|t| t.elapsed() < self.settings.task_scan)
        {
            return;
        }
        self.last_task_scan = Some(Instant::now());
        for (id, source) in sources {
            let Some(state) = self.envs.get_mut(id) else {
                continue;
            };
            let prefix = tasks_prefix(&bucket, &source.tenant, &source.name, *id);
            let root = source.home.join("logs");
            // The folder belongs to the environment's user, and so do the logs it writes; a
            // file of anyone else got there by a link and is never shipped.
            let Ok(owner) = std::fs::symlink_metadata(&root).map(|m| m.uid()) else {
                continue;
            };
            let mut changed = false;
            for (rel, size, mtime) in task_log_files(&root) {
                if state.tasks.get(&rel) == Some(&(size, mtime)) {
                    continue;
                }
                let body = match read_tail(&root.join(&rel), MAX_TASK_LOG, owner) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(file = %rel, error = %e, "failed to read a task log");
                        continue;
                    }
                };
                let path = rel.split('/').fold(prefix.clone(), |p, part| p.join(part));
                match bucket.put(&path, body.into()).await {
                    Ok(()) => {
                        state.tasks.insert(rel, (size, mtime));
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(env = %source.name, file = %rel, error = %e, "failed to ship a task log")
                    }
                }
            }
            if changed {
                save(source, state);
            }
        }
    }

    /// Deletes chunks and task logs older than the retention from the bucket; hourly.
    pub async fn expire(&mut self, sources: &HashMap<Uuid, LogSource>, now: DateTime<Utc>) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        if self
            .last_expiry
            .is_some_and(|t| t.elapsed() < RETENTION_EVERY)
        {
            return;
        }
        self.last_expiry = Some(Instant::now());
        let keep = TimeDelta::from_std(self.settings.retention).unwrap_or(TimeDelta::MAX);
        let cutoff = now - keep;
        for (id, source) in sources {
            let prefix = logs_prefix(&bucket, &source.tenant, &source.name, *id);
            let objects = match bucket.list(&prefix).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(env = %source.name, error = %e, "failed to list logs for expiry");
                    continue;
                }
            };
            for o in objects {
                let last = o
                    .location
                    .filename()
                    .and_then(parse_chunk_name)
                    .and_then(|(_, last, _)| DateTime::from_timestamp_millis(last))
                    .unwrap_or(o.last_modified);
                if last < cutoff {
                    if let Err(e) = bucket.delete(&o.location).await {
                        tracing::warn!(env = %source.name, error = %e, "failed to delete an expired log");
                    }
                }
            }
        }
    }
}

/// Deletes everything kept of a deleted environment's logs.
pub async fn delete_logs(
    bucket: &Bucket,
    tenant: &str,
    env: &str,
    id: Uuid,
) -> Result<(), BucketError> {
    let objects = bucket.list(&logs_prefix(bucket, tenant, env, id)).await?;
    tracing::info!(%tenant, %env, objects = objects.len(), "deleting the environment's logs");
    for o in objects {
        match bucket.delete(&o.location).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn save(source: &LogSource, state: &EnvState) {
    let persisted = Persisted {
        shipped: state
            .components
            .iter()
            .map(|(n, c)| (n.clone(), c.shipped))
            .collect(),
        tasks: state.tasks.clone(),
    };
    let path = state_file(&source.home);
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec(&persisted)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        // A full disk leaves a part of it: it is written whole next time, or not at all.
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(file = %path.display(), error = %e, "failed to save log shipping state");
    }
}

/// Frees the disk blocks of `path` from `from` to `to`, lines that are in the bucket: the file
/// keeps its size, so offsets stay valid and the process that writes it appends on.
fn release_shipped(path: &Path, from: u64, to: u64) -> std::io::Result<()> {
    use nix::fcntl::FallocateFlags;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let offset = |v: u64| i64::try_from(v).map_err(std::io::Error::other);
    nix::fcntl::fallocate(
        f.as_raw_fd(),
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset(from)?,
        offset(to - from)?,
    )
    .map_err(std::io::Error::from)
}

/// The components with a log file in `dir` (`scheduler` for `scheduler.log`).
fn component_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

fn mtime_ms(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Every task log under `root` (`dag_id=…/…/attempt=N.log`), relative, with size and mtime.
fn task_log_files(root: &Path) -> Vec<(String, u64, i64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("dag_id=") {
            walk(&e.path(), &name, 0, &mut out);
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path, rel: &str, depth: usize, out: &mut Vec<(String, u64, i64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        let child = format!("{rel}/{name}");
        if meta.is_dir() && depth < 4 {
            walk(&e.path(), &child, depth + 1, out);
        } else if meta.is_file() && name.starts_with("attempt=") && name.ends_with(".log") {
            out.push((child, meta.len(), mtime_ms(&meta)));
        }
    }
}

/// The last `limit` bytes of a task log: a regular file owned by `owner`, opened without
/// following a final symbolic link. A task's user can swap the folders of its own logs folder
/// for links, but not make another user's file its own, so the owner check after opening is
/// what keeps the agent (root) from reading anything else for it.
fn read_tail(path: &Path, limit: u64, owner: u32) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.uid() != owner {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a regular file of the environment's user",
        ));
    }
    let len = meta.len();
    f.seek(SeekFrom::Start(len.saturating_sub(limit)))?;
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The most a live batch carries, roughly (the API takes bodies up to 256 KiB).
const BATCH_BYTES: usize = 192 * 1024;

/// A batch cut into consecutive parts of about `max` bytes each, lines kept in order.
fn split(batch: LogBatch, max: usize) -> Vec<LogBatch> {
    let mut parts = vec![];
    let mut part = LogBatch::default();
    let mut size = 0;
    for env in batch.environments {
        let mut lines = vec![];
        for line in env.lines {
            let n = line.message.len() + line.component.len() + 96;
            if size + n > max && (size > 0) {
                if !lines.is_empty() {
                    part.environments.push(EnvironmentLogLines {
                        environment_id: env.environment_id,
                        lines: std::mem::take(&mut lines),
                    });
                }
                parts.push(std::mem::take(&mut part));
                size = 0;
            }
            size += n;
            lines.push(line);
        }
        if !lines.is_empty() {
            part.environments.push(EnvironmentLogLines {
                environment_id: env.environment_id,
                lines,
            });
        }
    }
    if !part.environments.is_empty() {
        parts.push(part);
    }
    parts
}

/// Ships the cell's logs until `cancel`; on the way out every pending chunk and task log is
/// written, so a restart loses nothing and re-sends little.
pub async fn run(
    client: Client,
    cell: String,
    bucket: Option<Bucket>,
    sources: LogSources,
    settings: ShipSettings,
    cancel: CancellationToken,
) {
    let pass = settings.pass;
    let mut shipper = Shipper::new(bucket, settings);
    loop {
        let stopping = tokio::select! {
            () = cancel.cancelled() => true,
            () = tokio::time::sleep(pass) => false,
        };
        let pass = sources.pass.lock().await;
        let current = sources.snapshot();
        let batch = shipper.read(&current, Utc::now());
        for part in split(batch, BATCH_BYTES) {
            match client.post_log_lines(&cell, &part).await {
                Ok(()) => shipper.sent(&part),
                Err(e) => {
                    tracing::debug!(error = %e, "failed to send log lines; keeping them");
                    break;
                }
            }
        }
        shipper.flush(&current, stopping).await;
        shipper.ship_task_logs(&current, stopping).await;
        shipper.expire(&current, Utc::now()).await;
        drop(pass);
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[rstest]
    #[case::structlog(
        "2026-11-25T10:00:01.250000Z [info     ] Starting the scheduler [airflow.jobs]",
        "2026-11-25T10:00:01.25Z",
        LogLevel::Info
    )]
    #[case::structlog_warning(
        "2026-11-25T10:00:01.000000Z [warning  ] DAG file changed",
        "2026-11-25T10:00:01Z",
        LogLevel::Warning
    )]
    #[case::classic(
        "[2026-11-25T11:00:02.500+0100] {error_handler.py:10} ERROR - failed",
        "2026-11-25T10:00:02.5Z",
        LogLevel::Error
    )]
    #[case::celery(
        "[2026-11-25 10:00:03,125: WARNING/MainProcess] consumer: Cannot connect",
        "2026-11-25T10:00:03.125Z",
        LogLevel::Warning
    )]
    #[case::gunicorn(
        "[2026-11-25 10:00:04 +0000] [42] [CRITICAL] WORKER TIMEOUT",
        "2026-11-25T10:00:04Z",
        LogLevel::Critical
    )]
    #[case::uvicorn_without_time(
        "INFO:     127.0.0.1:5000 - \"GET /api/v2/monitor/health HTTP/1.1\" 200 OK",
        "2026-11-25T12:00:00Z",
        LogLevel::Info
    )]
    #[case::time_without_level(
        "2026-11-25T10:00:05Z something happened",
        "2026-11-25T10:00:05Z",
        LogLevel::Info
    )]
    fn lines_carry_their_own_time_and_level(
        #[case] line: &str,
        #[case] ts: &str,
        #[case] level: LogLevel,
    ) {
        let captured = at("2026-11-25T12:00:00Z");
        assert_eq!(classify(line, captured, None), (at(ts), level));
    }

    #[test]
    fn a_tracebacks_frames_continue_the_line_before() {
        let captured = at("2026-11-25T12:00:00Z");
        let frame_of = (at("2026-11-25T10:00:00Z"), LogLevel::Error);
        for line in [
            "Traceback (most recent call last):",
            "  File \"/dags/x.py\", line 3, in <module>",
            "ValueError: boom",
        ] {
            assert_eq!(classify(line, captured, Some(frame_of)), frame_of, "{line}");
        }
        // With nothing before, such a line is information captured now.
        assert_eq!(
            classify("banner", captured, None),
            (captured, LogLevel::Info)
        );
    }

    #[test]
    fn only_complete_lines_are_read_and_colours_are_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\n\x1b[32mtwo\x1b[0m\r\nthr").unwrap();
        let (lines, next) = read_lines(&path, 0).unwrap();
        assert_eq!(lines, vec![(0, "one".to_owned()), (4, "two".to_owned())]);
        assert_eq!(next, 18);
        std::fs::write(&path, "one\n\x1b[32mtwo\x1b[0m\r\nthree\n").unwrap();
        let (lines, next) = read_lines(&path, next).unwrap();
        assert_eq!(lines, vec![(18, "three".to_owned())]);
        // A file that shrank was replaced: it is read again from the start.
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(read_lines(&path, next).unwrap().0, vec![(0, "new".into())]);
    }

    /// The agent (root) copies task logs from a folder its environment's user writes: a link
    /// to, or a file of, anyone else (another environment, the machine) is never shipped.
    #[tokio::test]
    async fn only_the_environment_users_own_task_logs_are_shipped() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (home, _store, bucket) = home_and_bucket();
        let logs = home.path().join("logs");
        let dir = logs.join("dag_id=etl/run_id=r/task_id=t");
        std::fs::create_dir_all(&dir).unwrap();
        let secret = home.path().join("someone-elses.log");
        std::fs::write(&secret, "another tenant's secret\n").unwrap();
        std::fs::write(dir.join("attempt=1.log"), "mine\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("attempt=2.log")).unwrap();
        std::fs::hard_link(&secret, dir.join("attempt=3.log")).unwrap();
        let nobody = Some(65534);
        for path in [
            &logs,
            &logs.join("dag_id=etl"),
            &logs.join("dag_id=etl/run_id=r"),
            &dir,
        ] {
            std::os::unix::fs::chown(path, nobody, nobody).unwrap();
        }
        std::os::unix::fs::chown(dir.join("attempt=1.log"), nobody, nobody).unwrap();
        let sources = source(home.path());
        let mut s = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        s.read(&sources, Utc::now());
        s.ship_task_logs(&sources, true).await;
        let tasks = tasks_prefix(&bucket, "acme", "etl", Uuid::nil());
        let shipped = bucket.list(&tasks).await.unwrap();
        assert_eq!(shipped.len(), 1, "{shipped:?}");
        let mine = bucket.path(&layout::task_log_key(
            &layout::tasks_prefix("acme", "etl", Uuid::nil()),
            layout::TaskTry {
                dag: "etl",
                run: "r",
                task: "t",
                map_index: None,
                attempt: 1,
            },
        ));
        assert_eq!(bucket.get(&mine).await.unwrap().as_ref(), b"mine\n");
    }

    fn source(home: &Path) -> HashMap<Uuid, LogSource> {
        HashMap::from([(
            Uuid::nil(),
            LogSource {
                tenant: "acme".into(),
                name: "etl".into(),
                home: home.to_owned(),
            },
        )])
    }

    /// An environment's home and a local bucket (in a folder kept as long as the second).
    fn home_and_bucket() -> (tempfile::TempDir, tempfile::TempDir, Bucket) {
        let home = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let bucket = Bucket::local(store.path().to_owned()).unwrap();
        (home, store, bucket)
    }

    /// The scheduler's log file in `home` (its folder made).
    fn scheduler_log(home: &Path) -> PathBuf {
        let comps = home.join("components");
        std::fs::create_dir_all(&comps).unwrap();
        comps.join("scheduler.log")
    }

    async fn chunks(bucket: &Bucket) -> Vec<LogLine> {
        let prefix = components_prefix(bucket, "acme", "etl", Uuid::nil());
        let mut objects = bucket.list(&prefix).await.unwrap();
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        let mut out = Vec::new();
        for o in objects {
            let body = bucket.get(&o.location).await.unwrap();
            for l in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(serde_json::from_slice(l).unwrap());
            }
        }
        out
    }

    #[tokio::test]
    async fn lines_are_sent_once_and_shipped_once_across_a_restart() {
        let (home, _store, bucket) = home_and_bucket();
        let log = scheduler_log(home.path());
        std::fs::write(
            &log,
            "2026-11-25T10:00:00Z [error    ] failed\nTraceback (most recent call last):\n",
        )
        .unwrap();
        let sources = source(home.path());
        let now = at("2026-11-25T12:00:00Z");

        let mut first = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        let batch = first.read(&sources, now);
        let lines = &batch.environments[0].lines;
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1].level,
            LogLevel::Error,
            "a frame takes its line's level"
        );
        assert_eq!(lines[1].offset, 40);
        first.sent(&batch);
        assert!(first.read(&sources, now).environments.is_empty());
        first.flush(&sources, true).await;
        assert_eq!(chunks(&bucket).await.len(), 2);

        // New lines after the chunk; the agent stops before shipping them.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"2026-11-25T10:00:01Z [info     ] later\n").unwrap();
        assert_eq!(first.read(&sources, now).environments[0].lines.len(), 1);
        drop(first);

        // The next agent reads from what is in the bucket, not from the start.
        let mut second = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        let again = second.read(&sources, now);
        assert_eq!(again.environments[0].lines.len(), 1);
        assert_eq!(
            again.environments[0].lines[0].message,
            "2026-11-25T10:00:01Z [info     ] later"
        );
        second.flush(&sources, true).await;
        let all = chunks(&bucket).await;
        assert_eq!(
            all.iter().map(|l| l.offset).collect::<Vec<_>>(),
            vec![0, 40, 75]
        );
    }

    #[tokio::test]
    async fn shipped_lines_free_their_disk_blocks_and_the_file_goes_on() {
        use std::os::unix::fs::MetadataExt;
        let (home, _store, bucket) = home_and_bucket();
        let log = scheduler_log(home.path());
        let line = |i: usize| {
            format!(
                "2026-11-25T10:00:00Z [info     ] line {i:05} {}",
                "x".repeat(80)
            )
        };
        let written: Vec<String> = (0..500).map(line).collect();
        std::fs::write(
            &log,
            written.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let len = std::fs::metadata(&log).unwrap().len();
        assert!(len > 40_000);
        let sources = source(home.path());
        let now = at("2026-11-25T12:00:00Z");

        let mut shipper = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        let batch = shipper.read(&sources, now);
        shipper.sent(&batch);
        shipper.flush(&sources, true).await;
        assert_eq!(chunks(&bucket).await.len(), 500);
        let m = std::fs::metadata(&log).unwrap();
        assert_eq!(m.len(), len, "the file keeps its size and offsets");
        assert!(
            m.blocks() * 512 <= 2 * HOLE_ALIGN,
            "{} bytes still on disk for {len} shipped",
            m.blocks() * 512
        );

        // The process appends on; the next line is read at its offset.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, format!("{}\n", line(500)).as_bytes()).unwrap();
        let next = shipper.read(&sources, now);
        assert_eq!(next.environments[0].lines.len(), 1);
        assert_eq!(next.environments[0].lines[0].offset, len);
        assert_eq!(next.environments[0].lines[0].message, line(500));

        // Without its shipping state an agent reads past the hole: whole lines, no zeros.
        std::fs::remove_file(state_file(home.path())).unwrap();
        let mut fresh = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        let lines = &fresh.read(&sources, now).environments[0].lines;
        assert!(
            !lines.is_empty() && lines.len() < 60,
            "{} lines",
            lines.len()
        );
        for l in lines {
            let i: usize = l.message.split("line ").nth(1).unwrap()[..5]
                .parse()
                .unwrap();
            assert_eq!(l.message, line(i));
        }
        assert_eq!(lines.last().unwrap().message, line(500));
    }

    #[test]
    fn big_batches_are_split_in_order() {
        let line = |i: u64| LogLine {
            ts: Utc::now(),
            component: "scheduler".into(),
            level: LogLevel::Info,
            message: "x".repeat(100),
            offset: i,
        };
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let batch = LogBatch {
            environments: vec![
                EnvironmentLogLines {
                    environment_id: a,
                    lines: (0..5).map(line).collect(),
                },
                EnvironmentLogLines {
                    environment_id: b,
                    lines: (0..3).map(line).collect(),
                },
            ],
        };
        let parts = split(batch.clone(), 3 * 200);
        assert_eq!(parts.len(), 4, "two 205-byte lines to a part");
        let flat: Vec<(Uuid, u64)> = parts
            .iter()
            .flat_map(|p| p.environments.iter())
            .flat_map(|e| e.lines.iter().map(move |l| (e.environment_id, l.offset)))
            .collect();
        let want: Vec<(Uuid, u64)> = (0..5)
            .map(|i| (a, i))
            .chain((0..3).map(|i| (b, i)))
            .collect();
        assert_eq!(flat, want);
        assert_eq!(split(batch, usize::MAX).len(), 1);
    }

    #[tokio::test]
    async fn task_logs_are_copied_when_they_change() {
        let (home, _store, bucket) = home_and_bucket();
        let dir = home
            .path()
            .join("logs/dag_id=etl/run_id=manual__2026-11-25T10:00:00+00:00/task_id=load");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(home.path().join("logs/dag_processor")).unwrap();
        std::fs::write(home.path().join("logs/dag_processor/x.log"), "not a task").unwrap();
        std::fs::write(dir.join("attempt=1.log"), "first\n").unwrap();
        let sources = source(home.path());
        let mut s = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        s.read(&sources, Utc::now());
        s.ship_task_logs(&sources, true).await;
        let tasks = tasks_prefix(&bucket, "acme", "etl", Uuid::nil());
        let path = bucket.path(&layout::task_log_key(
            &layout::tasks_prefix("acme", "etl", Uuid::nil()),
            layout::TaskTry {
                dag: "etl",
                run: "manual__2026-11-25T10:00:00+00:00",
                task: "load",
                map_index: None,
                attempt: 1,
            },
        ));
        assert_eq!(bucket.get(&path).await.unwrap().as_ref(), b"first\n");
        assert_eq!(bucket.list(&tasks).await.unwrap().len(), 1);
        std::fs::write(dir.join("attempt=1.log"), "first\nsecond\n").unwrap();
        s.ship_task_logs(&sources, true).await;
        assert_eq!(
            bucket.get(&path).await.unwrap().as_ref(),
            b"first\nsecond\n"
        );
    }

    #[tokio::test]
    async fn removing_a_source_waits_for_the_pass_that_still_ships_it() {
        let sources = LogSources::default();
        let id = Uuid::new_v4();
        sources.insert(
            id,
            LogSource {
                tenant: "acme".into(),
                name: "etl".into(),
                home: PathBuf::from("/nonexistent"),
            },
        );
        let pass = sources.pass.clone().lock_owned().await;
        assert!(sources.snapshot().contains_key(&id));
        let removing = tokio::spawn({
            let sources = sources.clone();
            async move { sources.remove(id).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!removing.is_finished(), "returned while a pass was running");
        assert!(
            !sources.snapshot().contains_key(&id),
            "the next pass would ship it"
        );
        drop(pass);
        tokio::time::timeout(Duration::from_secs(5), removing)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn deleting_an_environments_logs_leaves_no_file() {
        let (home, store, bucket) = home_and_bucket();
        let dir = home
            .path()
            .join("logs/dag_id=etl/run_id=manual__2026-11-25T10:00:00.123456+00:00/task_id=load");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("attempt=1.log"), "first\n").unwrap();
        std::fs::create_dir_all(home.path().join("components")).unwrap();
        std::fs::write(home.path().join("components/scheduler-0.log"), "a line\n").unwrap();
        let sources = source(home.path());
        let mut s = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        s.read(&sources, Utc::now());
        s.flush(&sources, true).await;
        s.ship_task_logs(&sources, true).await;
        let prefix = logs_prefix(&bucket, "acme", "etl", Uuid::nil());
        assert_eq!(bucket.list(&prefix).await.unwrap().len(), 2);
        delete_logs(&bucket, "acme", "etl", Uuid::nil())
            .await
            .unwrap();
        let left: Vec<_> = walk_files(store.path());
        assert!(left.is_empty(), "{left:?}");
    }

    fn walk_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .flat_map(|e| {
                        if e.path().is_dir() {
                            walk_files(&e.path())
                        } else {
                            vec![e.path()]
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn expired_chunks_are_deleted_and_recent_ones_kept() {
        let (home, _store, bucket) = home_and_bucket();
        let prefix = components_prefix(&bucket, "acme", "etl", Uuid::nil()).join("scheduler");
        let old = prefix.clone().join(chunk_name(
            at("2026-10-01T00:00:00Z"),
            at("2026-10-01T00:00:30Z"),
            0,
        ));
        let new = prefix.join(chunk_name(
            at("2026-11-25T00:00:00Z"),
            at("2026-11-25T00:00:30Z"),
            10,
        ));
        bucket.put(&old, "{}".into()).await.unwrap();
        bucket.put(&new, "{}".into()).await.unwrap();
        let mut s = Shipper::new(Some(bucket.clone()), ShipSettings::default());
        s.expire(&source(home.path()), at("2026-11-25T12:00:00Z"))
            .await;
        let left: Vec<_> = bucket
            .list(&components_prefix(&bucket, "acme", "etl", Uuid::nil()))
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.location)
            .collect();
        assert_eq!(left, vec![new]);
    }
}

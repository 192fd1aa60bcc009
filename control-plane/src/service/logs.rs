//! An environment's logs for its tenant (viewers included): component logs, joined from the
//! bucket's chunks and the live tail its agent sends, filtered by component, time, level and
//! text; a live follow; and task logs, which the agent keeps in the bucket so they outlive the
//! worker that wrote them. The agent's side is `hangar_data_plane::log_ship`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::{Stream, TryStreamExt};
use hangar_data_plane::bucket::Bucket;
use hangar_tenants::api::{LogBatch, LogLevel, LogLine, LogPage, Role};
use hangar_tenants::bucket_layout as layout;
use hangar_tenants::{FieldError, FieldErrors};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use uuid::Uuid;

use super::cells::own_cell;
use super::{ServiceError, Services, StoreContext};
use crate::auth::Actor;
use crate::persistence;

/// Lines a read returns unless it asks for another number, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
/// Lines a follower first gets from before it connected, unless it asks for another number.
pub const FOLLOW_BACKLOG: usize = 100;
/// How far back a read without `since` looks.
const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(1);
/// Minutes the live tail keeps lines (chunks reach the bucket within a minute).
const TAIL_MINUTES: i32 = 15;
/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a follower checks that its environment still exists.
const FOLLOW_RECHECK: Duration = Duration::from_secs(10);
/// A chunk's first line may be older than its name's window by this much (a line's own time
/// can lag the time it was captured).
const CHUNK_SLACK: TimeDelta = TimeDelta::minutes(10);
/// Most bytes of chunks one read fetches from the bucket.
const MAX_READ_BYTES: usize = 64 * 1024 * 1024;
/// Most lines one batch from an agent may carry.
const MAX_BATCH_LINES: usize = 50_000;

/// A component log query as it arrives: every parameter optional and still text, so a bad one
/// is refused naming it.
#[derive(Debug, Clone, Default)]
pub struct RawLogQuery {
    pub component: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub level: Option<String>,
    pub q: Option<String>,
    pub limit: Option<String>,
}

/// A validated component log query.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFilter {
    /// `dag-processor` (that one), `worker` (it and every `worker-N`) or `worker-2` (that one).
    pub component: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The least severe level shown.
    pub level: Option<LogLevel>,
    /// Text the line contains, any case.
    pub q: Option<String>,
    pub limit: usize,
}

/// A time as RFC 3339 (`2026-11-25T10:00:00Z`) or an age before `now` (`30s`, `10m`, `2h`, `7d`).
fn parse_time(field: &str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = s
        .char_indices()
        .last()
        .and_then(|(i, unit)| Some((s.get(..i)?.parse::<i64>().ok()?, unit)))
        .and_then(|(n, unit)| match unit {
            's' => TimeDelta::try_seconds(n),
            'm' => TimeDelta::try_minutes(n),
            'h' => TimeDelta::try_hours(n),
            'd' => TimeDelta::try_days(n),
            _ => None,
        })
        .filter(|d| *d >= TimeDelta::zero());
    age.and_then(|d| now.checked_sub_signed(d)).ok_or_else(|| {
        FieldError::new(
            field,
            "must be an RFC 3339 time (2026-11-25T10:00:00Z) or an age (30s, 10m, 2h, 7d)",
        )
    })
}

fn valid_component(c: &str) -> bool {
    (1..=63).contains(&c.len())
        && c.starts_with(|ch: char| ch.is_ascii_lowercase())
        && c.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
}

impl LogFilter {
    pub fn parse(raw: &RawLogQuery, now: DateTime<Utc>, follow: bool) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let component = raw.component.clone().filter(|c| !c.is_empty());
        if component.as_deref().is_some_and(|c| !valid_component(c)) {
            errors.push("component",
                "must be a component name: api-server, scheduler, scheduler-N, dag-processor, triggerer, worker or worker-N",);
        }
        let mut time = |field: &str, v: &Option<String>| match v.as_deref() {
            None | Some("") => None,
            Some(s) => parse_time(field, s, now).map_err(|e| errors.0.push(e)).ok(),
        };
        let since = time("since", &raw.since);
        let until = time("until", &raw.until);
        if follow && until.is_some() {
            errors.push("until", "cannot be used with follow=true");
        }
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                errors.push("since", "must not be after until");
            }
        }
        let level = match raw.level.as_deref() {
            None | Some("") => None,
            Some(l) => {
                let parsed = LogLevel::parse(l);
                if parsed.is_none() {
                    errors.push(
                        "level",
                        "must be one of debug, info, warning, error, critical",
                    );
                }
                parsed
            }
        };
        let q = raw.q.clone().filter(|q| !q.is_empty());
        if q.as_ref().is_some_and(|q| q.chars().count() > 256) {
            errors.push("q", "must be at most 256 characters");
        }
        let default = if follow {
            FOLLOW_BACKLOG
        } else {
            DEFAULT_LIMIT
        };
        let limit = match raw.limit.as_deref() {
            None | Some("") => default,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (if follow { 0 } else { 1 }..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    errors.push("limit", format!("must be a number from 1 to {MAX_LIMIT}"));
                    default
                }
            },
        };
        errors.into_result(())?;
        Ok(Self {
            component,
            since,
            until,
            level,
            q: q.map(|q| q.to_lowercase()),
            limit,
        })
    }

    fn wants_component(&self, component: &str) -> bool {
        match &self.component {
            None => true,
            Some(c) => {
                component == c
                    || component
                        .strip_prefix(c.as_str())
                        .and_then(|r| r.strip_prefix('-'))
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|d| d.is_ascii_digit()))
            }
        }
    }

    /// Whether a line passes every filter but time.
    pub fn matches(&self, line: &LogLine) -> bool {
        self.wants_component(&line.component)
            && self.level.is_none_or(|l| line.level >= l)
            && self
                .q
                .as_ref()
                .is_none_or(|q| line.message.to_lowercase().contains(q))
    }
}

/// A chunk of component lines in the bucket.
#[derive(Debug, Clone)]
struct Chunk {
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    path: ObjectPath,
}

/// Lines oldest first, each (component, offset) once, cut to the filter's limit: the oldest
/// when `since` was given (reading forward), else the newest (a tail).
pub fn page(mut lines: Vec<LogLine>, filter: &LogFilter) -> LogPage {
    let mut seen = HashSet::new();
    lines.retain(|l| seen.insert((l.component.clone(), l.offset)));
    lines.sort_by(|a, b| (a.ts, &a.component, a.offset).cmp(&(b.ts, &b.component, b.offset)));
    let truncated = lines.len() > filter.limit;
    if truncated {
        if filter.since.is_some() {
            lines.truncate(filter.limit);
        } else {
            lines.drain(..lines.len() - filter.limit);
        }
    }
    LogPage { lines, truncated }
}

impl Services {
    /// The environment's component log lines that match the filter (viewer or above).
    pub async fn read_logs(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        raw: &RawLogQuery,
    ) -> Result<LogPage, ServiceError> {
        let now = Utc::now();
        let filter = LogFilter::parse(raw, now, false)?;
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let row = self.live_environment(&t, env).await?;
        let lines = self
            .collect_lines(&t.name, &row.name, row.id, &filter, now, None)
            .await?;
        Ok(page(lines, &filter))
    }

    /// Lines in the filter's window from the bucket and the tail (the tail up to `tail_until`).
    async fn collect_lines(
        &self,
        tenant: &str,
        env: &str,
        id: Uuid,
        filter: &LogFilter,
        now: DateTime<Utc>,
        tail_until: Option<i64>,
    ) -> Result<Vec<LogLine>, ServiceError> {
        let until = filter.until.unwrap_or(now);
        let since = filter.since.unwrap_or(until - DEFAULT_WINDOW);
        let in_window = |l: &LogLine| l.ts >= since && l.ts <= until && filter.matches(l);
        let mut lines = match &self.bucket {
            Some(b) => {
                self.bucket_lines(b, tenant, env, id, filter, since, until)
                    .await?
            }
            None => vec![],
        };
        lines.retain(in_window);
        let tail = persistence::log_tail::between(&self.db.pool, id, since, until)
            .await
            .store("read the log tail")?;
        lines.extend(
            tail.into_iter()
                .filter(|t| tail_until.is_none_or(|m| t.id <= m))
                .map(|t| t.line)
                .filter(in_window),
        );
        Ok(lines)
    }

    /// The matching lines of the chunks that overlap `[since, until]`, read in the order the
    /// page keeps (forward with `since`, else newest first) until enough are in hand.
    #[allow(clippy::too_many_arguments)]
    async fn bucket_lines(
        &self,
        bucket: &Bucket,
        tenant: &str,
        env: &str,
        id: Uuid,
        filter: &LogFilter,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<LogLine>, ServiceError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            ServiceError::Unavailable(format!("the platform bucket failed to list logs: {e}"))
        };
        let prefix = bucket.path(&layout::components_prefix(tenant, env, id));
        let listed = bucket
            .store()
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| unavailable(&e))?;
        let mut chunks = Vec::new();
        for dir in listed.common_prefixes {
            let Some(component) = dir.filename().map(str::to_owned) else {
                continue;
            };
            if !filter.wants_component(&component) {
                continue;
            }
            let start = dir.clone().join(format!(
                "{:013}",
                (since - CHUNK_SLACK).timestamp_millis().max(0)
            ));
            let objects: Vec<_> = bucket
                .store()
                .list_with_offset(Some(&dir), &start)
                .try_collect()
                .await
                .map_err(|e| unavailable(&e))?;
            for o in objects {
                let Some((first, last, _)) =
                    o.location.filename().and_then(layout::parse_chunk_name)
                else {
                    continue;
                };
                let (Some(first), Some(last)) = (
                    DateTime::from_timestamp_millis(first),
                    DateTime::from_timestamp_millis(last),
                ) else {
                    continue;
                };
                if last >= since && first <= until {
                    chunks.push(Chunk {
                        first,
                        last,
                        path: o.location,
                    });
                }
            }
        }
        let forward = filter.since.is_some();
        if forward {
            chunks.sort_by_key(|c| c.first);
        } else {
            chunks.sort_by_key(|c| std::cmp::Reverse(c.last));
        }
        let mut lines: Vec<LogLine> = Vec::new();
        let mut bytes = 0usize;
        for chunk in chunks {
            // Once `limit` lines are in hand, a chunk wholly beyond the limit-th is not needed.
            if lines.len() >= filter.limit {
                let mut ts: Vec<DateTime<Utc>> = lines.iter().map(|l| l.ts).collect();
                ts.sort();
                let done = if forward {
                    ts.get(filter.limit - 1).is_some_and(|b| chunk.first > *b)
                } else {
                    ts.get(ts.len() - filter.limit)
                        .is_some_and(|b| chunk.last < *b)
                };
                if done || bytes > MAX_READ_BYTES {
                    break;
                }
            }
            let body = match bucket.get(&chunk.path).await {
                Ok(b) => b,
                // Expired between the listing and now.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(unavailable(&e)),
            };
            bytes += body.len();
            lines.extend(
                body.split(|b| *b == b'\n')
                    .filter_map(|l| serde_json::from_slice::<LogLine>(l).ok())
                    .filter(|l| l.ts >= since && l.ts <= until && filter.matches(l)),
            );
        }
        Ok(lines)
    }

    /// Follows the environment's component logs: the last lines that match (the filter's
    /// limit), then every new one as its agent sends it, until the environment is deleted or
    /// the caller goes away.
    pub async fn follow_logs(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        raw: &RawLogQuery,
    ) -> Result<impl Stream<Item = LogLine> + Send + 'static, ServiceError> {
        let now = Utc::now();
        let filter = LogFilter::parse(raw, now, true)?;
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let row = self.live_environment(&t, env).await?;
        let start = persistence::log_tail::last_id(&self.db.pool, row.id)
            .await
            .store("read the log tail")?;
        let backlog = if filter.limit == 0 {
            vec![]
        } else {
            let lines = self
                .collect_lines(&t.name, &row.name, row.id, &filter, now, Some(start))
                .await?;
            page(lines, &filter).lines
        };
        // What was delivered, by component: a line at or before it is not sent again.
        let mut delivered: BTreeMap<String, u64> = BTreeMap::new();
        for l in &backlog {
            let d = delivered.entry(l.component.clone()).or_default();
            *d = (*d).max(l.offset);
        }
        let state = Follow {
            services: self.clone(),
            tenant: t,
            env: row.name,
            id: row.id,
            filter,
            after: start,
            delivered,
            pending: backlog.into(),
            checked: tokio::time::Instant::now(),
        };
        Ok(futures::stream::unfold(state, |mut s| async move {
            s.next().await.map(|line| (line, s))
        }))
    }

    /// Lines an agent captured in its cell's environments join the live tail (cell token).
    /// Lines of environments no longer on the cell are dropped.
    pub async fn ingest_log_lines(
        &self,
        actor: &Actor,
        cell: &str,
        batch: LogBatch,
    ) -> Result<u64, ServiceError> {
        let cell_id = own_cell(actor, cell)?;
        let total: usize = batch.environments.iter().map(|e| e.lines.len()).sum();
        if total > MAX_BATCH_LINES {
            return Err(FieldError::new(
                "environments",
                format!("must carry at most {MAX_BATCH_LINES} lines in one batch"),
            )
            .into());
        }
        for (i, e) in batch.environments.iter().enumerate() {
            if let Some(j) = e.lines.iter().position(|l| !valid_component(&l.component)) {
                return Err(FieldError::new(
                    format!("environments[{i}].lines[{j}].component"),
                    "must be a component name",
                )
                .into());
            }
        }
        let ids: Vec<Uuid> = batch
            .environments
            .iter()
            .map(|e| e.environment_id)
            .collect();
        let placed = persistence::log_tail::placed_on(&self.db.pool, cell_id, &ids)
            .await
            .store("read the cell's environments")?;
        let mut added = 0;
        for e in batch
            .environments
            .iter()
            .filter(|e| placed.contains(&e.environment_id))
        {
            added += persistence::log_tail::insert(&self.db.pool, e.environment_id, &e.lines)
                .await
                .store("add log lines")?;
        }
        // The tail is pruned at most once a minute, by whichever batch comes first.
        let now = Utc::now().timestamp();
        let last = self.log_pruned_at.load(Ordering::Relaxed);
        if now - last >= 60
            && self
                .log_pruned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if let Err(e) = persistence::log_tail::prune(&self.db.pool, TAIL_MINUTES).await {
                tracing::warn!(error = %e, "failed to prune the log tail");
            }
        }
        Ok(added)
    }

    /// The log of one task try as Airflow wrote it, rendered as text (viewer or above). Without
    /// `try_number`, the latest try.
    #[allow(clippy::too_many_arguments)]
    pub async fn task_log(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        dag: &str,
        run: &str,
        task: &str,
        try_number: Option<&str>,
        map_index: Option<&str>,
    ) -> Result<String, ServiceError> {
        let mut errors = FieldErrors::default();
        let key = |v: &str| {
            (1..=250).contains(&v.len())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        };
        if !key(dag) {
            errors.push("dag", "must be a DAG id: letters, digits, _ . -");
        }
        if !key(task) {
            errors.push("task", "must be a task id: letters, digits, _ . -");
        }
        if !(1..=250).contains(&run.chars().count())
            || run.chars().any(|c| c == '/' || c.is_control())
        {
            errors.push(
                "run",
                "must be a DAG run id without / or control characters",
            );
        }
        let attempt = match try_number {
            None | Some("") => None,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    errors.push("try", "must be a try number from 1");
                    None
                }
            },
        };
        let map_index = match map_index {
            None | Some("") => None,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= -1 => Some(n),
                _ => {
                    errors.push("map_index", "must be -1 or a map index from 0");
                    None
                }
            },
        };
        errors.into_result(())?;
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let row = self.live_environment(&t, env).await?;
        let bucket = self.bucket.as_ref().ok_or_else(|| {
            ServiceError::Unavailable(
                "this platform has no bucket configured (HANGAR_BUCKET_URL), so task logs are not kept"
                    .to_owned(),
            )
        })?;
        let tasks = layout::tasks_prefix(&t.name, &row.name, row.id);
        let task_try = |attempt| layout::TaskTry {
            dag,
            run,
            task,
            map_index,
            attempt,
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            ServiceError::Unavailable(format!(
                "the platform bucket failed to read a task log: {e}"
            ))
        };
        let not_found = |n: Option<u32>| {
            let which = n.map_or_else(|| "any try".to_owned(), |n| format!("try {n}"));
            ServiceError::not_found("task log", format!("{dag}/{run}/{task} ({which})"))
        };
        let attempt = match attempt {
            Some(n) => n,
            None => {
                // The latest try shipped: the highest `attempt=N.log` in the task's folder.
                let folder = bucket.path(&layout::task_log_key(&tasks, task_try(1)).parent());
                let listed = bucket
                    .store()
                    .list_with_delimiter(Some(&folder))
                    .await
                    .map_err(|e| unavailable(&e))?;
                listed
                    .objects
                    .iter()
                    .filter_map(|o| {
                        o.location
                            .filename()?
                            .strip_prefix("attempt=")?
                            .strip_suffix(".log")?
                            .parse::<u32>()
                            .ok()
                    })
                    .max()
                    .ok_or_else(|| not_found(None))?
            }
        };
        let path = bucket.path(&layout::task_log_key(&tasks, task_try(attempt)));
        match bucket.get(&path).await {
            Ok(body) => Ok(render_task_log(&body)),
            Err(e) if e.is_not_found() => Err(not_found(Some(attempt))),
            Err(e) => Err(unavailable(&e)),
        }
    }
}

/// A follower's place: what it was given, what it is still to be given.
struct Follow {
    services: Services,
    tenant: super::TenantRef,
    env: String,
    id: Uuid,
    filter: LogFilter,
    after: i64,
    delivered: BTreeMap<String, u64>,
    pending: std::collections::VecDeque<LogLine>,
    checked: tokio::time::Instant,
}

impl Follow {
    /// The next line for the follower; `None` ends the stream (the environment is gone).
    async fn next(&mut self) -> Option<LogLine> {
        loop {
            if let Some(l) = self.pending.pop_front() {
                return Some(l);
            }
            if self.checked.elapsed() >= FOLLOW_RECHECK {
                self.checked = tokio::time::Instant::now();
                let live = self
                    .services
                    .live_environment(&self.tenant, &self.env)
                    .await;
                if !live.is_ok_and(|r| r.id == self.id) {
                    return None;
                }
            }
            match persistence::log_tail::after(&self.services.db.pool, self.id, self.after, 1000)
                .await
            {
                Ok(rows) if !rows.is_empty() => {
                    for r in rows {
                        self.after = self.after.max(r.id);
                        let line = r.line;
                        let seen = self.delivered.get(&line.component).copied();
                        if seen.is_some_and(|o| line.offset <= o) || !self.filter.matches(&line) {
                            continue;
                        }
                        self.delivered.insert(line.component.clone(), line.offset);
                        self.pending.push_back(line);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(env = %self.env, error = %e, "failed to read the log tail")
                }
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

/// A task log as text. Airflow 3 writes one JSON object per line (`timestamp`, `level`,
/// `event`, and `error_detail` with an exception's frames); each becomes
/// `[time] LEVEL - event`, an exception its `Traceback (most recent call last):` frames. Lines
/// that are not JSON are kept as they are.
pub fn render_task_log(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let s = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let level = s("level").to_uppercase();
        out.push_str(&format!(
            "[{}] {} - {}",
            s("timestamp"),
            if level.is_empty() { "INFO" } else { &level },
            s("event")
        ));
        for (k, v) in &o {
            if matches!(
                k.as_str(),
                "timestamp" | "level" | "event" | "error_detail" | "logger"
            ) {
                continue;
            }
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.push_str(&format!(" {k}={v}"));
        }
        out.push('\n');
        for exc in o
            .get("error_detail")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            let e = |k: &str| exc.get(k).and_then(|v| v.as_str()).unwrap_or("");
            out.push_str("Traceback (most recent call last):\n");
            for f in exc
                .get("frames")
                .and_then(|f| f.as_array())
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "  File \"{}\", line {}, in {}\n",
                    f.get("filename").and_then(|v| v.as_str()).unwrap_or("?"),
                    f.get("lineno")
                        .map_or_else(|| "?".to_owned(), |v| v.to_string()),
                    f.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                ));
            }
            let value = exc.get("exc_value").map_or_else(String::new, |v| {
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            });
            out.push_str(&format!("{}: {}\n", e("exc_type"), value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawLogQuery {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        RawLogQuery {
            component: get("component"),
            since: get("since"),
            until: get("until"),
            level: get("level"),
            q: get("q"),
            limit: get("limit"),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn line(ts: &str, component: &str, level: LogLevel, message: &str, offset: u64) -> LogLine {
        LogLine {
            ts: at(ts),
            component: component.into(),
            level,
            message: message.into(),
            offset,
        }
    }

    #[test]
    fn bad_parameters_are_refused_naming_each() {
        let now = at("2026-11-25T12:00:00Z");
        let err = LogFilter::parse(
            &raw(&[
                ("component", "Scheduler;"),
                ("since", "yesterday"),
                ("level", "loud"),
                ("limit", "0"),
            ]),
            now,
            false,
        )
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["component", "since", "level", "limit"]);
        let err = LogFilter::parse(&raw(&[("until", "1h")]), now, true).unwrap_err();
        assert_eq!(err.0[0].field, "until");
        let err =
            LogFilter::parse(&raw(&[("since", "1h"), ("until", "2h")]), now, false).unwrap_err();
        assert_eq!(err.0[0].field, "since");
    }

    #[test]
    fn ages_and_times_both_name_a_moment() {
        let now = at("2026-11-25T12:00:00Z");
        let f = LogFilter::parse(
            &raw(&[("since", "90m"), ("until", "2026-11-25T11:59:00+00:00")]),
            now,
            false,
        )
        .unwrap();
        assert_eq!(f.since, Some(at("2026-11-25T10:30:00Z")));
        assert_eq!(f.until, Some(at("2026-11-25T11:59:00Z")));
        assert_eq!(f.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn filters_take_a_component_family_a_least_level_and_text_in_any_case() {
        let now = at("2026-11-25T12:00:00Z");
        let f = LogFilter::parse(
            &raw(&[("component", "worker"), ("level", "warning"), ("q", "BOOM")]),
            now,
            false,
        )
        .unwrap();
        let t = "2026-11-25T11:00:00Z";
        assert!(f.matches(&line(t, "worker-3", LogLevel::Error, "boom", 0)));
        assert!(!f.matches(&line(t, "worker-3", LogLevel::Info, "boom", 0)));
        assert!(!f.matches(&line(t, "workers", LogLevel::Error, "boom", 0)));
        assert!(!f.matches(&line(t, "scheduler", LogLevel::Error, "boom", 0)));
        assert!(!f.matches(&line(t, "worker-1", LogLevel::Critical, "quiet", 0)));
    }

    #[test]
    fn a_page_shows_each_line_once_in_time_order_cut_at_the_limit() {
        let lines = vec![
            line("2026-11-25T11:00:03Z", "scheduler", LogLevel::Info, "c", 20),
            line("2026-11-25T11:00:01Z", "scheduler", LogLevel::Info, "a", 0),
            line("2026-11-25T11:00:02Z", "scheduler", LogLevel::Info, "b", 10),
            line("2026-11-25T11:00:02Z", "scheduler", LogLevel::Info, "b", 10),
        ];
        let now = at("2026-11-25T12:00:00Z");
        let tail = LogFilter::parse(&raw(&[("limit", "2")]), now, false).unwrap();
        let p = page(lines.clone(), &tail);
        assert!(p.truncated);
        assert_eq!(
            p.lines
                .iter()
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
        let forward =
            LogFilter::parse(&raw(&[("limit", "2"), ("since", "2h")]), now, false).unwrap();
        let p = page(lines, &forward);
        assert_eq!(
            p.lines
                .iter()
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn a_task_log_renders_its_exception_as_a_traceback() {
        let body = br#"{"timestamp":"2026-11-25T10:00:00.000000Z","level":"info","event":"Task started","logger":"task"}
{"timestamp":"2026-11-25T10:00:01.000000Z","level":"error","event":"Task failed with exception","error_detail":[{"exc_type":"ValueError","exc_value":"boom","frames":[{"filename":"/dags/fail.py","lineno":7,"name":"explode"}]}]}
plain text
"#;
        assert_eq!(
            render_task_log(body),
            "[2026-11-25T10:00:00.000000Z] INFO - Task started\n\
             [2026-11-25T10:00:01.000000Z] ERROR - Task failed with exception\n\
             Traceback (most recent call last):\n  File \"/dags/fail.py\", line 7, in explode\n\
             ValueError: boom\nplain text\n"
        );
    }
}

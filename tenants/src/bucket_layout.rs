//! Where everything of an environment sits in the platform bucket, as keys relative to the
//! bucket's root (its configured prefix). Pure, so the control plane (DAG uploads, log reads),
//! the agent (DAG sync, log shipping) and the Kubernetes renderer (the DAG sync sidecar's
//! prefix, the requirements archive) name the same objects without sharing any I/O code.
//!
//! ```text
//! tenants/{tenant}/environments/{env}/
//!     dags/…   plugins/…   requirements.txt
//!     logs/{env id}/components/{component}/{first ms}-{last ms}-{offset}.ndjson
//!     logs/{env id}/tasks/dag_id=…/run_id=…/task_id=…/[map_index=…/]attempt=N.log
//! ```

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A key (or a prefix) in the bucket: its segments from the bucket's root. Each segment is
/// one path part (a `/` inside one is the store's business to escape, never a separator).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Vec<String>);

impl Key {
    /// This key with `part` appended as one segment.
    pub fn join(mut self, part: impl Into<String>) -> Self {
        self.0.push(part.into());
        self
    }

    /// This key with a relative, already validated path (`a/b.py`) appended, a segment per
    /// `/`-separated part.
    pub fn child(mut self, rel: &str) -> Self {
        self.0
            .extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_owned));
        self
    }

    /// The key one level up (the folder of an object).
    pub fn parent(mut self) -> Self {
        self.0.pop();
        self
    }

    /// A key as written out (`tenants/a/environments/e/python/x.tar.gz`): relative, with no
    /// empty, `.` or `..` segment and no control character; `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<String> = s.split('/').map(str::to_owned).collect();
        let bad =
            |p: &String| p.is_empty() || p == "." || p == ".." || p.chars().any(char::is_control);
        (!parts.iter().any(bad)).then_some(Self(parts))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// The prefix an environment owns.
pub fn env_prefix(tenant: &str, env: &str) -> Key {
    Key(vec![
        "tenants".to_owned(),
        tenant.to_owned(),
        "environments".to_owned(),
        env.to_owned(),
    ])
}

/// An environment's `dags/` prefix.
pub fn dags_prefix(tenant: &str, env: &str) -> Key {
    env_prefix(tenant, env).join("dags")
}

/// An environment's `plugins/` prefix.
pub fn plugins_prefix(tenant: &str, env: &str) -> Key {
    env_prefix(tenant, env).join("plugins")
}

/// The `requirements.txt` a tenant may drop beside its DAGs.
pub fn requirements_key(tenant: &str, env: &str) -> Key {
    env_prefix(tenant, env).join("requirements.txt")
}

/// The archive of an environment's installed requirements, by the digest of what they were
/// built from (built once, unpacked by every pod on Kubernetes).
pub fn requirements_archive(tenant: &str, env: &str, digest: &str) -> Key {
    env_prefix(tenant, env)
        .join("python")
        .join(format!("{digest}.tar.gz"))
}

/// `…/environments/{env}/logs/{env id}`: the environment id keeps a recreated environment of
/// the same name from showing its predecessor's logs.
pub fn logs_prefix(tenant: &str, env: &str, id: Uuid) -> Key {
    env_prefix(tenant, env)
        .join("logs")
        .join(id.simple().to_string())
}

/// Where the chunks of each component's log are, a folder per component.
pub fn components_prefix(tenant: &str, env: &str, id: Uuid) -> Key {
    logs_prefix(tenant, env, id).join("components")
}

/// Where task logs are, as Airflow names their files.
pub fn tasks_prefix(tenant: &str, env: &str, id: Uuid) -> Key {
    logs_prefix(tenant, env, id).join("tasks")
}

/// A chunk's name: the times of its earliest and latest lines (ms) and the offset of its first.
pub fn chunk_name(first: DateTime<Utc>, last: DateTime<Utc>, offset: u64) -> String {
    format!(
        "{:013}-{:013}-{offset:012}.ndjson",
        first.timestamp_millis(),
        last.timestamp_millis()
    )
}

/// The times (ms) and offset a chunk name carries.
pub fn parse_chunk_name(name: &str) -> Option<(i64, i64, u64)> {
    let stem = name.strip_suffix(".ndjson")?;
    let mut parts = stem.splitn(3, '-');
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some((first, last, offset))
}

/// One task try, as Airflow names its log file.
#[derive(Debug, Clone, Copy)]
pub struct TaskTry<'a> {
    pub dag: &'a str,
    pub run: &'a str,
    pub task: &'a str,
    pub map_index: Option<i64>,
    pub attempt: u32,
}

/// Where a task try's log is kept under `tasks` ([`tasks_prefix`]):
/// `dag_id=…/run_id=…/task_id=…/[map_index=…/]attempt=N.log`.
pub fn task_log_key(tasks: &Key, t: TaskTry<'_>) -> Key {
    let mut key = tasks
        .clone()
        .join(format!("dag_id={}", t.dag))
        .join(format!("run_id={}", t.run))
        .join(format!("task_id={}", t.task));
    if let Some(m) = t.map_index.filter(|m| *m >= 0) {
        key = key.join(format!("map_index={m}"));
    }
    key.join(format!("attempt={}.log", t.attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keys_sit_under_the_tenant_and_environment() {
        assert_eq!(
            dags_prefix("acme", "etl").to_string(),
            "tenants/acme/environments/etl/dags"
        );
        assert_eq!(
            requirements_key("acme", "etl").to_string(),
            "tenants/acme/environments/etl/requirements.txt"
        );
        assert_eq!(
            components_prefix("acme", "etl", Uuid::nil()).to_string(),
            "tenants/acme/environments/etl/logs/00000000000000000000000000000000/components"
        );
    }

    #[test]
    fn task_log_keys_follow_airflow_and_skip_an_unmapped_index() {
        let tasks = tasks_prefix("acme", "etl", Uuid::nil());
        let t = TaskTry {
            dag: "d",
            run: "r",
            task: "t",
            map_index: Some(-1),
            attempt: 2,
        };
        let key = task_log_key(&tasks, t);
        assert!(key
            .to_string()
            .ends_with("/tasks/dag_id=d/run_id=r/task_id=t/attempt=2.log"));
        let mapped = task_log_key(
            &tasks,
            TaskTry {
                map_index: Some(3),
                ..t
            },
        );
        assert!(mapped.to_string().ends_with("/map_index=3/attempt=2.log"));
        assert_eq!(
            mapped.parent().segments().last().map(String::as_str),
            Some("map_index=3")
        );
    }

    #[test]
    fn chunk_names_round_trip_and_sort_by_time() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let a = chunk_name(at("2026-11-25T10:00:00Z"), at("2026-11-25T10:00:30Z"), 0);
        let b = chunk_name(at("2026-11-25T10:00:30Z"), at("2026-11-25T10:01:00Z"), 4096);
        assert!(a < b);
        assert_eq!(
            parse_chunk_name(&b),
            Some((1_795_600_830_000, 1_795_600_860_000, 4096))
        );
        assert_eq!(parse_chunk_name("x.ndjson"), None);
    }

    #[test]
    fn a_written_key_parses_back_and_nothing_escaping_does() {
        let k = requirements_archive("acme", "etl", "0123456789");
        assert_eq!(Key::parse(&k.to_string()), Some(k));
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/\nb", "a/"] {
            assert_eq!(Key::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_child_path_is_split_at_slashes() {
        let k = dags_prefix("t", "e").child("team//b.py");
        assert_eq!(k.segments().len(), 7);
        assert_eq!(k.to_string(), "tenants/t/environments/e/dags/team/b.py");
    }
}

//! Component logs on the kubernetes runtime: the Airflow container of every pod of an
//! environment, followed through the Kubernetes log API (`follow=true&timestamps=true`) into a
//! file per pod under a folder of the agent's (`<logs dir>/<env id>/components/<name>.log`),
//! which the cell's log shipper reads exactly as it reads the process runtime's component
//! logs: live to the control plane, in chunks to the platform bucket, kept for the retention,
//! so a pod's logs outlive it.
//!
//! A pod's file is named after its component and an ordinal the follower gives it the first
//! time it sees the pod (`scheduler-0`, `worker-3`; kept in `pods.json` beside the files), so
//! `--component worker` finds every worker's lines as on the process runtime. A follower that
//! restarts (the agent did, or the stream ended) asks for the lines since the last one it wrote
//! and skips those it already has, by the timestamp the API put in front of each (kept in
//! `follow/<name>`, since the shipper frees the disk of what it shipped: the log file itself
//! reads as zeros there).
//! Sidecars (the DAG sync) are not followed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use tokio::task::JoinHandle;

use super::cluster::MANAGED_SELECTOR;

/// Why the follower could not look for new pods.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("failed to list the pods of namespace {namespace} to follow their logs")]
    List {
        namespace: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to write {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The label naming a pod's component (and its Airflow container).
const COMPONENT_LABEL: &str = "hangar.dev/component";

/// Follows the Airflow containers of one environment's pods into files.
pub struct LogFollower {
    pods: Api<Pod>,
    namespace: String,
    /// The environment's folder for the log shipper (its `home`): `components/` holds the files.
    home: PathBuf,
    /// Each pod's file name (`worker-3`), as given once.
    names: BTreeMap<String, String>,
    following: HashMap<String, JoinHandle<()>>,
}

impl LogFollower {
    pub fn new(client: kube::Client, namespace: &str, home: &Path) -> Self {
        let names = std::fs::read(home.join("pods.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            pods: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            home: home.to_owned(),
            names,
            following: HashMap::new(),
        }
    }

    /// The folder the log shipper reads.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Starts following every running Airflow container of the namespace not followed yet
    /// (a follower whose stream ended is started again if its pod still runs).
    pub async fn refresh(&mut self) -> Result<(), LogsError> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await
            .map_err(|e| LogsError::List {
                namespace: self.namespace.clone(),
                source: Box::new(e),
            })?;
        self.following.retain(|_, h| !h.is_finished());
        let dir = self.home.join("components");
        let mut named = false;
        for pod in pods {
            let Some(pod_name) = pod.metadata.name.clone() else {
                continue;
            };
            let Some(component) = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(COMPONENT_LABEL))
                .cloned()
            else {
                continue;
            };
            if !running(&pod, &component) || self.following.contains_key(&pod_name) {
                continue;
            }
            let file = match self.names.get(&pod_name) {
                Some(n) => n.clone(),
                None => {
                    let n = next_name(&self.names, &component);
                    self.names.insert(pod_name.clone(), n.clone());
                    named = true;
                    n
                }
            };
            std::fs::create_dir_all(&dir).map_err(|e| self.files_error(&dir, e))?;
            let path = dir.join(format!("{file}.log"));
            let marks = self.home.join("follow");
            std::fs::create_dir_all(&marks).map_err(|e| self.files_error(&marks, e))?;
            let mark = marks.join(&file);
            let pods = self.pods.clone();
            let handle = tokio::spawn({
                let pod_name = pod_name.clone();
                async move {
                    if let Err(e) = follow(&pods, &pod_name, &component, &path, &mark).await {
                        tracing::debug!(pod = %pod_name, error = %e, "a pod's log stream ended");
                    }
                }
            });
            self.following.insert(pod_name, handle);
        }
        if named {
            let json = serde_json::to_vec(&self.names).unwrap_or_default();
            let path = self.home.join("pods.json");
            std::fs::write(&path, json).map_err(|e| self.files_error(&path, e))?;
        }
        Ok(())
    }

    fn files_error(&self, path: &Path, source: std::io::Error) -> LogsError {
        LogsError::Files {
            path: path.to_owned(),
            source,
        }
    }

    /// Stops following (the environment is deleted or the agent stops).
    pub fn stop(&mut self) {
        for (_, h) in self.following.drain() {
            h.abort();
        }
    }
}

impl Drop for LogFollower {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the pod's Airflow container (named after its component) runs now.
fn running(pod: &Pod, container: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.name == container && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
}

/// The first `component-N` no pod has.
fn next_name(names: &BTreeMap<String, String>, component: &str) -> String {
    let next = names
        .values()
        .filter_map(|n| {
            n.strip_prefix(component)?
                .strip_prefix('-')?
                .parse::<u32>()
                .ok()
        })
        .max()
        .map_or(0, |n| n + 1);
    format!("{component}-{next}")
}

/// The timestamp the log API put in front of a line (`2026-12-01T10:00:00.123456789Z text`).
fn api_timestamp(line: &str) -> Option<(DateTime<Utc>, &str)> {
    let (ts, rest) = line.split_once(' ')?;
    let ts = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    Some((ts, rest))
}

/// The timestamp of the last line written, as `mark` keeps it.
fn last_timestamp(mark: &Path) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(mark).ok()?;
    Some(
        DateTime::parse_from_rfc3339(text.trim())
            .ok()?
            .with_timezone(&Utc),
    )
}

/// Follows one container's log into `path`, from the line after the one `mark` names.
async fn follow(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    path: &Path,
    mark: &Path,
) -> Result<(), FollowError> {
    let last = last_timestamp(mark);
    let params = LogParams {
        container: Some(container.to_owned()),
        follow: true,
        timestamps: true,
        // Whole seconds, rounded up: lines at or before `last` are skipped below.
        since_seconds: last.map(|t| (Utc::now() - t).num_seconds().max(0) + 1),
        ..LogParams::default()
    };
    let stream = pods.log_stream(pod, &params).await?;
    let mut lines = stream.lines();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    while let Some(line) = lines.next().await {
        let line = line?;
        if let (Some(last), Some((at, _))) = (last, api_timestamp(&line)) {
            if at <= last {
                continue;
            }
        }
        writeln!(file, "{line}")?;
        // After the line is written: a crash between the two repeats one line, never loses it.
        if let Some((at, _)) = api_timestamp(&line) {
            std::fs::write(mark, at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))?;
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("failed to read the log stream")]
    Api(#[from] kube::Error),
    #[error("failed to write the log file")]
    Files(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pods_get_the_next_free_ordinal_of_their_component() {
        let mut names = BTreeMap::new();
        assert_eq!(next_name(&names, "worker"), "worker-0");
        names.insert("worker-abc".to_owned(), "worker-0".to_owned());
        names.insert("worker-def".to_owned(), "worker-4".to_owned());
        names.insert("scheduler-x".to_owned(), "scheduler-0".to_owned());
        assert_eq!(next_name(&names, "worker"), "worker-5");
        assert_eq!(next_name(&names, "scheduler"), "scheduler-1");
        assert_eq!(next_name(&names, "api-server"), "api-server-0");
    }

    #[test]
    fn a_line_starts_with_the_apis_timestamp() {
        let (at, rest) = api_timestamp("2026-12-01T10:00:01.250000000Z [INFO] ready").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T10:00:01.250+00:00");
        assert_eq!(rest, "[INFO] ready");
        assert!(api_timestamp("no timestamp here").is_none());
    }
}

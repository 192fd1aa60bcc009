//! The Airflow CLI on a Kubernetes cell: each command runs in a short-lived pod of its own in
//! the environment's namespace (the renderer's `cli_pod`: the scheduler's pod, run once, its
//! argv the command the agent validated), which is created, watched until it ends (its phase,
//! polled), its main container's log read as the command's output, then deleted whatever
//! happened (a command past its time limit too: the pod's `activeDeadlineSeconds` stops it on
//! the cluster's side even if the agent is gone).
//!
//! Kubernetes keeps one log per container, stdout and stderr merged in the order written: all
//! of it is the result's `stdout` (`stderr` only says why a pod failed before its command ran).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use uuid::Uuid;

use super::error::is_not_found;
use super::runtime::RenderFailure;
use crate::cli_runner::{CliOutput, Limits};
use hangar_tenants::blueprint::kubernetes::CLI_CONTAINER;

/// Renders the pod of one command: its call's id, its validated `airflow` arguments, its time
/// limit in seconds.
pub type RenderCliPod =
    Arc<dyn Fn(Uuid, &[String], u32) -> Result<serde_json::Value, RenderFailure> + Send + Sync>;

/// Why a command could not be run in a pod (a command that ran and failed is not an error: it
/// has an exit code).
#[derive(Debug, thiserror::Error)]
pub enum CliPodError {
    #[error("failed to render the pod of CLI call {call}")]
    Render {
        call: Uuid,
        #[source]
        source: RenderFailure,
    },
    #[error("failed to read the rendered pod of CLI call {call}")]
    Decode {
        call: Uuid,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to create pod {name} in namespace {namespace}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read pod {name} in namespace {namespace}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read the log of pod {name} in namespace {namespace}")]
    Log {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read the log of pod {name} in namespace {namespace}")]
    LogBody {
        namespace: String,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where an environment's CLI commands run on a Kubernetes cell: its namespace, and its pod as
/// the running revision renders it.
#[derive(Clone)]
pub struct PodTarget {
    client: kube::Client,
    namespace: String,
    revision: i64,
    render: RenderCliPod,
    /// How often a command's pod is checked for having finished.
    poll: Duration,
}

impl fmt::Debug for PodTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodTarget")
            .field("namespace", &self.namespace)
            .field("revision", &self.revision)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// Two targets are the same when they are the same revision of the same environment.
impl PartialEq for PodTarget {
    fn eq(&self, other: &Self) -> bool {
        (&self.namespace, self.revision) == (&other.namespace, other.revision)
    }
}

impl Eq for PodTarget {}

/// The pod's end as the agent saw it.
struct Ended {
    pod: Pod,
    timed_out: bool,
}

impl PodTarget {
    /// Commands in `namespace`, their pods rendered by `render` (of revision `revision`),
    /// checked every 2 seconds.
    pub fn new(
        client: kube::Client,
        namespace: String,
        revision: i64,
        render: RenderCliPod,
    ) -> Self {
        Self {
            client,
            namespace,
            revision,
            render,
            poll: Duration::from_secs(2),
        }
    }

    /// Checks a command's pod every `every` instead (tests make it short).
    pub fn with_poll(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// Runs `airflow args…` (validated by the caller) in a pod of its own, for at most
    /// `limits.timeout` from its creation, keeping at most `limits.max_output` bytes of its log.
    pub async fn run(
        &self,
        call: Uuid,
        args: &[String],
        limits: Limits,
    ) -> Result<CliOutput, CliPodError> {
        let seconds = u32::try_from(limits.timeout.as_secs().max(1)).unwrap_or(u32::MAX);
        let rendered = (self.render)(call, args, seconds)
            .map_err(|source| CliPodError::Render { call, source })?;
        let pod: Pod = serde_json::from_value(rendered)
            .map_err(|source| CliPodError::Decode { call, source })?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(|source| CliPodError::Create {
                namespace: self.namespace.clone(),
                name: name.clone(),
                source,
            })?;
        let outcome = self.follow(&pods, &name, limits).await;
        // Always deleted: a finished pod holds nothing but its record, an unfinished one its
        // resources until the deadline.
        if let Err(e) = pods.delete(&name, &DeleteParams::default()).await {
            if !is_not_found(&e) {
                tracing::warn!(namespace = %self.namespace, pod = %name, error = %e, "failed to delete a CLI pod (its deadline still stops it)");
            }
        }
        outcome
    }

    /// Waits for the pod to end (or the time limit), then reads what its command wrote.
    async fn follow(
        &self,
        pods: &Api<Pod>,
        name: &str,
        limits: Limits,
    ) -> Result<CliOutput, CliPodError> {
        let ended = self.wait(pods, name, limits.timeout).await?;
        let exit_code = if ended.timed_out {
            None
        } else {
            exit_code(&ended.pod)
        };
        let log = self.log(pods, name, limits.max_output).await;
        let (stdout, truncated) = match log {
            Ok(l) => l,
            // A container that never started has no log: not an error of the command's.
            Err(_) if ended.timed_out || exit_code.is_none() => (String::new(), false),
            Err(e) => return Err(e),
        };
        let stderr = if exit_code.is_none() && !ended.timed_out {
            format!(
                "the pod {name} ended before its command did: {}",
                why_failed(&ended.pod)
            )
        } else {
            String::new()
        };
        Ok(CliOutput {
            stdout,
            stderr,
            exit_code,
            timed_out: ended.timed_out,
            truncated,
        })
    }

    /// Polls the pod's phase until it is `Succeeded` or `Failed`, or `timeout` passes.
    async fn wait(
        &self,
        pods: &Api<Pod>,
        name: &str,
        timeout: Duration,
    ) -> Result<Ended, CliPodError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pod = pods.get(name).await.map_err(|source| CliPodError::Read {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                source,
            })?;
            let status = pod.status.as_ref();
            if matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ) {
                // The pod's own deadline (`activeDeadlineSeconds`) ended it.
                let timed_out =
                    status.and_then(|s| s.reason.as_deref()) == Some("DeadlineExceeded");
                return Ok(Ended { pod, timed_out });
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Ended {
                    pod,
                    timed_out: true,
                });
            }
            tokio::time::sleep(self.poll.min(deadline - now)).await;
        }
    }

    /// The command's container's log, at most `cap` bytes of it; whether more was dropped.
    async fn log(
        &self,
        pods: &Api<Pod>,
        name: &str,
        cap: usize,
    ) -> Result<(String, bool), CliPodError> {
        let params = LogParams {
            container: Some(CLI_CONTAINER.to_owned()),
            limit_bytes: Some(i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX)),
            ..LogParams::default()
        };
        let stream = pods
            .log_stream(name, &params)
            .await
            .map_err(|source| CliPodError::Log {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                source,
            })?;
        let mut bytes = Vec::new();
        stream
            .take(u64::try_from(cap.saturating_add(1)).unwrap_or(u64::MAX))
            .read_to_end(&mut bytes)
            .await
            .map_err(|source| CliPodError::LogBody {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                source,
            })?;
        let truncated = bytes.len() > cap;
        bytes.truncate(cap);
        Ok((String::from_utf8_lossy(&bytes).into_owned(), truncated))
    }
}

/// The exit code of the command's container, once it has terminated.
fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CLI_CONTAINER)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

/// Why a pod failed before its command ran: its reason and message, or an init container's.
fn why_failed(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else {
        return "no status".to_owned();
    };
    let init = status
        .init_container_statuses
        .iter()
        .flatten()
        .find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0)
                .then(|| format!("its {} container exited with {}", c.name, t.exit_code))
        });
    [status.reason.clone(), status.message.clone(), init]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ")
}

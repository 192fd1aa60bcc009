//! The template database of an Airflow version, made on a Kubernetes cell: `airflow db migrate`
//! as a Job in the agent's own namespace, rendered by the Kubernetes renderer
//! ([`hangar_tenants::blueprint::kubernetes::migrate_job`]). [`TemplateMigrator::migrate`] is
//! what [`crate::metadata_db::MetadataDbAdmin::ensure_template`] calls under its advisory lock,
//! so one agent runs the Job while every other environment of that version (on any agent)
//! waits for the template.
//!
//! The URL the closure receives is the platform Postgres as the agent reaches it; the Job gets
//! the same database as pods reach it. The Secret holding it is owned by the Job (deleting the
//! Job deletes both); a Job that finished is deleted with its Secret, a failed one is kept for
//! its TTL so its pod's log can be read. A Job of the same name left by an earlier attempt (an
//! agent that stopped while waiting) is deleted first: it holds a password that no longer works.

use std::sync::Arc;
use std::time::Duration;

use hangar_tenants::blueprint::kubernetes::{
    MigrateManifests, MIGRATE_COMPONENT, MIGRATE_DEADLINE_SECONDS,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use secrecy::{ExposeSecret, SecretString};

use super::error::is_not_found;
use super::runtime::{Address, RenderFailure, Renderer};
use crate::metadata_db::{self, MetadataDbAdmin, MetadataDbError};

/// The label the Job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// How much of a failed pod's log the error carries.
const LOG_LINES: i64 = 20;

/// How a template's Job is awaited: its status is read every `every`, `polls` times, before it
/// counts as stuck (tests make it short).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigratePoll {
    pub every: Duration,
    pub polls: u32,
}

impl Default for MigratePoll {
    /// Every 5 s, for two minutes past the Job's own deadline (after which the Job controller
    /// fails it anyway).
    fn default() -> Self {
        let every = Duration::from_secs(5);
        let seconds = u64::try_from(MIGRATE_DEADLINE_SECONDS).unwrap_or(600) + 120;
        Self {
            every,
            polls: u32::try_from(seconds / every.as_secs()).unwrap_or(u32::MAX),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateJobError {
    #[error("failed to render the migration Job of template {template}")]
    Render {
        template: String,
        #[source]
        source: RenderFailure,
    },
    #[error("failed to give the migration Job of template {template} the address pods reach Postgres at: the template's URL has no host")]
    Url { template: String },
    #[error("failed to {action} {kind} {namespace}/{name}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("failed to start Job {namespace}/{name}: the previous Job of that name is still being deleted")]
    StillDeleting { namespace: String, name: String },
    #[error(
        "Job {namespace}/{name} (airflow db migrate into template {template}) failed: {detail}"
    )]
    Failed {
        namespace: String,
        name: String,
        template: String,
        detail: String,
    },
    #[error("Job {namespace}/{name} (airflow db migrate into template {template}) had not finished after {waited:?}; it was deleted")]
    Timeout {
        namespace: String,
        name: String,
        template: String,
        waited: Duration,
    },
    #[error("Job {namespace}/{name} (airflow db migrate into template {template}) was deleted before it finished")]
    Gone {
        namespace: String,
        name: String,
        template: String,
    },
}

/// The template URL `url` (the platform Postgres as the agent reaches it) with the host and port
/// pods reach it at instead.
pub fn for_pods(url: &SecretString, pod: &Address) -> Option<SecretString> {
    let mut u = url::Url::parse(url.expose_secret()).ok()?;
    u.host_str()?;
    let host = if pod.host.contains(':') {
        format!("[{}]", pod.host)
    } else {
        pod.host.clone()
    };
    u.set_host(Some(&host)).ok()?;
    u.set_port(Some(pod.port)).ok()?;
    Some(SecretString::from(u.to_string()))
}

/// Runs `airflow db migrate` into a template as a Job and waits for it.
pub struct TemplateMigrator {
    client: kube::Client,
    renderer: Arc<dyn Renderer>,
    pod_postgres: Address,
    poll: MigratePoll,
}

impl TemplateMigrator {
    pub fn new(
        client: kube::Client,
        renderer: Arc<dyn Renderer>,
        pod_postgres: Address,
        poll: MigratePoll,
    ) -> Self {
        Self {
            client,
            renderer,
            pod_postgres,
            poll,
        }
    }

    /// The template of `airflow_version`, made unless it is ready: under the template's
    /// advisory lock, the Job fills it ([`Self::migrate`]); other callers wait on the lock and
    /// find it ready. Its name is returned.
    pub async fn ensure_template(
        &self,
        admin: &MetadataDbAdmin,
        airflow_version: &str,
    ) -> Result<String, MetadataDbError> {
        let template = metadata_db::template_name(airflow_version);
        let name = template.as_str();
        admin
            .ensure_template(name, move |url| async move {
                self.migrate(name, airflow_version, url)
                    .await
                    .map_err(|e| format!("{e}{}", crate::agent::source_chain(&e)))
            })
            .await?;
        Ok(template)
    }

    /// Fills `template` with Airflow `airflow_version`'s schema through `url` (as
    /// `ensure_template` hands it over): renders the Job, removes a leftover one, creates the
    /// Job and its Secret, and waits until the Job completes or fails.
    pub async fn migrate(
        &self,
        template: &str,
        airflow_version: &str,
        url: SecretString,
    ) -> Result<(), MigrateJobError> {
        let url = for_pods(&url, &self.pod_postgres).ok_or_else(|| MigrateJobError::Url {
            template: template.to_owned(),
        })?;
        let render = |source| MigrateJobError::Render {
            template: template.to_owned(),
            source,
        };
        let m = self
            .renderer
            .migrate(template, airflow_version, &url)
            .map_err(render)?;
        let job: Job = serde_json::from_value(m.job.clone()).map_err(|e| render(e.into()))?;
        let mut secret: Secret =
            serde_json::from_value(m.secret.clone()).map_err(|e| render(e.into()))?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &m.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &m.namespace);
        let failed = |action, kind| {
            let (namespace, name) = (m.namespace.clone(), m.name.clone());
            move |source| MigrateJobError::Api {
                action,
                kind,
                namespace,
                name,
                source: Box::new(source),
            }
        };

        self.remove_leftover(&jobs, &secrets, &m).await?;
        let created = jobs
            .create(&PostParams::default(), &job)
            .await
            .map_err(failed("create", "Job"))?;
        tracing::info!(namespace = %m.namespace, job = %m.name, template, "migrating the template database");
        if let Some(uid) = created.metadata.uid {
            secret.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "batch/v1".to_owned(),
                kind: "Job".to_owned(),
                name: m.name.clone(),
                uid,
                ..OwnerReference::default()
            }]);
        }
        if let Err(e) = secrets.create(&PostParams::default(), &secret).await {
            self.clean_up(&jobs, &secrets, &m).await;
            return Err(failed("create", "Secret")(e));
        }
        let outcome = self.wait(&jobs, &m, template).await;
        // A failed Job stays (its TTL removes it) so its pod's log can be read.
        if !matches!(outcome, Err(MigrateJobError::Failed { .. })) {
            self.clean_up(&jobs, &secrets, &m).await;
        }
        if outcome.is_ok() {
            tracing::info!(namespace = %m.namespace, job = %m.name, template, "template database migrated");
        }
        outcome
    }

    /// Deletes a Job of this name and its Secret, left by an earlier attempt, and waits until
    /// the Job is gone.
    async fn remove_leftover(
        &self,
        jobs: &Api<Job>,
        secrets: &Api<Secret>,
        m: &MigrateManifests,
    ) -> Result<(), MigrateJobError> {
        let failed = |action, kind: &'static str| {
            move |source| MigrateJobError::Api {
                action,
                kind,
                namespace: m.namespace.clone(),
                name: m.name.clone(),
                source: Box::new(source),
            }
        };
        let existed = match jobs.delete(&m.name, &DeleteParams::background()).await {
            Ok(_) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(failed("delete the previous", "Job")(e)),
        };
        match secrets.delete(&m.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(failed("delete the previous", "Secret")(e)),
        }
        if !existed {
            return Ok(());
        }
        tracing::info!(namespace = %m.namespace, job = %m.name, "deleted the Job an earlier attempt left");
        for _ in 0..self.poll.polls {
            let gone = jobs
                .get_opt(&m.name)
                .await
                .map_err(failed("read", "Job"))?
                .is_none();
            if gone {
                return Ok(());
            }
            tokio::time::sleep(self.poll.every).await;
        }
        Err(MigrateJobError::StillDeleting {
            namespace: m.namespace.clone(),
            name: m.name.clone(),
        })
    }

    /// Reads the Job until it has completed or failed. A failed read is retried on the next
    /// poll; a Job that vanished, failed or never finishes is an error.
    async fn wait(
        &self,
        jobs: &Api<Job>,
        m: &MigrateManifests,
        template: &str,
    ) -> Result<(), MigrateJobError> {
        for _ in 0..self.poll.polls {
            match jobs.get_opt(&m.name).await {
                Ok(Some(job)) => match outcome(&job) {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(condition)) => {
                        let detail = match self.last_log(m).await {
                            Some(log) => format!("{condition}; the end of its pod's log:\n{log}"),
                            None => condition,
                        };
                        return Err(MigrateJobError::Failed {
                            namespace: m.namespace.clone(),
                            name: m.name.clone(),
                            template: template.to_owned(),
                            detail,
                        });
                    }
                    None => {}
                },
                Ok(None) => {
                    return Err(MigrateJobError::Gone {
                        namespace: m.namespace.clone(),
                        name: m.name.clone(),
                        template: template.to_owned(),
                    })
                }
                Err(e) => {
                    tracing::warn!(namespace = %m.namespace, job = %m.name, error = %e, "failed to read the migration Job; reading it again");
                }
            }
            tokio::time::sleep(self.poll.every).await;
        }
        Err(MigrateJobError::Timeout {
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            template: template.to_owned(),
            waited: self.poll.every * self.poll.polls,
        })
    }

    /// The last lines of the log of the Job's newest pod, if they can be read.
    async fn last_log(&self, m: &MigrateManifests) -> Option<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &m.namespace);
        let list = pods
            .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={}", m.name)))
            .await
            .map_err(
                |e| tracing::debug!(job = %m.name, error = %e, "failed to list the Job's pods"),
            )
            .ok()?;
        let pod = list
            .items
            .iter()
            .max_by_key(|p| p.metadata.creation_timestamp.clone())?;
        let name = pod.metadata.name.clone()?;
        let params = LogParams {
            container: Some(MIGRATE_COMPONENT.to_owned()),
            tail_lines: Some(LOG_LINES),
            ..LogParams::default()
        };
        let log = pods
            .logs(&name, &params)
            .await
            .map_err(|e| tracing::debug!(pod = %name, error = %e, "failed to read the pod's log"))
            .ok()?;
        let log = log.trim_end();
        (!log.is_empty()).then(|| log.to_owned())
    }

    /// Deletes the Job (its pods in the background) and its Secret; what fails is left to the
    /// Job's TTL and the garbage collector.
    async fn clean_up(&self, jobs: &Api<Job>, secrets: &Api<Secret>, m: &MigrateManifests) {
        if let Err(e) = jobs.delete(&m.name, &DeleteParams::background()).await {
            if !is_not_found(&e) {
                tracing::warn!(namespace = %m.namespace, job = %m.name, error = %e, "failed to delete the migration Job");
            }
        }
        if let Err(e) = secrets.delete(&m.name, &DeleteParams::default()).await {
            if !is_not_found(&e) {
                tracing::warn!(namespace = %m.namespace, secret = %m.name, error = %e, "failed to delete the migration Job's Secret");
            }
        }
    }
}

/// `Some(Ok)` once the Job completed, `Some(Err(reason: message))` once it failed, `None`
/// while it runs.
fn outcome(job: &Job) -> Option<Result<(), String>> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    if holds("Complete").is_some() {
        return Some(Ok(()));
    }
    let failed = holds("Failed")?;
    Some(Err(format!(
        "{}: {}",
        failed.reason.as_deref().unwrap_or("Failed"),
        failed.message.as_deref().unwrap_or("no message")
    )))
}

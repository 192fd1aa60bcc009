//! One environment on a Kubernetes cell ([`super::KubeRuntime`]), as the agent drives it.
//! Applying a revision is the process runtime's fixed pipeline with objects for processes:
//! ensure the environment's database (cloned from the migrated template of its Airflow
//! version, which a Job makes the first time) and broker user, render its objects (pure), apply them ([`EnvObjects`]).
//!
//! DAGs and plugins are synced inside the environment's pods (the `hangar dag-sync` sidecar the
//! renderer adds), so the agent only reads `requirements.txt` from the bucket. Component logs
//! are followed through the Kubernetes log API into files the log shipper reads
//! ([`super::logs`]) when the cell has a folder for them. Airflow CLI commands run in a
//! short-lived pod each ([`super::cli`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use hangar_tenants::api::{Assignment, EnvironmentSecrets};
use hangar_tenants::blueprint::Backends;
use hangar_tenants::{ComponentStatus, FailedApply, ObservedState, WorkerStatus};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::migrate::TemplateMigrator;
use super::runtime::{KubeRuntime, KubeRuntimeError, Renderer};
use super::{EnvObjects, Manifests};
use crate::autoscaler::{ScaleError, WorkerRuntime};
use crate::broker::BrokerUser;
use crate::cell_runtime::{BucketSync, EnvironmentRuntime};
use crate::dag_sync::SyncError;
use crate::metadata_db::{EnvDatabase, EnvTasks};

/// The api-server's Service in an environment's namespace (named after its component), and
/// its port.
pub const API_SERVICE: &str = "api-server";
pub use hangar_tenants::blueprint::kubernetes::API_PORT;

/// The running revision and what its objects were rendered from, so scaling re-renders them
/// without ensuring the database and broker user again.
#[derive(Clone)]
struct Running {
    revision: i64,
    backends: Backends,
    /// The assignment applied (the CLI's pods are rendered from it).
    assignment: Arc<Assignment>,
}

/// One environment on a Kubernetes cell.
pub struct KubeEnvironment {
    runtime: KubeRuntime,
    objects: EnvObjects,
    running: Option<Running>,
    /// Its api-server inside the cluster (`http://api-server.<namespace>.svc:8080<path>`).
    api_url: Option<String>,
    tasks: EnvTasks,
    worker_status: Option<WorkerStatus>,
    /// `requirements.txt` of the environment's bucket prefix: its ETag and text.
    bucket_requirements: Option<(Option<String>, String)>,
    /// Its pods' logs, followed into files for the log shipper.
    logs: Option<super::logs::LogFollower>,
}

impl KubeEnvironment {
    pub fn new(runtime: KubeRuntime, id: Uuid) -> Self {
        let namespace = runtime.renderer.namespace(id);
        let logs = runtime.logs_dir.as_ref().map(|dir| {
            super::logs::LogFollower::new(
                runtime.cluster.client.clone(),
                &namespace,
                &dir.join(id.simple().to_string()),
            )
        });
        Self {
            logs,
            objects: EnvObjects::new(runtime.cluster.clone(), namespace),
            runtime,
            running: None,
            api_url: None,
            tasks: EnvTasks::default(),
            worker_status: None,
            bucket_requirements: None,
        }
    }

    fn secrets<'a>(&self, a: &'a Assignment) -> Result<&'a EnvironmentSecrets, KubeRuntimeError> {
        a.secrets
            .as_ref()
            .ok_or(KubeRuntimeError::NoSecrets { environment: a.id })
    }

    /// The environment's database (cloned from its Airflow version's template) and broker
    /// user, made or reset to its passwords, as its pods reach them. The first environment of
    /// an Airflow version makes the template ([`TemplateMigrator`], a Job) and takes that much
    /// longer; the others wait for it on the template's lock.
    async fn ensure_backends(&self, a: &Assignment) -> Result<Backends, KubeRuntimeError> {
        let secrets = self.secrets(a)?;
        let platform = &self.runtime.platform;
        let migrator = TemplateMigrator::new(
            self.runtime.cluster.client.clone(),
            self.runtime.renderer.clone(),
            platform.pod_postgres.clone(),
            self.runtime.migrate_poll,
        );
        let template = migrator
            .ensure_template(&platform.metadata, a.spec.airflow_version.as_str())
            .await?;
        let db = EnvDatabase::for_environment(a.id, secrets.db_password.clone().into());
        platform.metadata.ensure_database(&db, &template).await?;
        let (broker, broker_url) = platform
            .ensure_broker(a.id, secrets.broker_password.clone().into())
            .await?;
        let pg = &platform.pod_postgres;
        Ok(Backends {
            sql_alchemy_conn: db
                .sqlalchemy_url(&pg.host, pg.port, platform.metadata.tls())
                .expose_secret()
                .to_owned(),
            broker_url: broker_url.expose_secret().to_owned(),
            broker_key_prefix: broker.key_prefix,
        })
    }

    /// Brings the environment to the assignment's revision; on failure the previous revision's
    /// objects stay as they were.
    pub async fn apply(&mut self, a: &Assignment) -> Result<(), KubeRuntimeError> {
        let backends = self.ensure_backends(a).await?;
        let renderer = self.runtime.renderer.clone();
        self.objects
            .apply(a.spec.min_workers, |n| render(&*renderer, a, &backends, n))
            .await?;
        self.api_url = Some(format!(
            "http://{API_SERVICE}.{}.svc:{API_PORT}{}",
            self.objects.namespace(),
            hangar_tenants::api::webserver_path(&a.tenant, &a.name).trim_end_matches('/')
        ));
        self.running = Some(Running {
            revision: a.revision,
            backends,
            assignment: Arc::new(a.clone()),
        });
        Ok(())
    }

    /// The environment's own database as the agent reaches it.
    fn tasks_url(&self, a: &Assignment) -> Option<secrecy::SecretString> {
        let secrets = a.secrets.as_ref()?;
        let platform = &self.runtime.platform;
        let pg = &platform.agent_postgres;
        let db = EnvDatabase::for_environment(a.id, secrets.db_password.clone().into());
        Some(db.url(&pg.host, pg.port, platform.metadata.tls()))
    }

    /// The environment's state: its Deployments' health and Airflow's own.
    pub async fn observe(&mut self, failed: Option<FailedApply>) -> ObservedState {
        if let Some(logs) = self.logs.as_mut().filter(|_| self.running.is_some()) {
            if let Err(e) = logs.refresh().await {
                tracing::debug!(error = %e, "failed to look for pods to follow the logs of");
            }
        }
        let mut components = match self.objects.components().await {
            Ok(c) => c,
            Err(e) => vec![ComponentStatus {
                name: "kubernetes".to_owned(),
                healthy: false,
                message: Some(format!("{e}{}", crate::agent::source_chain(&e))),
            }],
        };
        let mut endpoints = BTreeMap::new();
        if let Some(url) = &self.api_url {
            components.push(crate::health::airflow_health(&self.runtime.http, url, true).await);
            endpoints.insert("api".to_owned(), url.clone());
        }
        ObservedState {
            revision: self.running.as_ref().map(|r| r.revision),
            components,
            failed,
            deleted: false,
            endpoints,
            dag_sync: None,
            bucket_requirements: self.bucket_requirements.as_ref().map(|(_, t)| t.clone()),
            workers: self.worker_status.clone(),
            reconcile: None,
            hibernated: false,
            idle_since: None,
            next_run: None,
            log_disk: None,
        }
    }

    /// Removes the environment: its namespace (everything in it), then its database and role
    /// and its broker user and keys. Idempotent.
    pub async fn delete(&mut self, a: &Assignment) -> Result<(), KubeRuntimeError> {
        self.objects.delete().await?;
        if let Some(logs) = self.logs.as_mut() {
            logs.stop();
            // Shipped already: the shipper stopped reading them before the delete began.
            let _ = std::fs::remove_dir_all(logs.home());
        }
        let platform = &self.runtime.platform;
        let password = a
            .secrets
            .as_ref()
            .map(|s| s.db_password.clone())
            .unwrap_or_default();
        platform
            .metadata
            .drop_database(&EnvDatabase::for_environment(a.id, password.into()))
            .await?;
        let broker = BrokerUser::for_environment(a.id, String::new().into());
        platform.broker.remove_user(&broker).await?;
        self.running = None;
        self.api_url = None;
        Ok(())
    }
}

fn render(
    renderer: &dyn Renderer,
    a: &Assignment,
    backends: &Backends,
    workers: u32,
) -> Result<Manifests, KubeRuntimeError> {
    renderer
        .render(a, backends, workers)
        .map_err(|source| KubeRuntimeError::Render {
            environment: a.id,
            source,
        })
}

impl EnvironmentRuntime for KubeEnvironment {
    type Error = KubeRuntimeError;

    async fn apply(&mut self, a: &Assignment) -> Result<(), KubeRuntimeError> {
        KubeEnvironment::apply(self, a).await
    }

    /// DAGs and plugins sync in the pods; only `requirements.txt` is read here (reported, so
    /// the control plane turns a change into an update).
    async fn sync_bucket(&mut self, a: &Assignment) -> Result<BucketSync, SyncError> {
        if let Some(bucket) = &self.runtime.bucket {
            bucket
                .read_requirements(&a.tenant, &a.name, &mut self.bucket_requirements)
                .await;
        }
        Ok(BucketSync::default())
    }

    async fn observe(&mut self, failed: Option<FailedApply>) -> ObservedState {
        KubeEnvironment::observe(self, failed).await
    }

    async fn delete(&mut self, a: &Assignment) -> Result<(), KubeRuntimeError> {
        KubeEnvironment::delete(self, a).await
    }

    /// The environment's objects stay as they are; the next agent adopts them.
    fn detach(&mut self) {}

    /// A Kubernetes cell's environments do not stop with its agent: they are left running and
    /// reported as they are.
    async fn stop(&mut self) -> ObservedState {
        KubeEnvironment::observe(self, None).await
    }

    /// A Kubernetes cell's environments do not hibernate yet (the control plane refuses to ask).
    async fn idle(
        &mut self,
        _a: &Assignment,
    ) -> Result<crate::cell_runtime::Idleness, crate::autoscaler::ScaleError> {
        Ok(crate::cell_runtime::Idleness {
            idle: false,
            next_run: None,
        })
    }

    /// A Kubernetes environment's triggerer always runs (its pod's requests are small; the
    /// process runtime's on-demand triggerer saves memory on one shared machine).
    async fn on_demand(&mut self, _a: &Assignment) {}

    async fn hibernate(
        &mut self,
        _wake_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), KubeRuntimeError> {
        Err(KubeRuntimeError::Unsupported("hibernation"))
    }

    fn hibernated(&self) -> Option<crate::cell_runtime::Hibernated> {
        None
    }

    fn log_source(&self, a: &Assignment) -> Option<crate::log_ship::LogSource> {
        self.logs.as_ref().map(|l| crate::log_ship::LogSource {
            tenant: a.tenant.clone(),
            name: a.name.clone(),
            home: l.home().to_owned(),
        })
    }

    /// A pod per command, rendered from the running revision (none before the first apply).
    fn cli_target(&self) -> Option<crate::cli_runner::Target> {
        let running = self.running.clone()?;
        let renderer = self.runtime.renderer.clone();
        let render: super::cli::RenderCliPod = Arc::new(move |call, args, timeout| {
            renderer.cli_pod(&running.assignment, &running.backends, call, args, timeout)
        });
        Some(crate::cli_runner::Target::Pod(super::cli::PodTarget::new(
            self.runtime.cluster.client.clone(),
            self.objects.namespace().to_owned(),
            running.revision,
            render,
        )))
    }
}

impl WorkerRuntime for KubeEnvironment {
    /// Queued and running task instances from the environment's own database; the worker
    /// pods are looked at on the way (draining ones still hold their pool slots).
    async fn task_counts(&mut self, a: &Assignment) -> Result<(u32, u32), ScaleError> {
        if let Err(e) = self.objects.refresh_pods().await {
            tracing::debug!(env = %a.name, error = %e, "failed to look at the worker pods");
        }
        let Some(url) = self.tasks_url(a) else {
            return Ok((0, 0));
        };
        Ok(self.tasks.counts(&url).await?)
    }

    fn current_workers(&self) -> u32 {
        self.objects.workers().unwrap_or(0)
    }

    fn draining_workers(&self) -> u32 {
        self.objects.draining()
    }

    /// Runs `n` workers of the applied revision: more replicas at once, fewer by draining
    /// (idle pods are removed first; see [`EnvObjects::scale_to`]).
    async fn scale_to(&mut self, a: &Assignment, n: u32) -> Result<(), ScaleError> {
        let backends = match &self.running {
            Some(r) if r.revision == a.revision => r.backends.clone(),
            _ => {
                self.apply(a).await?;
                self.running
                    .as_ref()
                    .map(|r| r.backends.clone())
                    .ok_or(KubeRuntimeError::NoSecrets { environment: a.id })?
            }
        };
        let running = match self.tasks_url(a) {
            Some(url) if n < self.current_workers() => {
                match self.tasks.running_by_host(&url).await {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(env = %a.name, error = %e, "no task placement; draining the youngest workers first");
                        None
                    }
                }
            }
            _ => None,
        };
        let renderer = self.runtime.renderer.clone();
        self.objects
            .scale_to(n, running.as_ref(), |n| render(&*renderer, a, &backends, n))
            .await?;
        Ok(())
    }

    fn set_worker_status(&mut self, status: WorkerStatus) {
        self.worker_status = Some(status);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_api_service_is_named_as_the_renderer_names_it() {
        assert_eq!(
            API_SERVICE,
            hangar_tenants::blueprint::ComponentKind::ApiServer.as_str()
        );
    }
}

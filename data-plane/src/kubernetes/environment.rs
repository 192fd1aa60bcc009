//! The kubernetes runtime as the agent drives it: [`KubeRuntime`] is a cell (one cluster, the
//! platform's shared Postgres and Redis, the bucket), [`KubeEnvironment`] one environment on
//! it. Applying a revision is the process runtime's fixed pipeline with objects for processes:
//! ensure the environment's database (cloned from the migrated template of its Airflow
//! version) and broker user, render its objects (pure), apply them ([`EnvObjects`]).
//!
//! DAGs and plugins are synced inside the environment's pods (the `hangar dag-sync` sidecar the
//! renderer adds), so the agent only reads `requirements.txt` from the bucket. Component logs
//! through the Kubernetes log API and the Airflow CLI in a short-lived pod are not provided yet:
//! [`EnvironmentRuntime::log_source`] and [`EnvironmentRuntime::cli_target`] answer `None`.

use std::collections::BTreeMap;
use std::sync::Arc;

use hangar_tenants::api::{Assignment, CellIsolation, EnvironmentSecrets};
use hangar_tenants::blueprint::Backends;
use hangar_tenants::{ComponentStatus, FailedApply, ObservedState, WorkerStatus};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::error::ClusterError;
use super::{Cluster, EnvObjects, Manifests};
use crate::autoscaler::{ScaleError, WorkerRuntime};
use crate::broker::{BrokerAdmin, BrokerError, BrokerUser};
use crate::bucket::Bucket;
use crate::cell_runtime::{BucketSync, EnvironmentRuntime, Runtime, RuntimeFailure};
use crate::dag_sync::SyncError;
use crate::metadata_db::{self, EnvDatabase, EnvTasks, MetadataDbAdmin, MetadataDbError};

/// The api-server's Service in an environment's namespace (named after its component), and
/// its port.
pub const API_SERVICE: &str = "api-server";
pub use hangar_tenants::blueprint::kubernetes::API_PORT;

/// Why an environment could not be applied or deleted.
#[derive(Debug, thiserror::Error)]
pub enum KubeRuntimeError {
    #[error("failed to apply environment {environment}: the assignment carries no secrets (environment made before secrets existed)")]
    NoSecrets { environment: Uuid },
    #[error(
        "failed to create the metadata database of environment {environment}: the template \
         database {template} of Airflow {airflow_version} does not exist on the platform \
         Postgres yet (it is made once per Airflow version by `airflow db migrate`)"
    )]
    TemplateMissing {
        environment: Uuid,
        template: String,
        airflow_version: String,
    },
    #[error(transparent)]
    MetadataDb(#[from] MetadataDbError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("failed to render the objects of environment {environment}")]
    Render {
        environment: Uuid,
        #[source]
        source: RenderFailure,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl RuntimeFailure for KubeRuntimeError {
    fn category(&self) -> &'static str {
        match self {
            KubeRuntimeError::NoSecrets { .. } => "secrets",
            KubeRuntimeError::TemplateMissing { .. } | KubeRuntimeError::MetadataDb(_) => {
                "metadata_db"
            }
            KubeRuntimeError::Broker(_) => "broker",
            KubeRuntimeError::Render { .. } => "render",
            KubeRuntimeError::Cluster(e) => e.category(),
        }
    }

    /// The template appears once someone migrates it, and the platform's services come back:
    /// those are retried. What the same revision can only fail again is permanent.
    fn is_permanent(&self) -> bool {
        match self {
            KubeRuntimeError::NoSecrets { .. } | KubeRuntimeError::Render { .. } => true,
            KubeRuntimeError::Cluster(e) => e.is_permanent(),
            _ => false,
        }
    }
}

/// Why rendering failed (the renderer's own error).
pub type RenderFailure = Box<dyn std::error::Error + Send + Sync>;

/// Makes an environment's objects: the Kubernetes renderer with the cell's settings.
pub trait Renderer: Send + Sync + 'static {
    /// The namespace of an environment.
    fn namespace(&self, environment: Uuid) -> String;
    /// The environment's objects, with `workers` Celery workers.
    fn render(
        &self,
        a: &Assignment,
        backends: &Backends,
        workers: u32,
    ) -> Result<Manifests, RenderFailure>;
}

/// A host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// `host:port`.
    pub fn parse(s: &str) -> Option<Self> {
        let (host, port) = s.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then_some(())?;
        Some(Self {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }

    /// The host and port of a URL (which must name both).
    pub fn of_url(url: &secrecy::SecretString) -> Option<Self> {
        let u = url::Url::parse(url.expose_secret()).ok()?;
        Some(Self {
            host: u
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: u.port()?,
        })
    }
}

/// Why the platform's services could not be reached at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KubePlatformError {
    #[error("{setting}: {value:?} is not a host:port")]
    Address {
        setting: &'static str,
        value: String,
    },
    #[error("the {what} URL is not valid: it needs a host and a port")]
    Url { what: &'static str },
    #[error(transparent)]
    MetadataDb(#[from] MetadataDbError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// The platform's shared services as the kubernetes runtime uses them.
#[derive(Clone)]
pub struct KubePlatform {
    pub metadata: MetadataDbAdmin,
    pub broker: BrokerAdmin,
    /// The platform Postgres as the agent reaches it (task counts in environments' databases).
    pub agent_postgres: Address,
    /// The platform Postgres and Redis as the environments' pods reach them.
    pub pod_postgres: Address,
    pub pod_redis: Address,
}

impl KubePlatform {
    /// Connects to the platform's Postgres (as a superuser) and Redis (as its admin). The
    /// environments' pods reach them where the admin URLs say, unless `pod_postgres` or
    /// `pod_redis` (`host:port`) say otherwise (an in-cluster Service name, say).
    pub async fn connect(
        postgres_admin_url: &secrecy::SecretString,
        redis_admin_url: &secrecy::SecretString,
        pod_postgres: Option<&str>,
        pod_redis: Option<&str>,
    ) -> Result<Self, KubePlatformError> {
        let agent_postgres = Address::of_url(postgres_admin_url)
            .ok_or(KubePlatformError::Url { what: "Postgres" })?;
        let agent_redis =
            Address::of_url(redis_admin_url).ok_or(KubePlatformError::Url { what: "Redis" })?;
        let pod = |setting, value: Option<&str>, default: &Address| match value {
            None => Ok(default.clone()),
            Some(v) => Address::parse(v).ok_or_else(|| KubePlatformError::Address {
                setting,
                value: v.to_owned(),
            }),
        };
        Ok(Self {
            pod_postgres: pod("HANGAR_KUBE_POD_POSTGRES", pod_postgres, &agent_postgres)?,
            pod_redis: pod("HANGAR_KUBE_POD_REDIS", pod_redis, &agent_redis)?,
            agent_postgres,
            metadata: MetadataDbAdmin::connect(postgres_admin_url).await?,
            broker: BrokerAdmin::connect(redis_admin_url).await?,
        })
    }
}

/// A Kubernetes cell: its cluster, the platform's services, the renderer, the bucket.
#[derive(Clone)]
pub struct KubeRuntime {
    cluster: Cluster,
    platform: KubePlatform,
    renderer: Arc<dyn Renderer>,
    bucket: Option<Bucket>,
    http: reqwest::Client,
}

impl KubeRuntime {
    pub fn new(
        cluster: Cluster,
        platform: KubePlatform,
        renderer: Arc<dyn Renderer>,
        bucket: Option<Bucket>,
    ) -> Self {
        Self {
            cluster,
            platform,
            renderer,
            bucket,
            http: reqwest::Client::new(),
        }
    }
}

/// How a Kubernetes cell keeps environments apart: a namespace each, as rendered. That
/// NetworkPolicies are enforced depends on the cluster's network plugin, which the agent
/// cannot see (docs/kubernetes.md).
pub fn isolation() -> CellIsolation {
    CellIsolation {
        isolated: true,
        users: false,
        cgroups: None,
        landlock: None,
        namespaces: true,
        problems: Vec::new(),
    }
}

impl Runtime for KubeRuntime {
    type Environment = KubeEnvironment;

    fn environment(&self, assignment: &Assignment) -> KubeEnvironment {
        KubeEnvironment::new(self.clone(), assignment.id)
    }

    fn isolation(&self) -> CellIsolation {
        isolation()
    }

    fn bucket(&self) -> Option<&Bucket> {
        self.bucket.as_ref()
    }
}

/// The running revision and what its objects were rendered from, so scaling re-renders them
/// without ensuring the database and broker user again.
#[derive(Clone)]
struct Running {
    revision: i64,
    backends: Backends,
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
}

impl KubeEnvironment {
    pub fn new(runtime: KubeRuntime, id: Uuid) -> Self {
        let namespace = runtime.renderer.namespace(id);
        Self {
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
    /// user, made or reset to its passwords, as its pods reach them.
    async fn ensure_backends(&self, a: &Assignment) -> Result<Backends, KubeRuntimeError> {
        let secrets = self.secrets(a)?;
        let platform = &self.runtime.platform;
        let version = a.spec.airflow_version.as_str();
        let template = metadata_db::template_name(version);
        if !platform.metadata.template_ready(&template).await? {
            return Err(KubeRuntimeError::TemplateMissing {
                environment: a.id,
                template,
                airflow_version: version.to_owned(),
            });
        }
        let db = EnvDatabase::for_environment(a.id, secrets.db_password.clone().into());
        platform.metadata.ensure_database(&db, &template).await?;
        let broker = BrokerUser::for_environment(a.id, secrets.broker_password.clone().into());
        platform.broker.ensure_user(&broker).await?;
        let (pg, redis) = (&platform.pod_postgres, &platform.pod_redis);
        Ok(Backends {
            sql_alchemy_conn: db
                .sqlalchemy_url(&pg.host, pg.port)
                .expose_secret()
                .to_owned(),
            broker_url: broker
                .broker_url(&redis.host, redis.port)
                .expose_secret()
                .to_owned(),
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
        });
        Ok(())
    }

    /// The environment's own database as the agent reaches it.
    fn tasks_url(&self, a: &Assignment) -> Option<secrecy::SecretString> {
        let secrets = a.secrets.as_ref()?;
        let pg = &self.runtime.platform.agent_postgres;
        let db = EnvDatabase::for_environment(a.id, secrets.db_password.clone().into());
        Some(db.url(&pg.host, pg.port))
    }

    /// The environment's state: its Deployments' health and Airflow's own.
    pub async fn observe(&mut self, failed: Option<FailedApply>) -> ObservedState {
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
            components.push(crate::health::airflow_health(&self.runtime.http, url).await);
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
        }
    }

    /// Removes the environment: its namespace (everything in it), then its database and role
    /// and its broker user and keys. Idempotent.
    pub async fn delete(&mut self, a: &Assignment) -> Result<(), KubeRuntimeError> {
        self.objects.delete().await?;
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

    fn log_source(&self, _a: &Assignment) -> Option<crate::log_ship::LogSource> {
        None
    }

    fn cli_target(&self) -> Option<crate::cli_runner::Target> {
        None
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

    fn invalid() -> ClusterError {
        ClusterError::Apply {
            namespace: "hangar-0123456789ab".into(),
            kind: "Deployment".into(),
            name: "worker".into(),
            source: Box::new(kube::Error::Api(
                kube::core::Status::failure("invalid", "Invalid")
                    .with_code(422)
                    .boxed(),
            )),
        }
    }

    #[test]
    fn cluster_failures_reach_the_agent_with_their_classification() {
        let e = KubeRuntimeError::from(invalid());
        assert!(e.is_permanent());
        assert_eq!(e.category(), "kubernetes_invalid");
        let e = KubeRuntimeError::from(ClusterError::Terminating {
            namespace: "hangar-0123456789ab".into(),
        });
        assert!(!e.is_permanent());
        assert_eq!(e.category(), "kubernetes");
    }

    #[test]
    fn a_missing_template_says_so_and_is_retried() {
        let e = KubeRuntimeError::TemplateMissing {
            environment: Uuid::nil(),
            template: metadata_db::template_name("3.1.0"),
            airflow_version: "3.1.0".into(),
        };
        assert!(!e.is_permanent());
        assert_eq!(e.category(), "metadata_db");
        let message = e.to_string();
        assert!(message.contains("hangar_tpl_3_1_0"), "{message}");
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn addresses_are_host_and_port() {
        let a = Address::parse("postgres.hangar-system.svc:5432").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port),
            ("postgres.hangar-system.svc", 5432)
        );
        assert_eq!(Address::parse("[::1]:6379").unwrap().host, "::1");
        assert!(Address::parse("postgres").is_none());
        assert!(Address::parse(":5432").is_none());
        let url = secrecy::SecretString::from("postgres://admin:pw@db.internal:5433/postgres");
        assert_eq!(
            Address::of_url(&url),
            Some(Address {
                host: "db.internal".into(),
                port: 5433
            })
        );
    }

    #[test]
    fn the_api_service_is_named_as_the_renderer_names_it() {
        assert_eq!(
            API_SERVICE,
            hangar_tenants::blueprint::ComponentKind::ApiServer.as_str()
        );
    }

    #[test]
    fn a_kubernetes_cell_reports_namespace_isolation() {
        let i = isolation();
        assert!(i.isolated && i.namespaces);
        assert!(
            !i.users,
            "environments are not Unix users of a machine here"
        );
    }
}

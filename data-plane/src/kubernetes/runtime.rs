//! The kubernetes runtime's cell: [`KubeRuntime`] (one cluster, the platform's shared Postgres
//! and Redis, the renderer, the bucket), the [`Renderer`] it makes objects with, and
//! [`KubeRuntimeError`], how an environment's failures reach the agent's error policy.

use std::sync::Arc;

use hangar_tenants::api::{Assignment, CellIsolation};
use hangar_tenants::blueprint::kubernetes::MigrateManifests;
use hangar_tenants::blueprint::Backends;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::environment::KubeEnvironment;
use super::error::ClusterError;
use super::migrate::MigratePoll;
use super::{Cluster, Manifests};
use crate::broker::{BrokerAdmin, BrokerError, BrokerUser};
use crate::bucket::Bucket;
use crate::cell_runtime::{Runtime, RuntimeFailure};
use crate::metadata_db::{MetadataDbAdmin, MetadataDbError};

/// Why an environment could not be applied or deleted.
#[derive(Debug, thiserror::Error)]
pub enum KubeRuntimeError {
    #[error("failed to apply environment {environment}: the assignment carries no secrets (environment made before secrets existed)")]
    NoSecrets { environment: Uuid },
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
    #[error("{0} is not available on a Kubernetes cell yet")]
    Unsupported(&'static str),
}

impl RuntimeFailure for KubeRuntimeError {
    fn category(&self) -> &'static str {
        match self {
            KubeRuntimeError::NoSecrets { .. } => "secrets",
            KubeRuntimeError::MetadataDb(_) => "metadata_db",
            KubeRuntimeError::Broker(_) => "broker",
            KubeRuntimeError::Render { .. } => "render",
            KubeRuntimeError::Cluster(e) => e.category(),
            KubeRuntimeError::Unsupported(_) => "unsupported",
        }
    }

    /// A template whose migration Job failed is made again, and the platform's services come
    /// back: those are retried. What the same revision can only fail again is permanent.
    fn is_permanent(&self) -> bool {
        match self {
            KubeRuntimeError::NoSecrets { .. }
            | KubeRuntimeError::Render { .. }
            | KubeRuntimeError::Unsupported(_) => true,
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
    /// The Job (and its Secret) that runs `airflow db migrate` into the template database of
    /// an Airflow version, through `sql_alchemy_conn` (as pods reach it).
    fn migrate(
        &self,
        template: &str,
        airflow_version: &str,
        sql_alchemy_conn: &secrecy::SecretString,
    ) -> Result<MigrateManifests, RenderFailure>;
    /// The pod that runs one Airflow CLI command (call `call`, `airflow args…`, validated),
    /// for at most `timeout_seconds`.
    fn cli_pod(
        &self,
        a: &Assignment,
        backends: &Backends,
        call: Uuid,
        args: &[String],
        timeout_seconds: u32,
    ) -> Result<serde_json::Value, RenderFailure>;
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
    /// Connects to the platform's Postgres (as its admin: a superuser, or `CREATEDB` and
    /// `CREATEROLE`) and Redis (as its admin). The
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

    /// Puts the environments' brokers behind the agent's broker gateway, which their pods
    /// reach at `pod_gateway` (for a platform Redis without ACL users: the managed ones).
    pub fn with_broker_gateway(mut self, pod_gateway: Address) -> Self {
        self.pod_redis = pod_gateway;
        self.broker = self.broker.through_gateway();
        self
    }

    /// Makes (or resets) the broker user of environment `id` and returns it with its Celery
    /// `broker_url` as the environment's pods use it.
    pub async fn ensure_broker(
        &self,
        id: uuid::Uuid,
        password: secrecy::SecretString,
    ) -> Result<(BrokerUser, secrecy::SecretString), BrokerError> {
        let user = BrokerUser::for_environment(id, password);
        self.broker.ensure_user(&user).await?;
        let url = user.broker_url(&self.pod_redis.host, self.pod_redis.port, self.broker.tls);
        Ok((user, url))
    }
}

/// A Kubernetes cell: its cluster, the platform's services, the renderer, the bucket.
#[derive(Clone)]
pub struct KubeRuntime {
    pub(super) cluster: Cluster,
    pub(super) platform: KubePlatform,
    pub(super) renderer: Arc<dyn Renderer>,
    pub(super) bucket: Option<Bucket>,
    pub(super) http: reqwest::Client,
    /// Where the environments' component logs are followed into, for the log shipper
    /// (`<dir>/<env id>/components/`); without it they are not shipped.
    pub(super) logs_dir: Option<std::path::PathBuf>,
    /// How a template's migration Job is awaited.
    pub(super) migrate_poll: MigratePoll,
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
            logs_dir: None,
            migrate_poll: MigratePoll::default(),
        }
    }

    /// Follows the environments' component logs into `dir` (see [`super::logs`]).
    pub fn with_logs_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.logs_dir = Some(dir);
        self
    }

    /// Reads a template's migration Job every `poll.every`, `poll.polls` times (tests make it
    /// short).
    pub fn with_migrate_poll(mut self, poll: MigratePoll) -> Self {
        self.migrate_poll = poll;
        self
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

    /// On a Redis without ACL commands (a managed one, here TLS only), the pods' brokers are
    /// users of the agent's broker gateway, reached in the clear at its Service; with ACL users
    /// they reach the Redis itself, over TLS as the agent does.
    #[tokio::test]
    async fn pods_reach_their_broker_through_the_gateway_when_redis_has_no_acl_users() {
        use crate::embedded::{PrivatePostgres, PrivateRedis};
        let (tmp, pg) = PrivatePostgres::in_temp_dir("hangar-kube-broker-").await;
        let mut redis = PrivateRedis::start_without_acl_commands(&tmp.path().join("redis"))
            .await
            .unwrap();
        redis.require_test_tls().await;
        let platform = KubePlatform::connect(&pg.url("postgres"), &redis.admin_url(), None, None)
            .await
            .unwrap();
        let id = uuid::Uuid::new_v4();
        let password = || secrecy::SecretString::from("pw".to_owned());
        // As ACL users, the Redis refuses.
        assert!(platform.ensure_broker(id, password()).await.is_err());
        let gateway = Address::parse("hangar-agent.hangar-system.svc:9471").unwrap();
        let platform = platform.with_broker_gateway(gateway);
        let (user, url) = platform.ensure_broker(id, password()).await.unwrap();
        assert_eq!(
            url.expose_secret(),
            &format!(
                "redis://env-{}:pw@hangar-agent.hangar-system.svc:9471/0",
                id.simple()
            )
        );
        assert_eq!(user.key_prefix, format!("hangar:{}:", id.simple()));
        let _ = redis.stop().await;
        pg.stop().await.unwrap();
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
    fn a_failed_migration_names_the_template_and_is_retried() {
        let e = KubeRuntimeError::from(MetadataDbError::Migrate {
            template: crate::metadata_db::template_name("3.1.0"),
            message: "Job hangar-system/hangar-migrate-hangar-tpl-3-1-0 failed".into(),
        });
        assert!(!e.is_permanent());
        assert_eq!(e.category(), "metadata_db");
        let message = e.to_string();
        assert!(message.contains("hangar_tpl_3_1_0"), "{message}");
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
    fn a_kubernetes_cell_reports_namespace_isolation() {
        let i = isolation();
        assert!(i.isolated && i.namespaces);
        assert!(
            !i.users,
            "environments are not Unix users of a machine here"
        );
    }
}

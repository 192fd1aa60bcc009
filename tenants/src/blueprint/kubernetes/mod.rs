//! The Kubernetes renderer: an environment's components as the objects of a namespace of its
//! own, complete and in apply order, for the kubernetes runtime to apply with server-side apply
//! (and for `hangar env manifests` to print). Pure: typed `k8s-openapi` structs turned into
//! JSON values, deterministic (maps are `BTreeMap`s), no client, no I/O.
//!
//! What is rendered and why is in `docs/kubernetes.md`; each family of objects has a module:
//! [`namespace`] (namespace, quota, limits, service accounts, the executor's RBAC),
//! [`network`] (NetworkPolicies), [`pods`] (Airflow's containers, volumes, security contexts,
//! probes), [`sidecars`] (DAG sync, requirements, the passwords copy), [`template`] (the
//! Kubernetes executor's pod template, and the pod of one Airflow CLI command) and
//! [`bucket`] (the environment's way to the bucket: the gateway, its credentials, remote
//! logging), [`workloads`] (Secret, ConfigMaps, Deployments, Service, the requirements Job). [`cell`]
//! holds the cell's settings, [`samples`] the environments every test renders. [`migrate`]
//! renders what is not an environment's: the Job that fills the template database of an
//! Airflow version, in the cell's system namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use uuid::Uuid;

use super::{components, ArgsOptions, Backends, Component, ComponentKind, HANGAR_EXECUTOR};
use crate::api::EnvironmentSecrets;
use crate::names::TenantName;
use crate::spec::{EnvironmentSpec, Executor};

mod bucket;
mod cell;
mod migrate;
mod namespace;
mod network;
mod pods;
pub mod samples;
mod sidecars;
mod template;
mod workloads;

pub use bucket::{
    BucketAccess, BUCKET_DIR, BUCKET_SECRET, CONNECTION_ID, GATEWAY_BUCKET, GATEWAY_REGION, PROFILE,
};
pub use cell::{CellError, Egress, KubeCell};
pub use migrate::{
    migrate_job, migrate_job_name, MigrateInput, MigrateManifests, MigrateRenderError, CONN_KEY,
    MIGRATE_COMPONENT, MIGRATE_DEADLINE_SECONDS, TEMPLATE_LABEL,
};
pub use pods::worker_slot;
pub use template::{cli_pod, pod_template, CLI_CONTAINER};

/// Everything one environment's objects are rendered from.
#[derive(Debug, Clone)]
pub struct KubeInput {
    pub environment_id: Uuid,
    pub tenant: TenantName,
    /// The environment's spec; its `name` is the environment's name.
    pub spec: EnvironmentSpec,
    /// `None` renders every Secret value as [`REDACTED`] (to print manifests).
    pub secrets: Option<EnvironmentSecrets>,
    pub backends: Backends,
    /// Celery workers to run now (the autoscaler's choice, within the spec's bounds).
    pub workers: u32,
    pub cell: KubeCell,
    /// The environment's credentials for the agent's bucket gateway; `None` renders them as
    /// [`REDACTED`].
    pub bucket_access: Option<BucketAccess>,
}

/// An environment's objects.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifests {
    /// The environment's namespace (the first object).
    pub namespace: String,
    /// Every object, complete (`apiVersion`, `kind`, metadata), in apply order.
    pub objects: Vec<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("failed to render the objects of environment {environment}: the cell's settings are invalid: {source}")]
    Cell {
        environment: Uuid,
        #[source]
        source: CellError,
    },
    #[error("failed to render the objects of environment {environment}: the hangar executor (the cell's shared pool of task slots) runs on the process runtime only; use celery, kubernetes or celery_kubernetes on Kubernetes")]
    Executor { environment: Uuid },
    #[error("failed to serialize a {kind} of environment {environment}")]
    Serialize {
        environment: Uuid,
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// What a Secret holds instead of its values when rendered without secrets.
pub const REDACTED: &str = "<redacted>";

/// The port the api-server listens on in its pod (and its Service's).
pub const API_PORT: u16 = 8080;
/// The ports workers and the triggerer serve their logs on (Airflow's defaults).
pub const WORKER_LOG_PORT: u16 = 8793;
pub const TRIGGER_LOG_PORT: u16 = 8794;
/// The official image's `airflow` user.
pub const AIRFLOW_UID: i64 = 50000;
/// Seconds a worker has to finish its running tasks once asked to stop (Celery's warm
/// shutdown on SIGTERM), before it is killed.
pub const WORKER_GRACE_SECONDS: i64 = 3600;

/// The label every object carries, with `hangar.dev/…` labels naming its environment.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "hangar");
pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "hangar");
pub const ENVIRONMENT_LABEL: &str = "hangar.dev/environment";
pub const TENANT_LABEL: &str = "hangar.dev/tenant";
pub const COMPONENT_LABEL: &str = "hangar.dev/component";

/// Pods that are not one of the environment's long-running components.
pub const TASK_COMPONENT: &str = "task";
pub const REQUIREMENTS_COMPONENT: &str = "requirements";
/// The short-lived pods that run one Airflow CLI command each ([`cli_pod`]).
pub const CLI_COMPONENT: &str = "cli";
/// The label naming the CLI command a pod runs.
pub const CLI_CALL_LABEL: &str = "hangar.dev/cli-call";

/// An environment's namespace: `hangar-` and 12 hex digits of its id (unique enough among a
/// cluster's environments, and short).
pub fn namespace_name(environment_id: Uuid) -> String {
    let hex = environment_id.simple().to_string();
    format!("hangar-{}", &hex[..12])
}

/// What every part of the renderer reads: the input, validated, and names derived once.
pub(crate) struct Ctx<'a> {
    pub input: &'a KubeInput,
    pub namespace: String,
    pub components: Vec<Component>,
}

impl<'a> Ctx<'a> {
    fn new(input: &'a KubeInput) -> Result<Self, RenderError> {
        input.cell.validate().map_err(|source| RenderError::Cell {
            environment: input.environment_id,
            source,
        })?;
        let opts = ArgsOptions {
            api_host: "0.0.0.0".to_owned(),
            api_port: API_PORT,
            serve_logs: true,
        };
        let workers = if runs_celery(input.spec.executor) {
            input.workers
        } else {
            0
        };
        let components = components(&input.spec, workers, &opts)
            .into_iter()
            // With the Kubernetes executor alone there is no worker Deployment at all.
            .filter(|c| c.kind != ComponentKind::Worker || runs_celery(input.spec.executor))
            .collect();
        Ok(Self {
            input,
            namespace: namespace_name(input.environment_id),
            components,
        })
    }

    pub fn spec(&self) -> &EnvironmentSpec {
        &self.input.spec
    }

    pub fn cell(&self) -> &KubeCell {
        &self.input.cell
    }

    /// The labels of every object of the environment.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (PART_OF.0.to_owned(), PART_OF.1.to_owned()),
            (
                ENVIRONMENT_LABEL.to_owned(),
                self.input.environment_id.simple().to_string(),
            ),
            (TENANT_LABEL.to_owned(), self.input.tenant.to_string()),
        ])
    }

    /// The labels of a component's objects and pods.
    pub fn component_labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.insert(COMPONENT_LABEL.to_owned(), component.to_owned());
        labels
    }

    /// Metadata of an object of the namespace.
    pub fn meta(&self, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    pub fn executor(&self) -> Executor {
        self.input.spec.executor
    }

    /// Airflow's `[core] executor`.
    pub fn airflow_executor(&self) -> &'static str {
        match self.executor() {
            Executor::Celery => "CeleryExecutor",
            Executor::Kubernetes => "KubernetesExecutor",
            // The first is the default; a task chooses the other with `executor=`.
            Executor::CeleryKubernetes => "CeleryExecutor,KubernetesExecutor",
            // Refused by `render`: the task pool runs on the process runtime only.
            Executor::Hangar => HANGAR_EXECUTOR,
        }
    }

    /// The path the environment's Airflow is served under (`[api] base_url`), as on every
    /// runtime, so the control plane's proxy reaches it the same way.
    pub fn url_path(&self) -> String {
        crate::api::webserver_path(self.input.tenant.as_str(), self.spec().name.as_str())
    }
}

/// Whether the executor runs Celery workers.
pub fn runs_celery(executor: Executor) -> bool {
    matches!(executor, Executor::Celery | Executor::CeleryKubernetes)
}

/// Whether the executor starts task pods (the Kubernetes executor).
pub fn runs_task_pods(executor: Executor) -> bool {
    matches!(executor, Executor::Kubernetes | Executor::CeleryKubernetes)
}

/// A typed object as JSON.
pub(crate) fn to_value<T: Serialize + k8s_openapi::Resource>(
    ctx: &Ctx<'_>,
    object: &T,
) -> Result<serde_json::Value, RenderError> {
    serde_json::to_value(object).map_err(|source| RenderError::Serialize {
        environment: ctx.input.environment_id,
        kind: T::KIND,
        source,
    })
}

/// Every object of the environment, in apply order: the namespace, what confines it (network
/// policies, quota, limits), its identities and their rights, its configuration, then its
/// workloads (the requirements Job before the Deployments whose pods unpack what it built).
pub fn render(input: &KubeInput) -> Result<Manifests, RenderError> {
    if input.spec.executor == Executor::Hangar {
        return Err(RenderError::Executor {
            environment: input.environment_id,
        });
    }
    let ctx = Ctx::new(input)?;
    let mut objects = vec![namespace::namespace(&ctx)?];
    objects.extend(network::policies(&ctx)?);
    objects.push(namespace::resource_quota(&ctx)?);
    objects.push(namespace::limit_range(&ctx)?);
    objects.extend(namespace::service_accounts(&ctx)?);
    objects.extend(namespace::executor_rbac(&ctx)?);
    objects.extend(workloads::config(&ctx)?);
    objects.extend(workloads::requirements_job(&ctx)?);
    objects.extend(workloads::deployments(&ctx)?);
    objects.push(workloads::api_service(&ctx)?);
    Ok(Manifests {
        namespace: ctx.namespace,
        objects,
    })
}

#[cfg(test)]
mod tests;

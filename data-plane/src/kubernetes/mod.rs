//! The kubernetes runtime: a cell is one Kubernetes cluster, each environment a namespace of
//! it. Its objects come from the Kubernetes renderer and are applied with server-side apply;
//! the agent's reconciler drives them through [`crate::cell_runtime::EnvironmentRuntime`] like
//! the process runtime's processes.
//!
//! Split by concern: [`desired`] (a rendered object's resource, scope and content hash),
//! [`cluster`] (applying objects, deleting a namespace), [`status`] (Deployments as component
//! health), [`workers`] (worker pods, deletion costs), [`objects`] (one environment's objects
//! through a revision, scaling and deletion), [`error`] (how API failures are retried), and
//! [`runtime`] (the cell: cluster, platform services, renderer; failures as the agent sees
//! them), [`environment`] (one environment as the agent drives it), [`render`] (the Kubernetes
//! renderer as the runtime's), [`logs`] (component logs followed through the log API into files
//! the log shipper reads), [`migrate`] (the Job that migrates an Airflow version's template
//! database), [`cli`] (an Airflow CLI command in a short-lived pod), [`pool`] (the cell's
//! worker pool sized from its worker nodes).

pub mod cli;
pub mod cluster;
pub mod desired;
pub mod environment;
pub mod error;
pub mod logs;
pub mod migrate;
pub mod objects;
pub mod pool;
pub mod render;
pub mod runtime;
pub mod status;
pub mod workers;

#[cfg(test)]
mod tests;

pub use cluster::{Applied, Cluster, FIELD_MANAGER};
pub use environment::KubeEnvironment;
pub use error::ClusterError;
pub use migrate::{MigrateJobError, MigratePoll, TemplateMigrator};
pub use objects::EnvObjects;
pub use render::BlueprintRenderer;
pub use runtime::{
    Address, KubePlatform, KubePlatformError, KubeRuntime, KubeRuntimeError, Renderer,
};

/// An environment's objects, as the Kubernetes renderer makes them: its namespace, and every
/// object (complete: `apiVersion`, `kind`, metadata) in apply order, the namespace first.
pub use hangar_tenants::blueprint::kubernetes::Manifests;

//! The seam between the agent and what runs environments: a cell's [`Runtime`] makes one
//! [`EnvironmentRuntime`] per environment placed on the cell, and the agent drives each through
//! the same steps whatever runs it (processes on one machine, objects in one Kubernetes
//! cluster): apply a revision, sync from the bucket, observe, scale workers (draining the
//! surplus), hibernate, stop or detach, delete; plus where its logs come from and where its
//! Airflow CLI commands run.
//!
//! Futures are `Send` so the agent can run each environment on its own task.

use std::future::Future;

use hangar_tenants::api::{Assignment, CellIsolation};
use hangar_tenants::{FailedApply, ObservedState};

use crate::autoscaler::WorkerRuntime;
use crate::bucket::Bucket;
use crate::dag_sync::SyncError;
use crate::log_ship::LogSource;

/// A cell's runtime: what the agent registers with and makes environments from.
pub trait Runtime: Clone + Send + Sync + 'static {
    type Environment: EnvironmentRuntime;

    /// The runtime's handle on one environment (nothing is created until it is applied; an
    /// environment a previous agent left running is adopted by applying it again).
    fn environment(&self, assignment: &Assignment) -> Self::Environment;

    /// How the cell keeps environments apart, as reported when the agent registers.
    fn isolation(&self) -> CellIsolation;

    /// The platform bucket, if the cell has one (DAGs, plugins, requirements, logs).
    fn bucket(&self) -> Option<&Bucket>;
}

/// Why applying or deleting an environment failed, in the agent's terms.
pub trait RuntimeFailure: std::error::Error + Send + Sync + 'static {
    /// The failure's category, as `hangar_reconcile_failures_total` counts it.
    fn category(&self) -> &'static str;
    /// Whether retrying the same revision cannot help (the tenant must change something):
    /// the agent then waits for a new revision instead of backing off and retrying.
    fn is_permanent(&self) -> bool;
}

/// What the agent syncs from the bucket for an environment in one round.
#[derive(Debug, Default)]
pub struct BucketSync {
    pub dags: crate::dag_sync::SyncOutcome,
    /// The plugins changed: the components that load them must restart (`apply` again).
    pub plugins_changed: bool,
}

/// What an environment has to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idleness {
    /// Nothing queued, running or deferred.
    pub idle: bool,
    /// When the scheduler creates its next scheduled DAG run.
    pub next_run: Option<chrono::DateTime<chrono::Utc>>,
}

/// A hibernating environment, as its runtime keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Hibernated {
    /// When to start it again for its next scheduled DAG run.
    pub wake_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One environment on a cell's runtime. Every step is idempotent: running it again after a
/// crash at any point converges.
pub trait EnvironmentRuntime: WorkerRuntime + Send + 'static {
    type Error: RuntimeFailure;

    /// Brings the environment to the assignment's revision. On failure the previous
    /// revision keeps running untouched.
    fn apply(&mut self, a: &Assignment) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// One round of syncing DAGs, plugins and `requirements.txt` from the bucket, where the
    /// agent does it (a runtime whose components sync themselves does nothing here).
    fn sync_bucket(
        &mut self,
        a: &Assignment,
    ) -> impl Future<Output = Result<BucketSync, SyncError>> + Send;

    /// The environment's state now, with the last failed apply (if any) to report.
    fn observe(
        &mut self,
        failed: Option<FailedApply>,
    ) -> impl Future<Output = ObservedState> + Send;

    /// Removes everything of the environment. Idempotent.
    fn delete(&mut self, a: &Assignment) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stops watching the environment without stopping it (an agent upgrade or restart).
    fn detach(&mut self);

    /// Stops the environment, keeping its data, and returns the state to report.
    fn stop(&mut self) -> impl Future<Output = ObservedState> + Send;

    /// Whether nothing of the environment is to run now (no DAG run queued or running, no task
    /// queued, running or deferred), and when its next scheduled DAG run is due, if it has one.
    /// Only an idle environment may hibernate.
    fn idle(
        &mut self,
        a: &Assignment,
    ) -> impl Future<Output = Result<Idleness, crate::autoscaler::ScaleError>> + Send;

    /// Starts or stops the components that run only on demand (on one machine the triggerer,
    /// while the environment has triggers).
    fn on_demand(&mut self, a: &Assignment) -> impl Future<Output = ()> + Send;

    /// Stops every process of the environment, keeping its data, so that it stays stopped
    /// (across agent restarts too) until it is applied again; `wake_at`, when its next
    /// scheduled run is due soon enough for it to start again first.
    fn hibernate(
        &mut self,
        wake_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether the environment hibernates (as [`EnvironmentRuntime::hibernate`] left it), and
    /// when it is to wake for its next scheduled run.
    fn hibernated(&self) -> Option<Hibernated>;

    /// Where the log shipper reads the environment's component and task logs, once applied.
    fn log_source(&self, a: &Assignment) -> Option<LogSource>;

    /// Where the environment's Airflow CLI commands run, once applied.
    fn cli_target(&self) -> Option<crate::cli_runner::Target>;
}

//! One environment's objects on the cluster, as its reconciler drives them: apply a revision's
//! objects (rendered for the workers to run), scale the workers (up by applying the worker
//! Deployment's replicas, down by draining), see its components and draining workers, delete
//! it. The rendering is passed in (`render(workers)`), so this part knows nothing of the
//! blueprint, the platform's Postgres or Redis.

use std::collections::HashMap;

use hangar_tenants::ComponentStatus;

use super::cluster::{Applied, Cluster};
use super::desired::Desired;
use super::error::ClusterError;
use super::status::component_status;
use super::workers::{deletion_costs, WORKER};
use super::Manifests;

/// One environment's namespace and its workers, as last applied or read.
pub struct EnvObjects {
    cluster: Cluster,
    namespace: String,
    /// Worker replicas applied; `None` until the first apply (which adopts the cluster's).
    workers: Option<u32>,
    /// Worker pods finishing their tasks before they exit, as last seen.
    draining: u32,
}

impl EnvObjects {
    pub fn new(cluster: Cluster, namespace: String) -> Self {
        Self {
            cluster,
            namespace,
            workers: None,
            draining: 0,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The worker replicas applied, if any apply happened yet.
    pub fn workers(&self) -> Option<u32> {
        self.workers
    }

    /// Worker pods still finishing their tasks, as last seen by [`EnvObjects::refresh_pods`].
    pub fn draining(&self) -> u32 {
        self.draining
    }

    /// Applies the objects `render` makes for the workers to run: the autoscaler's number,
    /// or, before its first decision, the replicas the worker Deployment already has (an agent
    /// restart adopts them rather than resetting them to the minimum), at least
    /// `min_workers`. Unchanged objects are not written.
    pub async fn apply<E: From<ClusterError>>(
        &mut self,
        min_workers: u32,
        render: impl FnOnce(u32) -> Result<Manifests, E>,
    ) -> Result<Applied, E> {
        let workers = match self.workers {
            Some(n) => n,
            None => self
                .cluster
                .deployment_replicas(&self.namespace, WORKER)
                .await?
                .unwrap_or(0)
                .max(min_workers),
        };
        let manifests = render(workers)?;
        let applied = self
            .cluster
            .apply(&manifests.namespace, &manifests.objects)
            .await?;
        self.workers = Some(workers);
        Ok(applied)
    }

    /// Runs `n` workers with the running revision's objects (`render`). More workers: the
    /// worker Deployment is applied with more replicas. Fewer: the worker pods first get
    /// deletion costs from the tasks they run (`running`, per Celery hostname; `None`: by
    /// age), so the ReplicaSet controller removes idle ones first, then the replicas are
    /// lowered; the removed pods drain (Celery's warm shutdown) before they exit.
    pub async fn scale_to<E: From<ClusterError>>(
        &mut self,
        n: u32,
        running: Option<&HashMap<String, u32>>,
        render: impl FnOnce(u32) -> Result<Manifests, E>,
    ) -> Result<(), E> {
        if n < self.workers.unwrap_or(0) {
            let pods = self.cluster.worker_pods(&self.namespace).await?;
            let costs = deletion_costs(&pods, running);
            self.cluster
                .set_deletion_costs(&self.namespace, &costs)
                .await?;
        }
        let manifests = render(n)?;
        let worker = manifests
            .objects
            .iter()
            .enumerate()
            .find(|(_, o)| o["kind"] == "Deployment" && o["metadata"]["name"] == WORKER);
        if let Some((index, object)) = worker {
            let desired = Desired::new(&manifests.namespace, index, object)?;
            self.cluster.apply_object(&desired).await?;
        }
        self.workers = Some(n);
        Ok(())
    }

    /// Counts the worker pods that are draining (they hold their pool slots until they exit).
    pub async fn refresh_pods(&mut self) -> Result<(), ClusterError> {
        let pods = self.cluster.worker_pods(&self.namespace).await?;
        self.draining =
            u32::try_from(pods.iter().filter(|p| p.draining).count()).unwrap_or(u32::MAX);
        Ok(())
    }

    /// Each Deployment's health, by component name.
    pub async fn components(&self) -> Result<Vec<ComponentStatus>, ClusterError> {
        let mut components: Vec<ComponentStatus> = self
            .cluster
            .deployments(&self.namespace)
            .await?
            .iter()
            .map(component_status)
            .collect();
        components.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(components)
    }

    /// Deletes the namespace and everything in it, waiting until it is gone.
    pub async fn delete(&mut self) -> Result<(), ClusterError> {
        self.cluster.delete_namespace(&self.namespace).await?;
        self.workers = None;
        self.draining = 0;
        Ok(())
    }
}

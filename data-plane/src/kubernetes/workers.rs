//! An environment's Celery worker pods on the cluster: how many its Deployment asks for (read
//! back when an agent adopts it), which pods are draining, and which go first when it scales
//! down.
//!
//! Scaling down never kills a busy worker on purpose: before the Deployment's replicas are
//! lowered, every worker pod gets a `controller.kubernetes.io/pod-deletion-cost` equal to the
//! tasks it runs (from the environment's `task_instance.hostname`), so the ReplicaSet
//! controller removes idle workers first; without task data the cost follows the pods' age
//! (the youngest goes first). A removed pod gets SIGTERM, Celery's warm shutdown: it stops
//! taking tasks and finishes those it runs within the Deployment's long
//! `terminationGracePeriodSeconds`. Until it exits it has a deletion timestamp and counts as
//! draining (its pool slot still taken).

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::cluster::{Cluster, FIELD_MANAGER};
use super::error::ClusterError;

/// The component (label `hangar.dev/component`) and Deployment name of the Celery workers
/// (the renderer's `ComponentKind::Worker`).
pub const WORKER: &str = "worker";
/// The label naming an object's component.
pub use hangar_tenants::blueprint::kubernetes::COMPONENT_LABEL;
/// The annotation the ReplicaSet controller orders pods by when it removes some (lowest first).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// One worker pod as the drain needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPod {
    pub name: String,
    pub created: Option<Time>,
    /// It has a deletion timestamp: it is finishing its tasks before it exits.
    pub draining: bool,
    /// Its current [`DELETION_COST`], if set.
    pub cost: Option<i32>,
}

impl WorkerPod {
    fn from_pod(pod: Pod) -> Option<Self> {
        let meta = pod.metadata;
        Some(Self {
            name: meta.name?,
            created: meta.creation_timestamp,
            draining: meta.deletion_timestamp.is_some(),
            cost: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(DELETION_COST))
                .and_then(|c| c.parse().ok()),
        })
    }
}

/// The deletion costs to set so idle workers go first: each live pod's cost is the number of
/// tasks running on it (`running`: per Celery hostname, which is the pod's name, possibly
/// followed by a domain); without task data, its rank by age (the oldest costs most). Only
/// pods whose cost changes are returned.
pub fn deletion_costs(
    pods: &[WorkerPod],
    running: Option<&HashMap<String, u32>>,
) -> Vec<(String, i32)> {
    let mut live: Vec<&WorkerPod> = pods.iter().filter(|p| !p.draining).collect();
    let costs: Vec<(String, i32)> = match running {
        Some(running) => {
            let mut per_pod: HashMap<&str, u32> = HashMap::new();
            for (host, n) in running {
                let pod = host.split('.').next().unwrap_or(host);
                *per_pod.entry(pod).or_default() += n;
            }
            live.iter()
                .map(|p| {
                    let n = per_pod.get(p.name.as_str()).copied().unwrap_or(0);
                    (p.name.clone(), i32::try_from(n).unwrap_or(i32::MAX))
                })
                .collect()
        }
        None => {
            // Newest first, so the youngest gets cost 0.
            live.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
            live.iter()
                .enumerate()
                .map(|(rank, p)| (p.name.clone(), i32::try_from(rank).unwrap_or(i32::MAX)))
                .collect()
        }
    };
    costs
        .into_iter()
        .filter(|(name, cost)| {
            pods.iter()
                .find(|p| &p.name == name)
                .is_none_or(|p| p.cost != Some(*cost))
        })
        .collect()
}

impl Cluster {
    /// The replicas a Deployment asks for, if it exists.
    pub async fn deployment_replicas(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<u32>, ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|source| ClusterError::ReadDeployment {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: Box::new(source),
            })?;
        Ok(found.map(|d| {
            let replicas = d.spec.replicas.unwrap_or(1);
            u32::try_from(replicas).unwrap_or(0)
        }))
    }

    /// The namespace's worker pods, draining ones included.
    pub async fn worker_pods(&self, namespace: &str) -> Result<Vec<WorkerPod>, ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pods = api
            .list(&ListParams::default().labels(&format!("{COMPONENT_LABEL}={WORKER}")))
            .await
            .map_err(|source| ClusterError::ListPods {
                namespace: namespace.to_owned(),
                component: WORKER.to_owned(),
                source: Box::new(source),
            })?;
        Ok(pods
            .items
            .into_iter()
            .filter_map(WorkerPod::from_pod)
            .collect())
    }

    /// Sets the [`DELETION_COST`] of each pod. A pod gone meanwhile needs none.
    pub async fn set_deletion_costs(
        &self,
        namespace: &str,
        costs: &[(String, i32)],
    ) -> Result<(), ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        for (pod, cost) in costs {
            let patch = serde_json::json!({
                "metadata": {"annotations": {DELETION_COST: cost.to_string()}}
            });
            match api
                .patch_metadata(pod, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if super::error::is_not_found(&e) => {}
                Err(source) => {
                    return Err(ClusterError::DeletionCost {
                        namespace: namespace.to_owned(),
                        pod: pod.clone(),
                        source: Box::new(source),
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn pod(name: &str, created: &str, draining: bool, cost: Option<i32>) -> WorkerPod {
        WorkerPod {
            name: name.to_owned(),
            created: Some(Time(created.parse().unwrap())),
            draining,
            cost,
        }
    }

    #[test]
    fn the_worker_deployment_is_named_as_the_renderer_names_it() {
        assert_eq!(
            WORKER,
            hangar_tenants::blueprint::ComponentKind::Worker.as_str()
        );
    }

    #[test]
    fn idle_workers_cost_least_and_busy_ones_cost_their_tasks() {
        let pods = [
            pod("worker-a", "2025-01-01T00:00:00Z", false, None),
            pod("worker-b", "2025-01-01T00:01:00Z", false, None),
            pod("worker-c", "2025-01-01T00:02:00Z", false, None),
        ];
        let running = HashMap::from([
            ("worker-a".to_owned(), 3),
            ("worker-c.hangar-0123.svc.cluster.local".to_owned(), 1),
        ]);
        let mut costs = deletion_costs(&pods, Some(&running));
        costs.sort();
        assert_eq!(
            costs,
            vec![
                ("worker-a".to_owned(), 3),
                ("worker-b".to_owned(), 0),
                ("worker-c".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn without_task_data_the_youngest_worker_costs_least() {
        let pods = [
            pod("worker-old", "2025-01-01T00:00:00Z", false, None),
            pod("worker-new", "2025-01-01T00:05:00Z", false, None),
        ];
        let mut costs = deletion_costs(&pods, None);
        costs.sort();
        assert_eq!(
            costs,
            vec![("worker-new".to_owned(), 0), ("worker-old".to_owned(), 1)]
        );
    }

    #[test]
    fn draining_pods_and_costs_already_right_are_left_alone() {
        let pods = [
            pod("worker-a", "2025-01-01T00:00:00Z", false, Some(0)),
            pod("worker-b", "2025-01-01T00:01:00Z", false, Some(0)),
            pod("worker-gone", "2025-01-01T00:02:00Z", true, None),
        ];
        let running = HashMap::from([("worker-b".to_owned(), 2)]);
        assert_eq!(
            deletion_costs(&pods, Some(&running)),
            vec![("worker-b".to_owned(), 2)]
        );
    }
}

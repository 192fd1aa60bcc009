//! What an environment's Deployments say about its components: one [`ComponentStatus`] per
//! Deployment, healthy once the Deployment controller has seen its current spec and as many
//! up-to-date replicas are available as it asks for.

use hangar_tenants::ComponentStatus;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};

use super::cluster::{Cluster, MANAGED_SELECTOR};
use super::error::ClusterError;
use super::workers::COMPONENT_LABEL;

impl Cluster {
    /// The namespace's Deployments that Hangar manages.
    pub async fn deployments(&self, namespace: &str) -> Result<Vec<Deployment>, ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await
            .map(|l| l.items)
            .map_err(|source| ClusterError::Read {
                namespace: namespace.to_owned(),
                kind: "Deployment".to_owned(),
                source: Box::new(source),
            })
    }
}

/// A Deployment's health as its component's status (named by its `hangar.dev/component`
/// label, else by its name).
pub fn component_status(d: &Deployment) -> ComponentStatus {
    let name = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(COMPONENT_LABEL))
        .or(d.metadata.name.as_ref())
        .cloned()
        .unwrap_or_default();
    let desired = d.spec.replicas.unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let seen = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let message = if !seen {
        Some("the Deployment controller has not seen its newest spec yet".to_owned())
    } else if updated < desired {
        Some(format!(
            "rolling out: {updated} of {desired} replicas updated"
        ))
    } else if available < desired {
        Some(format!("{available} of {desired} replicas available"))
    } else {
        None
    };
    ComponentStatus {
        name,
        healthy: message.is_none(),
        message,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        available: i32,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "scheduler", "generation": generation,
                         "labels": {COMPONENT_LABEL: "scheduler"}},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": {"observedGeneration": observed, "updatedReplicas": updated,
                       "availableReplicas": available}
        }))
        .unwrap()
    }

    #[rstest]
    #[case::all_available(2, 2, 1, 1, 1, true)]
    #[case::none_available(2, 2, 1, 1, 0, false)]
    #[case::new_spec_not_seen(3, 2, 1, 1, 1, false)]
    #[case::old_pods_still_serving(2, 2, 2, 1, 2, false)]
    #[case::scaled_to_zero(2, 2, 0, 0, 0, true)]
    fn a_deployment_is_healthy_when_its_desired_replicas_are_up_to_date_and_available(
        #[case] generation: i64,
        #[case] observed: i64,
        #[case] replicas: i32,
        #[case] updated: i32,
        #[case] available: i32,
        #[case] healthy: bool,
    ) {
        let s = component_status(&deployment(
            generation, observed, replicas, updated, available,
        ));
        assert_eq!(s.name, "scheduler");
        assert_eq!(s.healthy, healthy, "{s:?}");
        assert_eq!(s.message.is_none(), healthy);
    }
}

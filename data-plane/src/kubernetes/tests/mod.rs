//! The kubernetes runtime against a scripted API server ([`mock`]): every request it makes is
//! asserted, in order, with the answers a real API server would give. The fixtures are one
//! environment's objects, a few of each family, as the renderer makes them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod errors;
mod logs;
mod migrate;
pub(crate) mod mock;
mod objects;
mod pool;
mod rendered;

use std::time::Duration;

use serde_json::{json, Value};

use super::desired::content_hash;
use super::{Cluster, EnvObjects, Manifests};
use mock::{applied_meta, metadata_list, ApiServer};

pub(super) const NS: &str = "hangar-0123456789ab";

pub(super) fn labels(component: &str) -> Value {
    json!({"app.kubernetes.io/managed-by": "hangar",
           "hangar.dev/environment": "0123456789abcdef0123456789abcdef",
           "hangar.dev/component": component})
}

pub(super) fn meta(name: &str, component: &str) -> Value {
    json!({"name": name, "namespace": NS, "labels": labels(component)})
}

pub(super) fn deployment(name: &str, image: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name, name),
           "spec": {"replicas": replicas,
                    "selector": {"matchLabels": {"hangar.dev/component": name}},
                    "template": {"metadata": {"labels": labels(name)},
                                 "spec": {"containers": [{"name": name, "image": image}]}}}})
}

/// An environment's objects as the renderer makes them (a few of each family), in order.
pub(super) fn rendered(workers: u32, scheduler_image: &str) -> Manifests {
    Manifests {
        namespace: NS.to_owned(),
        objects: vec![
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": NS, "labels": labels("namespace")}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": meta("default-deny", "network"),
                   "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("airflow-config", "config"),
                   "data": {"airflow.cfg": "[core]\nexecutor = CeleryExecutor\n"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("airflow-secrets", "config"),
                   "stringData": {"fernet-key": "k"}}),
            deployment("scheduler", scheduler_image, 1),
            deployment("worker", "apache/airflow:3.1.0", workers),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("api-server", "api-server"),
                   "spec": {"selector": {"hangar.dev/component": "api-server"},
                            "ports": [{"port": 8080}]}}),
        ],
    }
}

/// Where each of [`rendered`]'s objects is applied.
pub(super) fn uris() -> Vec<String> {
    vec![
        format!("/api/v1/namespaces/{NS}"),
        format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/default-deny"),
        format!("/api/v1/namespaces/{NS}/configmaps/airflow-config"),
        format!("/api/v1/namespaces/{NS}/secrets/airflow-secrets"),
        format!("/apis/apps/v1/namespaces/{NS}/deployments/scheduler"),
        format!("/apis/apps/v1/namespaces/{NS}/deployments/worker"),
        format!("/api/v1/namespaces/{NS}/services/api-server"),
    ]
}

pub(super) const SELECTOR: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhangar";

pub(super) fn worker_deployment_uri() -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/worker")
}

/// The worker Deployment as the cluster has it, with `replicas`.
pub(super) fn existing_worker(replicas: u32) -> Value {
    let mut d = deployment("worker", "apache/airflow:3.1.0", replicas);
    d["metadata"]["uid"] = json!("b1946ac9");
    d
}

/// The API server's side of reading what exists: the namespace, then one metadata list per
/// kind, every object carrying the hash of `m`'s version of it.
pub(super) async fn serve_reads(server: &mut ApiServer, m: &Manifests) {
    serve_reads_with(server, m, &[]).await;
}

/// [`serve_reads`], with more ConfigMaps managed by Hangar than `m` has.
pub(super) async fn serve_reads_with(server: &mut ApiServer, m: &Manifests, extra_config: &[&str]) {
    let hash = |i: usize| content_hash(&m.objects[i]);
    server
        .expect(
            "GET",
            &format!("/api/v1/namespaces/{NS}"),
            200,
            applied_meta(NS, &hash(0)),
        )
        .await;
    let list = |uri: &str| format!("{uri}?{SELECTOR}");
    server
        .expect(
            "GET",
            &list(&format!(
                "/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
            )),
            200,
            metadata_list(vec![applied_meta("default-deny", &hash(1))]),
        )
        .await;
    server
        .expect(
            "GET",
            &list(&format!("/api/v1/namespaces/{NS}/configmaps")),
            200,
            metadata_list(
                std::iter::once(applied_meta("airflow-config", &hash(2)))
                    .chain(
                        extra_config
                            .iter()
                            .map(|n| applied_meta(n, "0123456789abcdef")),
                    )
                    .collect(),
            ),
        )
        .await;
    server
        .expect(
            "GET",
            &list(&format!("/api/v1/namespaces/{NS}/secrets")),
            200,
            metadata_list(vec![applied_meta("airflow-secrets", &hash(3))]),
        )
        .await;
    server
        .expect(
            "GET",
            &list(&format!("/apis/apps/v1/namespaces/{NS}/deployments")),
            200,
            metadata_list(vec![
                applied_meta("scheduler", &hash(4)),
                applied_meta("worker", &hash(5)),
            ]),
        )
        .await;
    server
        .expect(
            "GET",
            &list(&format!("/api/v1/namespaces/{NS}/services")),
            200,
            metadata_list(vec![applied_meta("api-server", &hash(6))]),
        )
        .await;
}

pub(super) fn env(client: kube::Client) -> EnvObjects {
    EnvObjects::new(
        Cluster::new(client).with_delete_poll(Duration::from_millis(1), 3),
        NS.to_owned(),
    )
}

//! The renderer's own sample environments through the cluster side: every object it makes is
//! applied where its kind lives (kinds the agent's ClusterRole in docs/kubernetes.md covers),
//! and carries what the agent reads back (the managed-by label, its namespace).

use hangar_tenants::blueprint::kubernetes::{render, samples::samples};
use serde_json::Value;

use super::mock::{self, not_found, scenario};
use super::*;

/// Where an object is applied, by a table of the kinds the ClusterRole grants (not by kube's
/// plural guessing, which this checks).
fn uri_of(object: &Value, namespace: &str) -> String {
    let api_version = object["apiVersion"].as_str().unwrap();
    let kind = object["kind"].as_str().unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    let (prefix, plural) = match (api_version, kind) {
        ("v1", "Namespace") => return format!("/api/v1/namespaces/{name}"),
        ("v1", "ConfigMap") => ("/api/v1", "configmaps"),
        ("v1", "Secret") => ("/api/v1", "secrets"),
        ("v1", "ServiceAccount") => ("/api/v1", "serviceaccounts"),
        ("v1", "Service") => ("/api/v1", "services"),
        ("v1", "ResourceQuota") => ("/api/v1", "resourcequotas"),
        ("v1", "LimitRange") => ("/api/v1", "limitranges"),
        ("apps/v1", "Deployment") => ("/apis/apps/v1", "deployments"),
        ("batch/v1", "Job") => ("/apis/batch/v1", "jobs"),
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            ("/apis/networking.k8s.io/v1", "networkpolicies")
        }
        ("rbac.authorization.k8s.io/v1", "Role") => ("/apis/rbac.authorization.k8s.io/v1", "roles"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            ("/apis/rbac.authorization.k8s.io/v1", "rolebindings")
        }
        other => panic!("{other:?} is not in the agent's ClusterRole (docs/kubernetes.md)"),
    };
    format!("{prefix}/namespaces/{namespace}/{plural}/{name}")
}

#[tokio::test]
async fn every_rendered_object_is_applied_where_its_kind_lives() {
    for sample in samples().unwrap() {
        let m = render(&sample.input).unwrap();
        assert_eq!(m.objects[0]["kind"], "Namespace", "{}", sample.name);
        for o in &m.objects[1..] {
            assert_eq!(
                o["metadata"]["namespace"],
                m.namespace.as_str(),
                "{}: {o}",
                sample.name
            );
        }
        for o in &m.objects {
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "hangar",
                "{}: the agent finds only labelled objects again: {o}",
                sample.name
            );
        }
        let (client, mut server) = mock::pair();
        let cluster = Cluster::new(client);
        let applied = scenario(cluster.apply(&m.namespace, &m.objects), async {
            let ns = format!("/api/v1/namespaces/{}", m.namespace);
            server
                .expect("GET", &ns, 404, not_found("namespaces", &m.namespace))
                .await;
            for o in &m.objects {
                server.expect_apply(&uri_of(o, &m.namespace), o).await;
            }
        })
        .await
        .unwrap();
        server.assert_idle();
        assert_eq!(applied.patched.len(), m.objects.len(), "{}", sample.name);
    }
}

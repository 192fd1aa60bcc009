//! Failures of the API server and how they reach the agent's error policy: a conflict is
//! retried once after re-reading; server faults and lost connections are transient (the next
//! attempt succeeds); an invalid object is permanent.

use serde_json::{json, Value};

use super::mock::{self, applied_meta, metadata_list, scenario, status, ApiServer};
use super::*;
use crate::kubernetes::error::ClusterError;

/// A namespace and one ConfigMap, the ConfigMap changed since it was applied.
fn small() -> Manifests {
    let m = rendered(1, "airflow:1");
    Manifests {
        namespace: m.namespace,
        objects: vec![m.objects[0].clone(), m.objects[2].clone()],
    }
}

fn config_uri() -> String {
    format!("/api/v1/namespaces/{NS}/configmaps/airflow-config")
}

fn apply_query() -> String {
    format!("{}?fieldManager=hangar&force=true", config_uri())
}

/// The API server's side of reading what exists: the namespace as rendered, the ConfigMap
/// with an older hash.
async fn serve_reads(server: &mut ApiServer, m: &Manifests) {
    server
        .expect(
            "GET",
            &format!("/api/v1/namespaces/{NS}"),
            200,
            applied_meta(NS, &content_hash(&m.objects[0])),
        )
        .await;
    server
        .expect(
            "GET",
            &format!("/api/v1/namespaces/{NS}/configmaps?{SELECTOR}"),
            200,
            metadata_list(vec![applied_meta("airflow-config", "0000000000000000")]),
        )
        .await;
}

fn conflict() -> Value {
    status(409, "Conflict", "Operation cannot be fulfilled on configmaps \"airflow-config\": the object has been modified")
}

/// A second attempt, as the agent makes it after backing off: reads, then applies.
async fn retry_succeeds(cluster: &Cluster, server: &mut ApiServer, m: &Manifests) {
    let applied = scenario(cluster.apply(NS, &m.objects), async {
        serve_reads(server, m).await;
        server.expect_apply(&config_uri(), &m.objects[1]).await;
    })
    .await
    .unwrap();
    assert_eq!(
        applied.patched,
        vec![format!("ConfigMap/{NS}/airflow-config")]
    );
    server.assert_idle();
}

#[tokio::test]
async fn a_conflict_is_retried_once_after_reading_the_object_again() {
    let (client, mut server) = mock::pair();
    let cluster = Cluster::new(client);
    let m = small();
    let applied = scenario(cluster.apply(NS, &m.objects), async {
        serve_reads(&mut server, &m).await;
        server
            .expect("PATCH", &apply_query(), 409, conflict())
            .await;
        server
            .expect(
                "GET",
                &config_uri(),
                200,
                applied_meta("airflow-config", "0000000000000000"),
            )
            .await;
        server.expect_apply(&config_uri(), &m.objects[1]).await;
    })
    .await
    .unwrap();
    assert_eq!(applied.patched.len(), 1);
    server.assert_idle();
}

#[tokio::test]
async fn a_conflict_resolved_by_someone_applying_the_same_content_needs_no_second_patch() {
    let (client, mut server) = mock::pair();
    let cluster = Cluster::new(client);
    let m = small();
    scenario(cluster.apply(NS, &m.objects), async {
        serve_reads(&mut server, &m).await;
        server
            .expect("PATCH", &apply_query(), 409, conflict())
            .await;
        let now = applied_meta("airflow-config", &content_hash(&m.objects[1]));
        server.expect("GET", &config_uri(), 200, now).await;
    })
    .await
    .unwrap();
    server.assert_idle();
}

#[tokio::test]
async fn a_second_conflict_is_transient_and_the_next_attempt_succeeds() {
    let (client, mut server) = mock::pair();
    let cluster = Cluster::new(client);
    let m = small();
    let e = scenario(cluster.apply(NS, &m.objects), async {
        serve_reads(&mut server, &m).await;
        server
            .expect("PATCH", &apply_query(), 409, conflict())
            .await;
        server
            .expect(
                "GET",
                &config_uri(),
                200,
                applied_meta("airflow-config", "0000000000000000"),
            )
            .await;
        server
            .expect("PATCH", &apply_query(), 409, conflict())
            .await;
    })
    .await
    .unwrap_err();
    assert!(matches!(e, ClusterError::Apply { .. }), "{e}");
    assert!(!e.is_permanent());
    assert_eq!(e.category(), "kubernetes");
    retry_succeeds(&cluster, &mut server, &m).await;
}

#[tokio::test]
async fn a_server_fault_is_transient_and_the_next_attempt_succeeds() {
    let (client, mut server) = mock::pair();
    let cluster = Cluster::new(client);
    let m = small();
    let e = scenario(cluster.apply(NS, &m.objects), async {
        serve_reads(&mut server, &m).await;
        let unavailable = status(503, "ServiceUnavailable", "etcdserver: leader changed");
        server
            .expect("PATCH", &apply_query(), 503, unavailable)
            .await;
    })
    .await
    .unwrap_err();
    assert!(!e.is_permanent());
    assert_eq!(e.category(), "kubernetes");
    assert!(e.to_string().contains("airflow-config"), "{e}");
    retry_succeeds(&cluster, &mut server, &m).await;
}

#[tokio::test]
async fn a_lost_connection_while_reading_is_transient_and_the_next_attempt_succeeds() {
    let (client, mut server) = mock::pair();
    let cluster = Cluster::new(client);
    let m = small();
    let e = scenario(cluster.apply(NS, &m.objects), async {
        server
            .drop_connection("GET", &format!("/api/v1/namespaces/{NS}"))
            .await;
    })
    .await
    .unwrap_err();
    assert!(matches!(e, ClusterError::Read { .. }), "{e}");
    assert!(!e.is_permanent());
    assert_eq!(e.category(), "kubernetes");
    retry_succeeds(&cluster, &mut server, &m).await;
}

#[tokio::test]
async fn an_invalid_object_is_permanent() {
    let (client, mut server) = mock::pair();
    let cluster = Cluster::new(client);
    let m = small();
    let e = scenario(cluster.apply(NS, &m.objects), async {
        serve_reads(&mut server, &m).await;
        let invalid = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "Invalid", "code": 422,
            "message": "ConfigMap \"airflow-config\" is invalid: data[bad key]: Invalid value"});
        server.expect("PATCH", &apply_query(), 422, invalid).await;
    })
    .await
    .unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.category(), "kubernetes_invalid");
    server.assert_idle();
}

#[tokio::test]
async fn applying_into_a_namespace_being_deleted_is_refused_before_any_write() {
    let (client, mut server) = mock::pair();
    let cluster = Cluster::new(client);
    let m = small();
    let e = scenario(cluster.apply(NS, &m.objects), async {
        let terminating =
            json!({"metadata": {"name": NS, "deletionTimestamp": "2025-01-01T00:00:00Z"}});
        server
            .expect("GET", &format!("/api/v1/namespaces/{NS}"), 200, terminating)
            .await;
    })
    .await
    .unwrap_err();
    assert!(matches!(e, ClusterError::Terminating { .. }), "{e}");
    assert!(!e.is_permanent());
    server.assert_idle();
}

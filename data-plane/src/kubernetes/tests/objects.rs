//! One environment's objects through create, revision, restart, scaling and delete.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::mock::{self, not_found, scenario, ApiServer};
use super::*;
use crate::kubernetes::error::ClusterError;
use crate::kubernetes::workers::DELETION_COST;
use crate::kubernetes::EnvObjects;

/// An environment whose objects exist as `rendered(workers, "airflow:1")`, adopted by a new
/// agent.
async fn adopted(server: &mut ApiServer, objects: &mut EnvObjects, workers: u32) {
    let existing = rendered(workers, "airflow:1");
    let applied = scenario(
        objects.apply::<ClusterError>(1, |n| Ok(rendered(n, "airflow:1"))),
        async {
            server
                .expect(
                    "GET",
                    &worker_deployment_uri(),
                    200,
                    existing_worker(workers),
                )
                .await;
            serve_reads(server, &existing).await;
        },
    )
    .await
    .unwrap();
    assert!(applied.patched.is_empty(), "{applied:?}");
    assert_eq!(applied.unchanged, existing.objects.len());
}

#[tokio::test]
async fn create_applies_every_object_in_order_on_an_empty_cluster() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    let m = rendered(1, "airflow:1");
    let applied = scenario(
        objects.apply::<ClusterError>(1, |n| Ok(rendered(n, "airflow:1"))),
        async {
            server
                .expect(
                    "GET",
                    &worker_deployment_uri(),
                    404,
                    not_found("deployments", "worker"),
                )
                .await;
            // No namespace: nothing else can exist, nothing else is read.
            server
                .expect(
                    "GET",
                    &format!("/api/v1/namespaces/{NS}"),
                    404,
                    not_found("namespaces", NS),
                )
                .await;
            for (uri, object) in uris().iter().zip(&m.objects) {
                server.expect_apply(uri, object).await;
            }
        },
    )
    .await
    .unwrap();
    server.assert_idle();
    assert_eq!(applied.patched.len(), 7);
    assert_eq!(applied.patched[0], format!("Namespace/{NS}"));
    assert_eq!(applied.unchanged, 0);
    assert_eq!(
        objects.workers(),
        Some(1),
        "min_workers on a new environment"
    );
}

#[tokio::test]
async fn a_revision_changing_one_component_patches_only_its_objects() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    let before = rendered(2, "airflow:1");
    let after = rendered(2, "airflow:2");
    let applied = scenario(
        objects.apply::<ClusterError>(0, |n| Ok(rendered(n, "airflow:2"))),
        async {
            server
                .expect("GET", &worker_deployment_uri(), 200, existing_worker(2))
                .await;
            serve_reads(&mut server, &before).await;
            server.expect_apply(&uris()[4], &after.objects[4]).await;
        },
    )
    .await
    .unwrap();
    server.assert_idle();
    assert_eq!(applied.patched, vec![format!("Deployment/{NS}/scheduler")]);
    assert_eq!(applied.unchanged, 6);
}

#[tokio::test]
async fn objects_the_revision_no_longer_has_are_deleted_after_the_new_ones_are_applied() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    let m = rendered(2, "airflow:2");
    let applied = scenario(
        objects.apply::<ClusterError>(0, |n| Ok(rendered(n, "airflow:2"))),
        async {
            server
                .expect("GET", &worker_deployment_uri(), 200, existing_worker(2))
                .await;
            serve_reads_with(
                &mut server,
                &rendered(2, "airflow:1"),
                &["requirements-5f2a"],
            )
            .await;
            server.expect_apply(&uris()[4], &m.objects[4]).await;
            let old = format!("/api/v1/namespaces/{NS}/configmaps/requirements-5f2a");
            let gone = json!({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "requirements-5f2a", "namespace": NS}});
            let got = server.expect("DELETE", &old, 200, gone).await;
            assert_eq!(got.body["propagationPolicy"], "Background");
        },
    )
    .await
    .unwrap();
    server.assert_idle();
    assert_eq!(
        applied.pruned,
        vec![format!("ConfigMap/{NS}/requirements-5f2a")]
    );
}

#[tokio::test]
async fn an_agent_restart_adopts_what_exists_without_writing() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    // Three workers run although the minimum is one: they are kept, not reset.
    adopted(&mut server, &mut objects, 3).await;
    server.assert_idle();
    assert_eq!(objects.workers(), Some(3));
}

#[tokio::test]
async fn scaling_up_applies_more_worker_replicas_and_nothing_else() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    adopted(&mut server, &mut objects, 1).await;
    scenario(
        objects.scale_to::<ClusterError>(4, None, |n| Ok(rendered(n, "airflow:1"))),
        async {
            let want = deployment("worker", "apache/airflow:3.1.0", 4);
            let got = server.expect_apply(&worker_deployment_uri(), &want).await;
            assert_eq!(got.body["spec"]["replicas"], 4);
        },
    )
    .await
    .unwrap();
    server.assert_idle();
    assert_eq!(objects.workers(), Some(4));
}

fn pod(name: &str, created: &str, deleting: bool) -> Value {
    let mut p = json!({"metadata": {"name": name, "namespace": NS, "creationTimestamp": created,
                                    "labels": labels("worker")},
                       "spec": {"containers": [{"name": "worker"}]}});
    if deleting {
        p["metadata"]["deletionTimestamp"] = json!("2025-01-01T01:00:00Z");
    }
    p
}

#[tokio::test]
async fn scaling_down_sets_deletion_costs_before_lowering_replicas_idle_pods_cheapest() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    adopted(&mut server, &mut objects, 3).await;
    let running = HashMap::from([
        ("worker-7d9f-a".to_owned(), 4),
        ("worker-7d9f-c.hangar-0123456789ab.pod".to_owned(), 1),
    ]);
    scenario(
        objects.scale_to::<ClusterError>(1, Some(&running), |n| Ok(rendered(n, "airflow:1"))),
        async {
            server
                .expect(
                    "GET",
                    &format!("/api/v1/namespaces/{NS}/pods?labelSelector=hangar.dev%2Fcomponent%3Dworker"),
                    200,
                    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
                        pod("worker-7d9f-a", "2025-01-01T00:00:00Z", false),
                        pod("worker-7d9f-b", "2025-01-01T00:01:00Z", false),
                        pod("worker-7d9f-c", "2025-01-01T00:02:00Z", false),
                        pod("worker-7d9f-old", "2024-12-31T00:00:00Z", true),
                    ]}),
                )
                .await;
            let mut costs = Vec::new();
            for name in ["worker-7d9f-a", "worker-7d9f-b", "worker-7d9f-c"] {
                let got = server
                    .expect(
                        "PATCH",
                        &format!("/api/v1/namespaces/{NS}/pods/{name}?fieldManager=hangar"),
                        200,
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": {"name": name}}),
                    )
                    .await;
                assert_eq!(got.content_type.as_deref(), Some("application/merge-patch+json"));
                let cost: i32 = got.body["metadata"]["annotations"][DELETION_COST]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                costs.push((cost, name));
            }
            costs.sort();
            assert_eq!(costs[0], (0, "worker-7d9f-b"), "the idle pod goes first");
            assert_eq!(costs, vec![(0, "worker-7d9f-b"), (1, "worker-7d9f-c"), (4, "worker-7d9f-a")]);
            // Only then are the replicas lowered.
            let want = deployment("worker", "apache/airflow:3.1.0", 1);
            server.expect_apply(&worker_deployment_uri(), &want).await;
        },
    )
    .await
    .unwrap();
    server.assert_idle();
    assert_eq!(objects.workers(), Some(1));
}

#[tokio::test]
async fn draining_workers_are_the_pods_being_deleted() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    scenario(objects.refresh_pods(), async {
        server
            .expect(
                "GET",
                &format!(
                    "/api/v1/namespaces/{NS}/pods?labelSelector=hangar.dev%2Fcomponent%3Dworker"
                ),
                200,
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
                    pod("worker-a", "2025-01-01T00:00:00Z", false),
                    pod("worker-b", "2025-01-01T00:01:00Z", true),
                ]}),
            )
            .await;
    })
    .await
    .unwrap();
    assert_eq!(objects.draining(), 1);
}

#[tokio::test]
async fn delete_removes_the_namespace_and_waits_until_it_is_gone() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    let ns_uri = format!("/api/v1/namespaces/{NS}");
    let terminating = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "deletionTimestamp": "2025-01-01T00:00:00Z"},
        "status": {"phase": "Terminating"}});
    scenario(objects.delete(), async {
        let got = server
            .expect("DELETE", &ns_uri, 200, terminating.clone())
            .await;
        assert_eq!(got.body["propagationPolicy"], "Background");
        server
            .expect("GET", &ns_uri, 200, terminating.clone())
            .await;
        server
            .expect("GET", &ns_uri, 404, not_found("namespaces", NS))
            .await;
    })
    .await
    .unwrap();
    server.assert_idle();
}

#[tokio::test]
async fn delete_of_a_namespace_already_gone_is_done() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    scenario(objects.delete(), async {
        server
            .expect(
                "DELETE",
                &format!("/api/v1/namespaces/{NS}"),
                404,
                not_found("namespaces", NS),
            )
            .await;
    })
    .await
    .unwrap();
    server.assert_idle();
}

#[tokio::test]
async fn delete_of_a_namespace_still_terminating_fails_transiently_and_is_retried() {
    let (client, mut server) = mock::pair();
    let mut objects = env(client);
    let ns_uri = format!("/api/v1/namespaces/{NS}");
    let terminating = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "deletionTimestamp": "2025-01-01T00:00:00Z"}});
    let e = scenario(objects.delete(), async {
        server
            .expect("DELETE", &ns_uri, 200, terminating.clone())
            .await;
        for _ in 0..3 {
            server
                .expect("GET", &ns_uri, 200, terminating.clone())
                .await;
        }
    })
    .await
    .unwrap_err();
    assert!(matches!(e, ClusterError::StillTerminating { .. }), "{e}");
    assert!(!e.is_permanent());
    // The next attempt: the API server refuses a second delete of a terminating namespace
    // with a conflict, which is waited out.
    scenario(objects.delete(), async {
        let conflict = mock::status(409, "Conflict", "the namespace is being terminated");
        server.expect("DELETE", &ns_uri, 409, conflict).await;
        server
            .expect("GET", &ns_uri, 404, not_found("namespaces", NS))
            .await;
    })
    .await
    .unwrap();
    server.assert_idle();
}

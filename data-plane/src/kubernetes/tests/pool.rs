//! Sizing the worker pool from the cluster's worker nodes, against the scripted API server.

use std::collections::BTreeMap;

use serde_json::json;

use super::mock::{self, scenario};
use crate::kubernetes::pool::worker_slots;

fn node(name: &str, cpu: &str, memory: &str, ready: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "labels": {"hangar.dev/pool": "workers"}},
           "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                      "conditions": [{"type": "Ready", "status": ready}]}})
}

#[tokio::test]
async fn the_pool_is_the_small_workers_the_selected_ready_nodes_fit() {
    let (client, mut server) = mock::pair();
    let selector = BTreeMap::from([("hangar.dev/pool".to_owned(), "workers".to_owned())]);
    let slots = scenario(worker_slots(&client, &selector), async {
        server
            .expect(
                "GET",
                "/api/v1/nodes?labelSelector=hangar.dev%2Fpool%3Dworkers",
                200,
                json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {},
                       "items": [node("a", "3800m", "15Gi", "True"),
                                 node("b", "7910m", "31649412Ki", "True"),
                                 node("c", "16", "64Gi", "Unknown")]}),
            )
            .await;
    })
    .await
    .unwrap();
    server.assert_idle();
    // a: 3800m / 1100m = 3; b: 7910m / 1100m = 7 (memory fits 14); c is not Ready.
    assert_eq!(slots, 10);
}

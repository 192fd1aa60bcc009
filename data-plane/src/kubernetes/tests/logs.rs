//! Component logs followed through the log API into the files the log shipper reads.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::mock::{pair, scenario};
use super::{labels, NS};
use crate::kubernetes::logs::LogFollower;

const PODS: &str =
    "/api/v1/namespaces/hangar-0123456789ab/pods?&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhangar";

fn pod(name: &str, component: &str, running: bool) -> Value {
    let state = if running {
        json!({"running": {"startedAt": "2026-12-01T10:00:00Z"}})
    } else {
        json!({"waiting": {"reason": "ContainerCreating"}})
    };
    json!({"metadata": {"name": name, "namespace": NS, "labels": labels(component)},
           "status": {"containerStatuses": [
               {"name": component, "ready": running, "restartCount": 0, "image": "i", "imageID": "",
                "state": state},
               {"name": "dag-sync", "ready": true, "restartCount": 0, "image": "h", "imageID": "",
                "state": {"running": {}}}]}})
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// The file's text once it ends with `last` (or whatever it holds after two seconds).
async fn wait_for(path: &Path, last: &str) -> String {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with(last) {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn running_airflow_containers_are_followed_into_a_file_per_pod_and_resumed_without_repeats() {
    let home = tempfile::tempdir().unwrap();
    let (client, mut api) = pair();
    let mut follower = LogFollower::new(client, NS, home.path());
    let file = home.path().join("components/worker-0.log");
    let text = scenario(
        async {
            follower.refresh().await.unwrap();
            wait_for(&file, "succeeded\n").await
        },
        async {
            api.expect(
                "GET",
                PODS,
                200,
                pod_list(vec![
                    pod("worker-7d9f-abcde", "worker", true),
                    pod("scheduler-5c6b-xyz12", "scheduler", false),
                ]),
            )
            .await;
            // Only the running Airflow container: not the pending scheduler, not the sidecar.
            api.expect_text(
                "GET",
                "/api/v1/namespaces/hangar-0123456789ab/pods/worker-7d9f-abcde/log?&container=worker&follow=true&timestamps=true",
                "2026-12-01T10:00:00.100000000Z celery@worker ready.\n\
                 2026-12-01T10:00:01.200000000Z Task etl.load succeeded\n",
            )
            .await;
        },
    )
    .await;
    assert_eq!(
        text,
        "2026-12-01T10:00:00.100000000Z celery@worker ready.\n\
         2026-12-01T10:00:01.200000000Z Task etl.load succeeded\n"
    );
    api.assert_idle();
    drop(follower);

    // The log shipper reads the followed file as a component log of the environment.
    let sources = std::collections::HashMap::from([(
        uuid::Uuid::nil(),
        crate::log_ship::LogSource {
            tenant: "acme".into(),
            name: "etl".into(),
            home: home.path().to_owned(),
        },
    )]);
    let mut shipper = crate::log_ship::Shipper::new(None, crate::log_ship::ShipSettings::default());
    let batch = shipper.read(&sources, chrono::Utc::now());
    let lines = &batch.environments[0].lines;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.component == "worker-0"), "{lines:?}");
    assert!(
        lines[1].message.contains("Task etl.load succeeded"),
        "{lines:?}"
    );
    // The shipper frees what it shipped: the file reads as zeros, the mark still says where
    // the follower got to.
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::write(&file, vec![0u8; usize::try_from(len).unwrap()]).unwrap();

    // A new follower (the agent restarted) keeps the pod's name and asks only for what is
    // newer than the file's last line, skipping the lines of that second it already has.
    let (client, mut api) = pair();
    let mut follower = LogFollower::new(client, NS, home.path());
    let text = scenario(
        async {
            follower.refresh().await.unwrap();
            wait_for(&file, "(MainProcess)\n").await
        },
        async {
            api.expect(
                "GET",
                PODS,
                200,
                pod_list(vec![
                    pod("worker-7d9f-abcde", "worker", true),
                    pod("worker-7d9f-fghij", "worker", false),
                ]),
            )
            .await;
            let (request, respond) = api.next_raw().await;
            let uri = request.uri().to_string();
            assert!(uri.contains("/pods/worker-7d9f-abcde/log?"), "{uri}");
            assert!(uri.contains("sinceSeconds="), "{uri}");
            respond.send_response(
                http::Response::builder()
                    .status(200)
                    .body(kube::client::Body::from(
                        "2026-12-01T10:00:01.200000000Z Task etl.load succeeded\n\
                         2026-12-01T10:00:02.000000000Z worker: Warm shutdown (MainProcess)\n"
                            .as_bytes()
                            .to_vec(),
                    ))
                    .unwrap(),
            );
        },
    )
    .await;
    // Only the newer line was written after what was there.
    assert_eq!(
        &text[usize::try_from(len).unwrap()..],
        "2026-12-01T10:00:02.000000000Z worker: Warm shutdown (MainProcess)\n"
    );
    let names: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("pods.json")).unwrap()).unwrap();
    assert_eq!(names, json!({"worker-7d9f-abcde": "worker-0"}));
    assert_eq!(
        std::fs::read_to_string(home.path().join("follow/worker-0")).unwrap(),
        "2026-12-01T10:00:02.000000000Z"
    );
}

//! Airflow CLI commands in a short-lived pod ([`crate::kubernetes::cli`]) against the scripted
//! API server: the pod as rendered is created, polled until it ends, its log read, its exit
//! code taken, and it is deleted, whether the command finished or ran out of time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::mock::{self, scenario, status};
use crate::cli_runner::{run_call, Limits, Target};
use crate::kubernetes::cli::PodTarget;
use hangar_tenants::blueprint::kubernetes::samples::samples;
use hangar_tenants::blueprint::kubernetes::{cli_pod, namespace_name};

const CALL: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
const POD: &str = "cli-0123456789abcdef0123456789abcdef";

fn namespace() -> String {
    namespace_name(samples().unwrap()[0].input.environment_id)
}

/// A target whose pods the renderer makes from the first sample environment.
fn target(client: kube::Client) -> PodTarget {
    let input = samples().unwrap().remove(0).input;
    PodTarget::new(
        client,
        namespace(),
        1,
        Arc::new(move |call, args, timeout| Ok(cli_pod(&input, call, args, timeout)?)),
    )
    .with_poll(Duration::from_millis(1))
}

fn pods_uri() -> String {
    format!("/api/v1/namespaces/{}/pods", namespace())
}

fn pod_uri() -> String {
    format!("{}/{POD}", pods_uri())
}

fn log_uri(limit: usize) -> String {
    format!("{}/log?container=base&limitBytes={}", pod_uri(), limit + 1)
}

/// The pod as the cluster has it, in `phase`, its command's container in `state`.
fn pod(phase: &str, state: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": POD, "namespace": namespace()},
           "status": {"phase": phase, "containerStatuses": [
               {"name": "base", "image": "apache/airflow", "imageID": "", "ready": false,
                "restartCount": 0, "state": state}]}})
}

fn terminated(code: i32) -> Value {
    json!({"terminated": {"exitCode": code}})
}

#[tokio::test]
async fn a_command_runs_in_a_pod_of_its_own_that_is_deleted_once_read() {
    let (client, mut server) = mock::pair();
    let target = Target::Pod(target(client));
    let args = ["dags", "list", "--output", "json"]
        .map(str::to_owned)
        .to_vec();
    let limit = Limits::default().max_output;
    let result = scenario(
        run_call(Some(&target), CALL, args.clone(), Duration::from_secs(60)),
        async {
            let created = server
                .expect("POST", &pods_uri(), 201, pod("Pending", json!({})))
                .await;
            let spec = &created.body["spec"];
            assert_eq!(created.body["metadata"]["name"], POD);
            assert_eq!(
                created.body["metadata"]["labels"]["hangar.dev/component"],
                "cli"
            );
            assert_eq!(
                spec["containers"][0]["command"],
                json!(["airflow"]),
                "no shell"
            );
            assert_eq!(
                spec["containers"][0]["args"],
                json!(args),
                "the validated argv"
            );
            assert_eq!(spec["activeDeadlineSeconds"], 60);
            assert_eq!(spec["restartPolicy"], "Never");
            for phase in ["Pending", "Running"] {
                server
                    .expect("GET", &pod_uri(), 200, pod(phase, json!({})))
                    .await;
            }
            server
                .expect("GET", &pod_uri(), 200, pod("Failed", terminated(3)))
                .await;
            server
                .expect_text("GET", &log_uri(limit), "[]\nwarning: on stderr\n")
                .await;
            server
                .expect("DELETE", &pod_uri(), 200, pod("Failed", terminated(3)))
                .await;
        },
    )
    .await;
    server.assert_idle();
    assert_eq!(
        result.stdout, "[]\nwarning: on stderr\n",
        "stdout and stderr merged"
    );
    assert_eq!((result.stderr.as_str(), result.exit_code), ("", Some(3)));
    assert!(!result.timed_out && !result.truncated, "{result:?}");
}

#[tokio::test]
async fn a_command_past_its_time_limit_is_reported_timed_out_and_its_pod_deleted() {
    let (client, mut server) = mock::pair();
    let target = Target::Pod(target(client));
    let limit = Limits::default().max_output;
    let result = scenario(
        run_call(
            Some(&target),
            CALL,
            vec!["version".into()],
            Duration::from_millis(200),
        ),
        async {
            server
                .expect("POST", &pods_uri(), 201, pod("Pending", json!({})))
                .await;
            server
                .expect_repeated(
                    "GET",
                    &pod_uri(),
                    200,
                    pod("Running", json!({"running": {}})),
                )
                .await;
            server
                .expect_text("GET", &log_uri(limit), "started\n")
                .await;
            server
                .expect("DELETE", &pod_uri(), 200, pod("Running", json!({})))
                .await;
        },
    )
    .await;
    server.assert_idle();
    assert!(result.timed_out && result.exit_code.is_none(), "{result:?}");
    assert_eq!(
        result.stdout, "started\n",
        "what it wrote before the limit is kept"
    );
}

#[tokio::test]
async fn a_pod_that_never_ran_its_command_says_why_and_is_deleted() {
    let (client, mut server) = mock::pair();
    let target = target(client);
    let limits = Limits {
        timeout: Duration::from_secs(60),
        max_output: 4,
    };
    let result = scenario(target.run(CALL, &["version".to_owned()], limits), async {
        server
            .expect("POST", &pods_uri(), 201, pod("Pending", json!({})))
            .await;
        let mut failed = pod("Failed", json!({"waiting": {"reason": "PodInitializing"}}));
        failed["status"]["initContainerStatuses"] = json!([
            {"name": "dag-sync", "image": "hangar", "imageID": "", "ready": false,
             "restartCount": 0, "state": {"terminated": {"exitCode": 1}}}]);
        server.expect("GET", &pod_uri(), 200, failed).await;
        server
            .expect(
                "GET",
                &log_uri(4),
                400,
                status(400, "BadRequest", "container \"base\" is waiting to start"),
            )
            .await;
        server
            .expect("DELETE", &pod_uri(), 200, pod("Failed", json!({})))
            .await;
    })
    .await
    .unwrap();
    assert_eq!((result.exit_code, result.timed_out), (None, false));
    assert!(
        result.stderr.contains("dag-sync container exited with 1"),
        "{result:?}"
    );
}

#[tokio::test]
async fn output_beyond_the_cap_is_dropped() {
    let (client, mut server) = mock::pair();
    let target = target(client);
    let limits = Limits {
        timeout: Duration::from_secs(60),
        max_output: 4,
    };
    let result = scenario(target.run(CALL, &["version".to_owned()], limits), async {
        server
            .expect("POST", &pods_uri(), 201, pod("Pending", json!({})))
            .await;
        server
            .expect("GET", &pod_uri(), 200, pod("Succeeded", terminated(0)))
            .await;
        server.expect_text("GET", &log_uri(4), "3.1.0\n").await;
        server
            .expect("DELETE", &pod_uri(), 404, mock::not_found("pods", POD))
            .await;
    })
    .await
    .unwrap();
    assert_eq!(
        (result.stdout.as_str(), result.exit_code),
        ("3.1.", Some(0))
    );
    assert!(result.truncated);
}

#[tokio::test]
async fn a_refused_command_never_creates_a_pod() {
    let (client, mut server) = mock::pair();
    let target = Target::Pod(target(client));
    let args = ["db", "reset", "--yes"].map(str::to_owned).to_vec();
    let result = run_call(Some(&target), CALL, args, Duration::from_secs(60)).await;
    assert!(
        result.stderr.starts_with("refused by the agent"),
        "{result:?}"
    );
    assert_eq!(result.exit_code, None);
    server.assert_idle();
}

//! The Kubernetes executor's pod template: a Pod whose container `base` runs each task (the
//! executor gives its command), on the shared worker pool, with the environment's settings and
//! DAG files synced once at start, and neither a secret nor a token: Airflow 3 tasks reach
//! only the Execution API, with the short-lived token their workload carries.
//!
//! Also the pod of one Airflow CLI command ([`cli_pod`]): the scheduler's pod, run once.

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use uuid::Uuid;

use super::pods::{
    airflow_container, airflow_env, airflow_mounts, airflow_volumes, component_pod, on_worker_pool,
    pod_security, resource_requirements, PodKind, AIRFLOW_SA, TMP_DIR,
};
use super::sidecars::{dag_sync, unpack_requirements};
use super::{to_value, Ctx, KubeInput, RenderError, CLI_CALL_LABEL, CLI_COMPONENT, TASK_COMPONENT};
use crate::blueprint::{component_resources, ComponentKind, Resources};

/// One task's share of a worker: a worker's CPU and memory over its concurrency.
pub(crate) fn task_resources(ctx: &Ctx<'_>) -> Resources {
    let worker = component_resources(ctx.spec().environment_class, ComponentKind::Worker);
    let n = ctx.spec().worker_concurrency().max(1);
    Resources::new(worker.cpu_millis / n, worker.memory_mib / n)
}

pub(crate) fn task_pod(ctx: &Ctx<'_>) -> Pod {
    let mut base = airflow_container(ctx, ComponentKind::Worker, &[]);
    base.name = "base".to_owned();
    // The executor gives the command; the image's own entrypoint runs it.
    base.command = None;
    base.args = None;
    base.ports = None;
    let mut env = airflow_env(ctx);
    // No secret, so no `airflow.cfg` of the environment's: Airflow writes its defaults to a
    // file it creates where it may write (it would fail creating the usual one).
    for var in &mut env {
        if var.name == "AIRFLOW_CONFIG" {
            var.value = Some(format!("{TMP_DIR}/airflow.cfg"));
        }
    }
    // The image's entrypoint would wait for a database the task cannot reach (and has no
    // address of): Airflow 3 tasks talk to the Execution API only.
    env.push(EnvVar {
        name: "CONNECTION_CHECK_MAX_COUNT".to_owned(),
        value: Some("0".to_owned()),
        ..EnvVar::default()
    });
    env.sort_by(|a, b| a.name.cmp(&b.name));
    base.env = Some(env);
    base.resources = Some(resource_requirements(task_resources(ctx)));
    base.volume_mounts = Some(airflow_mounts(ctx, PodKind::Task));
    let mut init: Vec<Container> = unpack_requirements(ctx).into_iter().collect();
    init.push(dag_sync(ctx, PodKind::Task));
    let mut spec = PodSpec {
        service_account_name: Some(AIRFLOW_SA.to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("Never".to_owned()),
        security_context: Some(pod_security()),
        init_containers: Some(init),
        containers: vec![base],
        volumes: Some(airflow_volumes(ctx, PodKind::Task)),
        ..PodSpec::default()
    };
    on_worker_pool(ctx, &mut spec);
    Pod {
        metadata: ObjectMeta {
            name: Some("task".to_owned()),
            namespace: Some(ctx.namespace.clone()),
            labels: Some(ctx.component_labels(TASK_COMPONENT)),
            ..Default::default()
        },
        spec: Some(spec),
        ..Pod::default()
    }
}

/// The Kubernetes executor's pod template, as `[kubernetes_executor] pod_template_file` reads
/// it (JSON is YAML).
pub fn pod_template(input: &KubeInput) -> Result<serde_json::Value, RenderError> {
    let ctx = Ctx::new(input)?;
    to_value(&ctx, &task_pod(&ctx))
}

/// The container of a CLI pod that runs the command (its log is the command's output).
pub const CLI_CONTAINER: &str = "base";

/// The pod that runs one allow-listed Airflow CLI command, `airflow args…` (already validated:
/// it is the container's argv, no shell), for at most `timeout_seconds` once started: the
/// scheduler's pod as rendered (its image, settings, resources and the environment's Secret),
/// its DAG files synced once before the command, never restarted, with no service account
/// token whatever the executor.
pub fn cli_pod(
    input: &KubeInput,
    call_id: Uuid,
    args: &[String],
    timeout_seconds: u32,
) -> Result<serde_json::Value, RenderError> {
    let ctx = Ctx::new(input)?;
    let spec = cli_pod_spec(&ctx, args, timeout_seconds);
    let mut labels = ctx.component_labels(CLI_COMPONENT);
    labels.insert(CLI_CALL_LABEL.to_owned(), call_id.simple().to_string());
    let pod = Pod {
        metadata: ctx.meta(&cli_pod_name(call_id), labels),
        spec: Some(spec),
        ..Pod::default()
    };
    to_value(&ctx, &pod)
}

/// The spec of a CLI command's pod (see [`cli_pod`]).
pub(crate) fn cli_pod_spec(ctx: &Ctx<'_>, args: &[String], timeout_seconds: u32) -> PodSpec {
    let mut spec = component_pod(ctx, ComponentKind::Scheduler, args);
    spec.service_account_name = Some(AIRFLOW_SA.to_owned());
    spec.automount_service_account_token = Some(false);
    spec.restart_policy = Some("Never".to_owned());
    spec.active_deadline_seconds = Some(i64::from(timeout_seconds.max(1)));
    // The sidecar that keeps syncing becomes an init container that syncs once.
    if let Some(init) = &mut spec.init_containers {
        for c in init.iter_mut().filter(|c| c.name == "dag-sync") {
            *c = dag_sync(ctx, PodKind::Task);
        }
    }
    for c in &mut spec.containers {
        c.name = CLI_CONTAINER.to_owned();
        c.command = Some(vec!["airflow".to_owned()]);
        c.liveness_probe = None;
        c.ports = None;
    }
    spec
}

/// The name of a CLI command's pod.
fn cli_pod_name(call_id: Uuid) -> String {
    format!("cli-{}", call_id.simple())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::blueprint::kubernetes::samples;

    #[test]
    fn a_cli_pod_is_the_scheduler_run_once_with_the_command_as_its_argv() {
        let input = samples::samples()
            .unwrap()
            .into_iter()
            .find(|s| s.name == "kubernetes_executor")
            .unwrap()
            .input;
        let args: Vec<String> = ["dags", "list", "--output", "json"]
            .map(str::to_owned)
            .to_vec();
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let pod = cli_pod(&input, id, &args, 60).unwrap();
        insta::assert_json_snapshot!("cli_pod", pod);
        let spec = &pod["spec"];
        assert_eq!(
            spec["containers"][0]["command"],
            serde_json::json!(["airflow"])
        );
        assert_eq!(spec["containers"][0]["args"], serde_json::json!(args));
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["activeDeadlineSeconds"], 60);
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["serviceAccountName"], "airflow", "not the executor's");
        assert_eq!(
            pod["metadata"]["labels"][super::super::COMPONENT_LABEL],
            "cli"
        );
        let sync = spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "dag-sync")
            .unwrap();
        assert!(sync["args"].as_array().unwrap().contains(&"--once".into()));
        assert!(sync.get("restartPolicy").is_none(), "not a sidecar: {sync}");
        let volumes = spec["volumes"].to_string();
        assert!(volumes.contains("airflow-config"), "{volumes}");
    }
}

//! The Kubernetes executor's pod template: a Pod whose container `base` runs each task (the
//! executor gives its command), on the shared worker pool, with the environment's settings and
//! DAG files synced once at start, and neither a secret nor a token: Airflow 3 tasks reach
//! only the Execution API, with the short-lived token their workload carries.

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pods::{
    airflow_container, airflow_env, airflow_mounts, airflow_volumes, on_worker_pool, pod_security,
    resource_requirements, PodKind, AIRFLOW_SA, TMP_DIR,
};
use super::sidecars::{dag_sync, unpack_requirements};
use super::{to_value, Ctx, KubeInput, RenderError, TASK_COMPONENT};
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

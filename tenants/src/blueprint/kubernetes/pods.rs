//! The pods of an environment: Airflow's containers with the settings every component shares,
//! the DAG sync sidecar and the requirements init container, their volumes, Pod Security
//! `restricted` security contexts, resources and probes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    ExecAction, HTTPGetAction, PodSecurityContext, PodSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::sidecars::{copy_passwords, dag_sync, unpack_requirements};

use super::{runs_task_pods, Ctx, AIRFLOW_UID, API_PORT, TRIGGER_LOG_PORT, WORKER_LOG_PORT};
use crate::blueprint::{
    airflow_settings, component_resources, ComponentKind, Resources, PASSWORDS_FILE,
};

pub const AIRFLOW_HOME: &str = "/opt/airflow";
/// Where `hangar dag-sync` keeps the environment's DAGs and plugins: `dags` and `plugins` in it
/// are links it replaces atomically, so the volume is the folder holding them.
pub const SYNC_HOME: &str = "/opt/hangar/synced";
pub const DAGS_DIR: &str = "/opt/hangar/synced/dags";
pub const PLUGINS_DIR: &str = "/opt/hangar/synced/plugins";
pub const LOGS_DIR: &str = "/opt/airflow/logs";
pub const TMP_DIR: &str = "/tmp";
/// The environment's Secret (`airflow.cfg`, the passwords file), read-only.
pub const CONFIG_DIR: &str = "/opt/hangar/config";
/// A writable copy of the passwords file: the api-server opens it for writing.
pub const AUTH_DIR: &str = "/opt/hangar/auth";
/// The environment's requirements, unpacked; on `PYTHONPATH`.
pub const PYTHON_DIR: &str = "/opt/hangar/python";
/// The Kubernetes executor's pod template (scheduler only).
pub const POD_TEMPLATE_DIR: &str = "/opt/hangar/pod-template";
pub const POD_TEMPLATE_FILE: &str = "pod_template.json";

/// Names of the environment's Secret and ConfigMaps.
pub const CONFIG_SECRET: &str = "airflow-config";
pub const POD_TEMPLATE_CONFIGMAP: &str = "pod-template";
/// The environment's service accounts: one for every pod, without a token; one for the
/// scheduler of the Kubernetes executor, with a token (see `namespace::executor_rbac`).
pub const AIRFLOW_SA: &str = "airflow";
pub const SCHEDULER_SA: &str = "airflow-scheduler";

pub(crate) fn quantities(r: Resources) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(format!("{}m", r.cpu_millis))),
        ("memory".to_owned(), Quantity(format!("{}Mi", r.memory_mib))),
    ])
}

/// Request = limit: every pod is Guaranteed, so quota arithmetic is exact and no neighbour on
/// the shared pool is squeezed by an environment's burst.
pub(crate) fn resource_requirements(r: Resources) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(r)),
        limits: Some(quantities(r)),
        ..ResourceRequirements::default()
    }
}

/// Pod Security `restricted`, per container: no privilege escalation, no capabilities, not
/// root, a read-only root filesystem (every path written to is a volume).
pub(crate) fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

/// The official image's user (uid 50000, group 0, which owns its files).
pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(AIRFLOW_UID),
        run_as_group: Some(0),
        fs_group: Some(0),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

pub(crate) fn empty_dir(name: &str, size_mib: u32, memory: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".to_owned()),
            size_limit: Some(Quantity(format!("{size_mib}Mi"))),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// What an Airflow pod is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodKind {
    Component(ComponentKind),
    /// A Kubernetes executor task.
    Task,
}

/// The Airflow settings of every pod of the environment, as variables (no secret: those are
/// in the Secret's `airflow.cfg`, `AIRFLOW_CONFIG`).
pub(crate) fn airflow_env(ctx: &Ctx<'_>) -> Vec<EnvVar> {
    let url_path = ctx.url_path();
    let mut platform: Vec<(&'static str, &'static str, String)> = vec![
        ("core", "dags_folder", DAGS_DIR.to_owned()),
        ("core", "plugins_folder", PLUGINS_DIR.to_owned()),
        (
            "core",
            "execution_api_server_url",
            format!("http://api-server:{API_PORT}{url_path}execution/"),
        ),
        (
            "core",
            "simple_auth_manager_passwords_file",
            format!("{AUTH_DIR}/{PASSWORDS_FILE}"),
        ),
        // Pods have no name other pods resolve: the api-server fetches a task's log from the
        // address its worker recorded.
        (
            "core",
            "hostname_callable",
            "airflow.utils.net.get_host_ip_address".to_owned(),
        ),
        ("api", "port", API_PORT.to_string()),
        ("api", "base_url", url_path),
        ("api", "host", "0.0.0.0".to_owned()),
        ("logging", "base_log_folder", LOGS_DIR.to_owned()),
        (
            "logging",
            "worker_log_server_port",
            WORKER_LOG_PORT.to_string(),
        ),
        (
            "logging",
            "trigger_log_server_port",
            TRIGGER_LOG_PORT.to_string(),
        ),
    ];
    // Task logs go to the bucket (through the gateway), so they outlive the pods.
    platform.extend(super::bucket::logging_settings(ctx));
    if runs_task_pods(ctx.executor()) {
        platform.extend([
            ("kubernetes_executor", "namespace", ctx.namespace.clone()),
            (
                "kubernetes_executor",
                "pod_template_file",
                format!("{POD_TEMPLATE_DIR}/{POD_TEMPLATE_FILE}"),
            ),
        ]);
    }
    let mut env = airflow_settings(
        ctx.spec(),
        ctx.airflow_executor(),
        &ctx.input.backends,
        platform,
    );
    env.insert("AIRFLOW_HOME".to_owned(), AIRFLOW_HOME.to_owned());
    env.insert(
        "AIRFLOW_CONFIG".to_owned(),
        format!("{CONFIG_DIR}/airflow.cfg"),
    );
    env.extend(super::bucket::variables(ctx));
    env.insert("HOME".to_owned(), TMP_DIR.to_owned());
    env.insert("TMPDIR".to_owned(), TMP_DIR.to_owned());
    // The root filesystem is read-only: nothing could cache bytecode anyway.
    env.insert("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned());
    if !ctx.spec().requirements.trim().is_empty() {
        env.insert("PYTHONPATH".to_owned(), PYTHON_DIR.to_owned());
    }
    env.into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            ..EnvVar::default()
        })
        .collect()
}

/// `airflow jobs check` for this host's job of a type, as the official chart's probes.
fn job_check(job_type: &str) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(
                [
                    "airflow",
                    "jobs",
                    "check",
                    "--job-type",
                    job_type,
                    "--local",
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(60),
        timeout_seconds: Some(20),
        failure_threshold: Some(5),
        ..Probe::default()
    }
}

/// The api-server's health endpoint, under its base path.
fn health(ctx: &Ctx<'_>, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(format!("{}api/v2/monitor/health", ctx.url_path())),
            port: IntOrString::Int(i32::from(API_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        ..ContainerPort::default()
    }
}

/// The Airflow container of a component: the image's `airflow` under its init (which forwards
/// signals and reaps the task processes' orphans).
pub(crate) fn airflow_container(ctx: &Ctx<'_>, kind: ComponentKind, args: &[String]) -> Container {
    let mut env = airflow_env(ctx);
    let mut c = Container {
        name: kind.as_str().to_owned(),
        image: Some(
            ctx.cell()
                .airflow_image_for(ctx.spec().airflow_version.as_str()),
        ),
        command: Some(
            ["/usr/bin/dumb-init", "--", "airflow"]
                .map(str::to_owned)
                .to_vec(),
        ),
        args: Some(args.to_vec()),
        resources: Some(resource_requirements(component_resources(
            ctx.spec().environment_class,
            kind,
        ))),
        security_context: Some(container_security()),
        volume_mounts: Some(airflow_mounts(ctx, PodKind::Component(kind))),
        ..Container::default()
    };
    match kind {
        ComponentKind::ApiServer => {
            c.ports = Some(vec![port("api", API_PORT)]);
            c.startup_probe = Some(health(ctx, 30));
            c.liveness_probe = Some(health(ctx, 6));
            c.readiness_probe = Some(health(ctx, 3));
        }
        ComponentKind::Scheduler => c.liveness_probe = Some(job_check("SchedulerJob")),
        ComponentKind::DagProcessor => c.liveness_probe = Some(job_check("DagProcessorJob")),
        ComponentKind::Triggerer => {
            c.ports = Some(vec![port("logs", TRIGGER_LOG_PORT)]);
            c.liveness_probe = Some(job_check("TriggererJob"));
        }
        // No liveness probe: Celery's `inspect ping` needs remote control, which is off (its
        // pidbox channel is outside the broker user's key prefix). A dead worker exits.
        ComponentKind::Worker => {
            c.ports = Some(vec![port("logs", WORKER_LOG_PORT)]);
            // Only the worker's main process gets SIGTERM (a warm shutdown: it stops taking
            // tasks and finishes those running); its pool's children are left to it.
            env.push(EnvVar {
                name: "DUMB_INIT_SETSID".to_owned(),
                value: Some("0".to_owned()),
                ..EnvVar::default()
            });
            env.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
    c.env = Some(env);
    c
}

pub(crate) fn airflow_mounts(ctx: &Ctx<'_>, pod: PodKind) -> Vec<VolumeMount> {
    let mut mounts = vec![
        mount("synced", SYNC_HOME, true),
        mount("logs", LOGS_DIR, false),
        mount("tmp", TMP_DIR, false),
        // Every Airflow process may write task logs (a task's own, uploaded when it ends).
        super::bucket::mount(),
    ];
    // Task pods reach only the Execution API and the bucket gateway: they get no other
    // secret.
    if pod != PodKind::Task {
        mounts.push(mount("config", CONFIG_DIR, true));
    }
    if pod == PodKind::Component(ComponentKind::ApiServer) {
        mounts.push(mount("auth", AUTH_DIR, false));
    }
    if pod == PodKind::Component(ComponentKind::Scheduler) && runs_task_pods(ctx.executor()) {
        mounts.push(mount("pod-template", POD_TEMPLATE_DIR, true));
    }
    if !ctx.spec().requirements.trim().is_empty() {
        mounts.push(mount("python", PYTHON_DIR, true));
    }
    mounts
}

pub(crate) fn airflow_volumes(ctx: &Ctx<'_>, pod: PodKind) -> Vec<Volume> {
    let mut volumes = vec![
        empty_dir("synced", 1280, false),
        empty_dir("logs", 2048, false),
        empty_dir("tmp", 1024, false),
        super::bucket::volume(),
    ];
    if pod != PodKind::Task {
        volumes.push(Volume {
            name: "config".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(CONFIG_SECRET.to_owned()),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    if pod == PodKind::Component(ComponentKind::ApiServer) {
        volumes.push(empty_dir("auth", 1, true));
    }
    if pod == PodKind::Component(ComponentKind::Scheduler) && runs_task_pods(ctx.executor()) {
        volumes.push(Volume {
            name: "pod-template".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: POD_TEMPLATE_CONFIGMAP.to_owned(),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    if !ctx.spec().requirements.trim().is_empty() {
        volumes.push(empty_dir("python", 4096, false));
    }
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    volumes
}

/// One slot of a Kubernetes cell's worker pool, as the agent sizes the pool from its worker
/// nodes: what one worker pod of a `small` environment holds (its Celery worker and its DAG
/// sync sidecar). The pool counts workers, whatever their class: a `micro` worker takes a little
/// less than its slot, a `medium` or larger one more.
pub fn worker_slot() -> Resources {
    component_resources(crate::spec::EnvironmentClass::Small, ComponentKind::Worker)
        + super::sidecars::SYNC_RESOURCES
}

/// Workers and task pods run on the shared worker node pool.
pub(crate) fn on_worker_pool(ctx: &Ctx<'_>, spec: &mut PodSpec) {
    let cell = ctx.cell();
    if !cell.worker_node_selector.is_empty() {
        spec.node_selector = Some(cell.worker_node_selector.clone());
    }
    if !cell.worker_tolerations.is_empty() {
        spec.tolerations = Some(cell.worker_tolerations.clone());
    }
}

/// The pod of a component (`args`: its `airflow` arguments).
pub(crate) fn component_pod(ctx: &Ctx<'_>, kind: ComponentKind, args: &[String]) -> PodSpec {
    let pod = PodKind::Component(kind);
    let mut init: Vec<Container> = unpack_requirements(ctx).into_iter().collect();
    if kind == ComponentKind::ApiServer {
        init.push(copy_passwords(ctx));
    }
    init.push(dag_sync(ctx, pod));
    let token = kind == ComponentKind::Scheduler && runs_task_pods(ctx.executor());
    let mut spec = PodSpec {
        service_account_name: Some(if token { SCHEDULER_SA } else { AIRFLOW_SA }.to_owned()),
        // Only the Kubernetes executor's scheduler talks to the Kubernetes API.
        automount_service_account_token: Some(token),
        enable_service_links: Some(false),
        security_context: Some(pod_security()),
        init_containers: Some(init),
        containers: vec![airflow_container(ctx, kind, args)],
        volumes: Some(airflow_volumes(ctx, pod)),
        ..PodSpec::default()
    };
    if kind == ComponentKind::Worker {
        // Long enough for a warm shutdown to finish the tasks running.
        spec.termination_grace_period_seconds = Some(super::WORKER_GRACE_SECONDS);
        on_worker_pool(ctx, &mut spec);
    }
    spec
}

/// The resources one pod of a component holds (sidecars and containers together; an init
/// container's while it runs alone), for the namespace's quota.
pub(crate) fn pod_resources(spec: &PodSpec) -> Resources {
    let of = |c: &Container| -> Resources {
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let get = |key: &str, unit: &str| -> u32 {
            limits
                .and_then(|l| l.get(key))
                .and_then(|q| q.0.strip_suffix(unit))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Resources::new(get("cpu", "m"), get("memory", "Mi"))
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let sidecars = init
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(of)
        .fold(Resources::new(0, 0), |a, b| a + b);
    let largest_init = init
        .iter()
        .filter(|c| c.restart_policy.is_none())
        .map(of)
        .fold(Resources::new(0, 0), Resources::max);
    let running = spec
        .containers
        .iter()
        .map(of)
        .fold(Resources::new(0, 0), |a, b| a + b);
    sidecars + running.max(largest_init)
}

//! The environment's configuration and workloads: the Secret with its `airflow.cfg` and
//! passwords file, the Kubernetes executor's pod template, the Job that builds its Python
//! requirements into an archive in the bucket, one Deployment per component and the
//! api-server's Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, PodSpec, PodTemplateSpec, Secret, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};

use super::pods::{
    self, AIRFLOW_SA, CONFIG_SECRET, POD_TEMPLATE_CONFIGMAP, POD_TEMPLATE_FILE, TMP_DIR,
};
use super::{
    bucket, runs_task_pods, template, to_value, Ctx, RenderError, API_PORT, COMPONENT_LABEL,
    REDACTED, REQUIREMENTS_COMPONENT,
};
use crate::airflow_users;
use crate::blueprint::{airflow_cfg, Resources, PASSWORDS_FILE};
use crate::bucket_layout;

/// Installing the requirements (uv resolves and builds wheels).
const INSTALL_RESOURCES: Resources = Resources::new(1000, 2048);
/// Archiving and uploading them.
const PACK_RESOURCES: Resources = Resources::new(250, 256);

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\0");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The Secret's files: the environment's `airflow.cfg` and the simple auth manager's passwords,
/// or [`REDACTED`] for each without secrets.
fn secret_files(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    let (cfg, passwords) = match &ctx.input.secrets {
        Some(s) => (
            airflow_cfg(s, &ctx.input.backends),
            airflow_users::passwords_file(s),
        ),
        None => (REDACTED.to_owned(), REDACTED.to_owned()),
    };
    BTreeMap::from([
        ("airflow.cfg".to_owned(), cfg),
        (PASSWORDS_FILE.to_owned(), passwords),
    ])
}

/// A digest of the Secret's files, on every pod template: a changed secret restarts the pods
/// that read it.
fn config_digest(ctx: &Ctx<'_>) -> String {
    let mut files = secret_files(ctx);
    files.extend(
        bucket::files(ctx)
            .into_iter()
            .map(|(k, v)| (format!("{}/{k}", bucket::BUCKET_SECRET), v)),
    );
    let parts: Vec<&str> = files
        .iter()
        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    sha256_hex(&parts)[..16].to_owned()
}

/// A Secret of the environment holding `files`.
pub(crate) fn opaque_secret(ctx: &Ctx<'_>, name: &str, files: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: ctx.meta(name, ctx.labels()),
        type_: Some("Opaque".to_owned()),
        data: Some(
            files
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The Secrets, and the pod template's ConfigMap for the Kubernetes executor.
pub(crate) fn config(ctx: &Ctx<'_>) -> Result<Vec<serde_json::Value>, RenderError> {
    let secret = opaque_secret(ctx, CONFIG_SECRET, secret_files(ctx));
    let mut out = vec![
        to_value(ctx, &secret)?,
        to_value(ctx, &bucket::secret(ctx))?,
    ];
    if runs_task_pods(ctx.executor()) {
        let template = to_value(ctx, &template::task_pod(ctx))?;
        let text =
            serde_json::to_string_pretty(&template).map_err(|source| RenderError::Serialize {
                environment: ctx.input.environment_id,
                kind: "Pod",
                source,
            })?;
        let cm = ConfigMap {
            metadata: ctx.meta(POD_TEMPLATE_CONFIGMAP, ctx.component_labels("scheduler")),
            data: Some(BTreeMap::from([(POD_TEMPLATE_FILE.to_owned(), text)])),
            ..ConfigMap::default()
        };
        out.push(to_value(ctx, &cm)?);
    }
    Ok(out)
}

/// The requirements' identity: what they are and which image they are built for.
fn requirements_digest(ctx: &Ctx<'_>) -> Option<String> {
    let requirements = ctx.spec().requirements.trim();
    (!requirements.is_empty()).then(|| {
        let image = ctx
            .cell()
            .airflow_image_for(ctx.spec().airflow_version.as_str());
        sha256_hex(&[&image, requirements])[..10].to_owned()
    })
}

/// Where the requirements Job puts the archive every Airflow pod unpacks (a key of the
/// platform bucket, in the environment's prefix); `None` without requirements.
pub(crate) fn requirements_archive_key(ctx: &Ctx<'_>) -> Option<String> {
    requirements_digest(ctx).map(|d| {
        bucket_layout::requirements_archive(ctx.input.tenant.as_str(), ctx.spec().name.as_str(), &d)
            .to_string()
    })
}

fn requirements_name(digest: &str) -> String {
    format!("{REQUIREMENTS_COMPONENT}-{digest}")
}

/// The requirements Job's pod: the Airflow image installs the requirements with uv into a
/// folder, constrained to the versions the image already has (so nothing Airflow depends on
/// changes, and a conflict fails the Job), then `hangar requirements pack` archives that
/// folder into the bucket.
pub(crate) fn requirements_pod(ctx: &Ctx<'_>) -> Option<PodSpec> {
    let digest = requirements_digest(ctx)?;
    let archive = requirements_archive_key(ctx)?;
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let install = Container {
        name: "install".to_owned(),
        image: Some(
            ctx.cell()
                .airflow_image_for(ctx.spec().airflow_version.as_str()),
        ),
        command: Some(vec![
            "bash".to_owned(),
            "-ec".to_owned(),
            "python -m pip freeze --all > /tmp/installed.txt\n\
             uv pip install --python python --target /build/site \
             --constraint /tmp/installed.txt --requirement /requirements/requirements.txt"
                .to_owned(),
        ]),
        env: Some(vec![
            EnvVar {
                name: "HOME".to_owned(),
                value: Some(TMP_DIR.to_owned()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "UV_CACHE_DIR".to_owned(),
                value: Some(format!("{TMP_DIR}/uv")),
                ..EnvVar::default()
            },
        ]),
        resources: Some(pods::resource_requirements(INSTALL_RESOURCES)),
        security_context: Some(pods::container_security()),
        volume_mounts: Some(vec![
            mount("build", "/build", false),
            mount("requirements", "/requirements", true),
            mount("tmp", TMP_DIR, false),
        ]),
        ..Container::default()
    };
    let pack = Container {
        name: "pack".to_owned(),
        image: Some(ctx.cell().hangar_image.clone()),
        args: Some(vec![
            "requirements".to_owned(),
            "pack".to_owned(),
            "--site".to_owned(),
            "/build/site".to_owned(),
            "--bucket-url-file".to_owned(),
            bucket::url_file(),
            "--archive".to_owned(),
            archive,
        ]),
        resources: Some(pods::resource_requirements(PACK_RESOURCES)),
        security_context: Some(pods::container_security()),
        volume_mounts: Some(vec![
            mount("build", "/build", true),
            mount("tmp", TMP_DIR, false),
            bucket::mount(),
        ]),
        ..Container::default()
    };
    Some(PodSpec {
        service_account_name: Some(AIRFLOW_SA.to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("Never".to_owned()),
        security_context: Some(pods::pod_security()),
        init_containers: Some(vec![install]),
        containers: vec![pack],
        volumes: Some(vec![
            pods::empty_dir("build", 4096, false),
            Volume {
                name: "requirements".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: requirements_name(&digest),
                    default_mode: Some(0o444),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            pods::empty_dir("tmp", 4096, false),
            bucket::volume(),
        ]),
        ..PodSpec::default()
    })
}

/// The requirements' ConfigMap and the Job that builds them, named after their digest: new
/// requirements are a new Job, the same ones are the Job already done.
pub(crate) fn requirements_job(ctx: &Ctx<'_>) -> Result<Vec<serde_json::Value>, RenderError> {
    let (Some(digest), Some(pod)) = (requirements_digest(ctx), requirements_pod(ctx)) else {
        return Ok(Vec::new());
    };
    let name = requirements_name(&digest);
    let labels = ctx.component_labels(REQUIREMENTS_COMPONENT);
    let cm = ConfigMap {
        metadata: ctx.meta(&name, labels.clone()),
        data: Some(BTreeMap::from([(
            "requirements.txt".to_owned(),
            ctx.spec().requirements.clone(),
        )])),
        ..ConfigMap::default()
    };
    let job = Job {
        metadata: ctx.meta(&name, labels.clone()),
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(1800),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    Ok(vec![to_value(ctx, &cm)?, to_value(ctx, &job)?])
}

fn selector(component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            COMPONENT_LABEL.to_owned(),
            component.to_owned(),
        )])),
        ..LabelSelector::default()
    }
}

/// One Deployment per component, named after it (`worker` with the replicas asked for).
pub(crate) fn deployments(ctx: &Ctx<'_>) -> Result<Vec<serde_json::Value>, RenderError> {
    let digest = config_digest(ctx);
    ctx.components
        .iter()
        .map(|c| {
            let name = c.kind.as_str();
            let labels = ctx.component_labels(name);
            let d = Deployment {
                metadata: ctx.meta(name, labels.clone()),
                spec: DeploymentSpec {
                    replicas: Some(i32::try_from(c.replicas).unwrap_or(i32::MAX)),
                    revision_history_limit: Some(3),
                    selector: selector(name),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            annotations: Some(BTreeMap::from([(
                                "hangar.dev/config-sha256".to_owned(),
                                digest.clone(),
                            )])),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(pods::component_pod(ctx, c.kind, &c.args)),
                    },
                    ..DeploymentSpec::default()
                },
                ..Deployment::default()
            };
            to_value(ctx, &d)
        })
        .collect()
}

/// The api-server's Service: the Execution API for the namespace's workers and tasks, the UI
/// and REST API for the agent.
pub(crate) fn api_service(ctx: &Ctx<'_>) -> Result<serde_json::Value, RenderError> {
    let name = "api-server";
    let svc = Service {
        metadata: ctx.meta(name, ctx.component_labels(name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: selector(name).match_labels,
            ports: Some(vec![ServicePort {
                name: Some("api".to_owned()),
                port: i32::from(API_PORT),
                target_port: Some(IntOrString::String("api".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    to_value(ctx, &svc)
}

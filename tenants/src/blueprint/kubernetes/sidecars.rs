//! The containers beside Airflow's in its pods: the DAG sync sidecar (`hangar dag-sync`), the
//! requirements init container (`hangar requirements unpack`) and the api-server's copy of its
//! passwords file.

use k8s_openapi::api::core::v1::Container;

use super::pods::{
    container_security, mount, resource_requirements, PodKind, AUTH_DIR, CONFIG_DIR, PYTHON_DIR,
    SYNC_HOME, TMP_DIR,
};
use super::{bucket, Ctx};
use crate::blueprint::{ComponentKind, Resources, PASSWORDS_FILE};

/// The DAG sync sidecar's share of its pod.
pub(crate) const SYNC_RESOURCES: Resources = Resources::new(100, 128);
/// Unpacking the requirements archive.
const UNPACK_RESOURCES: Resources = Resources::new(250, 256);
/// Copying the passwords file.
const COPY_RESOURCES: Resources = Resources::new(50, 64);

/// `hangar dag-sync`: mirrors the environment's `dags/` and `plugins/` prefixes into the
/// pod's synced folder, every few seconds as a native sidecar (started before Airflow, stopped
/// after it), or once (`--once`, task pods). The DAG processor's also queues changed files for
/// parsing at once, through the environment's database (`--airflow-config`).
pub(crate) fn dag_sync(ctx: &Ctx<'_>, pod: PodKind) -> Container {
    let regexp = ctx
        .spec()
        .airflow_config_overrides
        .get("core.dag_ignore_file_syntax")
        .is_some_and(|v| v.eq_ignore_ascii_case("regexp"));
    let mut args: Vec<String> = [
        "dag-sync",
        "--bucket-url-file",
        &bucket::url_file(),
        "--tenant",
        ctx.input.tenant.as_str(),
        "--environment",
        ctx.spec().name.as_str(),
        "--home",
        SYNC_HOME,
        "--ignore-syntax",
        if regexp { "regexp" } else { "glob" },
    ]
    .map(str::to_owned)
    .to_vec();
    let mut mounts = vec![
        mount("synced", SYNC_HOME, false),
        mount("tmp", TMP_DIR, false),
        bucket::mount(),
    ];
    let once = pod == PodKind::Task;
    if once {
        args.push("--once".to_owned());
    }
    if pod == PodKind::Component(ComponentKind::DagProcessor) {
        args.extend([
            "--airflow-config".to_owned(),
            format!("{CONFIG_DIR}/airflow.cfg"),
        ]);
        mounts.push(mount("config", CONFIG_DIR, true));
    }
    Container {
        name: "dag-sync".to_owned(),
        image: Some(ctx.cell().hangar_image.clone()),
        args: Some(args),
        restart_policy: (!once).then(|| "Always".to_owned()),
        resources: Some(resource_requirements(SYNC_RESOURCES)),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// `hangar requirements unpack`: fetches the archive the requirements Job built (waiting
/// for it) and unpacks it into the folder on `PYTHONPATH`.
pub(crate) fn unpack_requirements(ctx: &Ctx<'_>) -> Option<Container> {
    let archive = super::workloads::requirements_archive_key(ctx)?;
    Some(Container {
        name: "requirements".to_owned(),
        image: Some(ctx.cell().hangar_image.clone()),
        args: Some(vec![
            "requirements".to_owned(),
            "unpack".to_owned(),
            "--bucket-url-file".to_owned(),
            bucket::url_file(),
            "--archive".to_owned(),
            archive,
            "--into".to_owned(),
            PYTHON_DIR.to_owned(),
        ]),
        resources: Some(resource_requirements(UNPACK_RESOURCES)),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![
            mount("python", PYTHON_DIR, false),
            mount("tmp", TMP_DIR, false),
            bucket::mount(),
        ]),
        ..Container::default()
    })
}

/// The api-server writes its passwords file; a Secret's files are read-only, so it gets a
/// copy in a memory-backed folder of its pod.
pub(crate) fn copy_passwords(ctx: &Ctx<'_>) -> Container {
    Container {
        name: "auth".to_owned(),
        image: Some(
            ctx.cell()
                .airflow_image_for(ctx.spec().airflow_version.as_str()),
        ),
        command: Some(vec![
            "cp".to_owned(),
            format!("{CONFIG_DIR}/{PASSWORDS_FILE}"),
            format!("{AUTH_DIR}/{PASSWORDS_FILE}"),
        ]),
        resources: Some(resource_requirements(COPY_RESOURCES)),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("auth", AUTH_DIR, false),
        ]),
        ..Container::default()
    }
}

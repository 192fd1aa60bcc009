//! The Job that fills a template database: `airflow db migrate` in the Airflow image of one
//! version, in the cell's system namespace (the agent's own), once per Airflow version. Every
//! environment's metadata database is a clone of that template. Pure, like the rest of the
//! renderer: the cell's settings and the template in, a Secret and a Job out.
//!
//! The template's connection URL carries the template owner's password, so it is only in the
//! Secret, which the container reads through `valueFrom.secretKeyRef`. The kubernetes runtime
//! makes the Job own the Secret (an owner reference needs the Job's uid, which only the API
//! server knows), so deleting the Job removes both.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Secret, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::cell::{is_dns_label, CellError, KubeCell};
use super::pods::{container_security, empty_dir, mount, pod_security, resource_requirements};
use super::{COMPONENT_LABEL, MANAGED_BY, PART_OF, REDACTED};
use crate::blueprint::Resources;

/// The component label of the Job's objects.
pub const MIGRATE_COMPONENT: &str = "migrate";
/// The label naming the template a Job fills.
pub const TEMPLATE_LABEL: &str = "hangar.dev/template";
/// The Secret's key holding the template's SQLAlchemy URL.
pub const CONN_KEY: &str = "sql_alchemy_conn";
/// Seconds `airflow db migrate` may take, as on the process runtime; then the Job fails.
pub const MIGRATE_DEADLINE_SECONDS: i64 = 600;
/// A finished Job (a failed one: a finished one is deleted at once) stays this long, so its
/// pod's log can be read.
pub const MIGRATE_TTL_SECONDS: i32 = 3600;
/// What `airflow db migrate` is given (as much as an api-server).
pub const MIGRATE_RESOURCES: Resources = Resources {
    cpu_millis: 500,
    memory_mib: 1024,
};

/// What a template's Job is rendered from.
#[derive(Debug, Clone)]
pub struct MigrateInput {
    /// The template database (`hangar_tpl_3_3_2`: lower-case letters, digits and `_`).
    pub template: String,
    pub airflow_version: String,
    /// The template's SQLAlchemy URL as pods reach it; `None` renders [`REDACTED`].
    pub sql_alchemy_conn: Option<String>,
    pub cell: KubeCell,
}

/// The Job's objects, complete (`apiVersion`, `kind`, metadata), in the system namespace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrateManifests {
    pub namespace: String,
    /// The Job's and the Secret's name.
    pub name: String,
    pub secret: serde_json::Value,
    pub job: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateRenderError {
    #[error("failed to render the migration Job of template {template}: the cell's settings are invalid: {source}")]
    Cell {
        template: String,
        #[source]
        source: CellError,
    },
    #[error("failed to render the migration Job of template {template}: {reason}")]
    Input {
        template: String,
        reason: &'static str,
    },
    #[error("failed to serialize the {kind} of the migration Job of template {template}")]
    Serialize {
        template: String,
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The Job's (and its Secret's) name: `hangar-migrate-` and the template's name with `-` for
/// `_`; one per template, so a second agent finds the first one's Job. `None` when that is not
/// a DNS label (a template name other than [`MigrateInput::template`] allows, or too long).
pub fn migrate_job_name(template: &str) -> Option<String> {
    let valid = !template.is_empty()
        && template
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let name = format!("hangar-migrate-{}", template.replace('_', "-"));
    (valid && is_dns_label(&name)).then_some(name)
}

fn is_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 100
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// The Secret with the template's URL and the Job running `airflow db migrate` with it.
pub fn migrate_job(input: &MigrateInput) -> Result<MigrateManifests, MigrateRenderError> {
    let template = input.template.clone();
    input
        .cell
        .validate()
        .map_err(|source| MigrateRenderError::Cell {
            template: template.clone(),
            source,
        })?;
    let name = migrate_job_name(&template).ok_or_else(|| MigrateRenderError::Input {
        template: template.clone(),
        reason: "the name is not lower-case letters, digits and _, or is too long",
    })?;
    if !is_version(&input.airflow_version) {
        return Err(MigrateRenderError::Input {
            template,
            reason: "the Airflow version is not a version such as 3.3.2",
        });
    }
    let namespace = input.cell.system_namespace.clone();
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (PART_OF.0.to_owned(), PART_OF.1.to_owned()),
        (COMPONENT_LABEL.to_owned(), MIGRATE_COMPONENT.to_owned()),
        (TEMPLATE_LABEL.to_owned(), template.clone()),
    ]);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let secret = Secret {
        metadata: meta.clone(),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(
            CONN_KEY.to_owned(),
            input
                .sql_alchemy_conn
                .clone()
                .unwrap_or_else(|| REDACTED.to_owned()),
        )])),
        ..Secret::default()
    };
    let job = Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            active_deadline_seconds: Some(MIGRATE_DEADLINE_SECONDS),
            ttl_seconds_after_finished: Some(MIGRATE_TTL_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod(input, &name)),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    let value = |kind, v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|source| MigrateRenderError::Serialize {
            template: template.clone(),
            kind,
            source,
        })
    };
    Ok(MigrateManifests {
        secret: value("Secret", serde_json::to_value(&secret))?,
        job: value("Job", serde_json::to_value(&job))?,
        namespace,
        name,
    })
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// One container, restricted like every environment pod, no service-account token; Airflow's
/// home is in the writable `/tmp` (it writes a default `airflow.cfg` and its logs there).
fn pod(input: &MigrateInput, secret: &str) -> PodSpec {
    let conn = EnvVar {
        name: "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN".to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: CONN_KEY.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let container = Container {
        name: MIGRATE_COMPONENT.to_owned(),
        image: Some(input.cell.airflow_image_for(&input.airflow_version)),
        command: Some(
            ["/usr/bin/dumb-init", "--", "airflow"]
                .map(str::to_owned)
                .to_vec(),
        ),
        args: Some(["db", "migrate"].map(str::to_owned).to_vec()),
        env: Some(vec![
            conn,
            env("AIRFLOW__CORE__LOAD_EXAMPLES", "False"),
            env("AIRFLOW_HOME", "/tmp/airflow"),
            env("HOME", "/tmp"),
            env("PYTHONDONTWRITEBYTECODE", "1"),
            env("TMPDIR", "/tmp"),
        ]),
        resources: Some(resource_requirements(MIGRATE_RESOURCES)),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![mount("tmp", "/tmp", false)]),
        ..Container::default()
    };
    PodSpec {
        restart_policy: Some("Never".to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(pod_security()),
        containers: vec![container],
        volumes: Some(vec![empty_dir("tmp", 1024, false)]),
        ..PodSpec::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::blueprint::kubernetes::samples::migrate_sample;
    use crate::blueprint::kubernetes::tests::assert_restricted;

    #[test]
    fn the_job_renders_as_its_snapshot() {
        insta::assert_json_snapshot!("migrate_job", migrate_job(&migrate_sample()).unwrap());
    }

    #[test]
    fn the_url_is_only_in_the_secret() {
        let mut input = migrate_sample();
        input.sql_alchemy_conn = Some(
            "postgresql+psycopg2://hangar_template_owner:s3cr3tpw@pg.hangar-system.svc:5432/hangar_tpl_3_3_2".into(),
        );
        let m = migrate_job(&input).unwrap();
        assert_eq!(
            m.secret["stringData"][CONN_KEY],
            input.sql_alchemy_conn.unwrap()
        );
        assert!(!m.job.to_string().contains("s3cr3tpw"));
        let env = &m.job["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN");
        assert_eq!(
            env["valueFrom"]["secretKeyRef"],
            serde_json::json!({"name": m.name, "key": CONN_KEY, "optional": false})
        );
    }

    #[test]
    fn the_job_is_restricted_bounded_and_in_the_system_namespace() {
        let m = migrate_job(&migrate_sample()).unwrap();
        assert_eq!(m.name, "hangar-migrate-hangar-tpl-3-3-2");
        for o in [&m.secret, &m.job] {
            assert_eq!(o["metadata"]["namespace"], "hangar-system");
            assert_eq!(o["metadata"]["name"], m.name);
            assert_eq!(o["metadata"]["labels"][TEMPLATE_LABEL], "hangar_tpl_3_3_2");
        }
        let spec = &m.job["spec"];
        assert_eq!(spec["backoffLimit"], 1);
        assert_eq!(spec["activeDeadlineSeconds"], 600);
        assert!(spec["ttlSecondsAfterFinished"].as_i64().unwrap() > 0);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["restartPolicy"], "Never");
        assert_restricted("migrate", pod);
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "apache/airflow:3.3.2-python3.12");
        assert_eq!(c["args"], serde_json::json!(["db", "migrate"]));
        assert_eq!(c["resources"]["limits"], c["resources"]["requests"]);
    }

    #[test]
    fn names_and_versions_that_would_not_render_are_refused() {
        assert_eq!(
            migrate_job_name("hangar_tpl_3_1_0").as_deref(),
            Some("hangar-migrate-hangar-tpl-3-1-0")
        );
        assert_eq!(migrate_job_name("Hangar"), None);
        assert_eq!(migrate_job_name(&"a".repeat(60)), None);
        let mut input = migrate_sample();
        input.airflow_version = "3.3.2 latest".into();
        assert!(migrate_job(&input)
            .unwrap_err()
            .to_string()
            .contains("hangar_tpl_3_3_2"));
        let mut input = migrate_sample();
        input.cell.system_namespace = "Hangar".into();
        assert!(matches!(
            migrate_job(&input),
            Err(MigrateRenderError::Cell { .. })
        ));
    }
}

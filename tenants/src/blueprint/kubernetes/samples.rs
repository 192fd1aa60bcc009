//! Sample environments covering every branch of the Kubernetes renderer (each executor, with
//! and without requirements and secrets, the smallest and largest class, a worker pool with a
//! node selector and tolerations). The renderer's unit tests snapshot and check them all, and
//! the tests in `tests/` validate their objects with `kubernetes-validate` and load their pod
//! template with Airflow, so every check sees the same matrix.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use uuid::Uuid;

use super::{BucketAccess, KubeCell, KubeInput, MigrateInput};
use crate::api::{CreateEnvironment, EnvironmentSecrets};
use crate::blueprint::Backends;
use crate::names::TenantName;
use crate::spec::{EnvironmentSpec, Platform};
use crate::{FieldError, FieldErrors};

/// One sample: its name (a snapshot's) and its input.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: &'static str,
    pub input: KubeInput,
}

/// The samples' bucket gateway secret, distinctive like the others.
pub const SAMPLE_BUCKET_SECRET: &str = "sample-bucket-secret-0123456789";

/// The samples' secrets: every value is distinctive, so a test can look for it anywhere.
pub fn sample_secrets() -> EnvironmentSecrets {
    EnvironmentSecrets {
        fernet_key: "sample-fernet-key-0123456789".into(),
        jwt_secret: "sample-jwt-secret-0123456789".into(),
        api_secret_key: "sample-api-secret-key-0123456789".into(),
        db_password: "sample-db-password-0123456789".into(),
        broker_password: "sample-broker-password-0123456789".into(),
        admin_password: "sample-admin-password-0123456789".into(),
    }
}

fn backends(secrets: &EnvironmentSecrets) -> Backends {
    Backends {
        sql_alchemy_conn: format!(
            "postgresql+psycopg2://env_1c0ffee:{}@10.20.0.5:5432/env_1c0ffee",
            secrets.db_password
        ),
        broker_url: format!(
            "redis://env-1c0ffee:{}@10.20.0.6:6379/0",
            secrets.broker_password
        ),
        broker_key_prefix: "hangar:1c0ffee:".into(),
    }
}

fn spec(json: serde_json::Value) -> Result<EnvironmentSpec, FieldErrors> {
    let req: CreateEnvironment = serde_json::from_value(json)
        .map_err(|e| FieldErrors::from(FieldError::new("request", e.to_string())))?;
    EnvironmentSpec::create(req, &Platform::default())
}

/// The matrix, or the first spec the API would refuse (a bug in this list).
pub fn samples() -> Result<Vec<Sample>, FieldErrors> {
    let secrets = sample_secrets();
    let tenant = TenantName::parse("acme")
        .map_err(|e| FieldErrors::from(FieldError::new("tenant", e.to_string())))?;
    let id = Uuid::from_u128(0x1c0f_fee0_0000_4000_8000_0000_0000_0042);
    let mut pool = KubeCell {
        bucket_url: "s3://hangar-platform/cell-a".into(),
        ..KubeCell::default()
    };
    pool.postgres.cidrs = vec!["10.20.0.5/32".into()];
    pool.redis.cidrs = vec!["10.20.0.6/32".into()];
    let mut tainted_pool = pool.clone();
    tainted_pool.worker_node_selector =
        BTreeMap::from([("hangar.dev/pool".to_owned(), "workers".to_owned())]);
    tainted_pool.worker_tolerations = vec![Toleration {
        key: Some("hangar.dev/pool".into()),
        operator: Some("Equal".into()),
        value: Some("workers".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    }];
    let sample = |name, json, with_secrets: bool, workers, cell: &KubeCell| {
        let spec = spec(json)?;
        Ok::<_, FieldErrors>(Sample {
            name,
            input: KubeInput {
                environment_id: id,
                tenant: tenant.clone(),
                bucket_access: with_secrets.then(|| BucketAccess {
                    access_key: format!("acme.{}.{}", spec.name, id.simple()),
                    secret_key: SAMPLE_BUCKET_SECRET.into(),
                }),
                spec,
                secrets: with_secrets.then(|| secrets.clone()),
                backends: backends(&secrets),
                workers,
                cell: cell.clone(),
            },
        })
    };
    let requirements = "apache-airflow-providers-http\npandas==2.2.3  # analysis\n";
    Ok(vec![
        sample(
            "celery_micro",
            serde_json::json!({"name": "etl", "environment_class": "micro"}),
            true,
            1,
            &pool,
        )?,
        sample(
            "celery_micro_redacted",
            serde_json::json!({"name": "etl", "environment_class": "micro"}),
            false,
            1,
            &pool,
        )?,
        sample(
            "kubernetes_executor",
            serde_json::json!({
                "name": "ml", "executor": "kubernetes", "max_workers": 4,
                "env_vars": {"TEAM": "ml"},
            }),
            true,
            0,
            &tainted_pool,
        )?,
        sample(
            "requirements",
            serde_json::json!({
                "name": "reports", "requirements": requirements,
                "airflow_config_overrides": {"core.parallelism": "64"},
            }),
            true,
            2,
            &pool,
        )?,
        sample(
            "xlarge_two_schedulers",
            serde_json::json!({
                "name": "warehouse", "environment_class": "xlarge", "schedulers": 2,
                "min_workers": 1, "max_workers": 20,
            }),
            true,
            3,
            &tainted_pool,
        )?,
        sample(
            "celery_and_kubernetes",
            serde_json::json!({"name": "mixed", "executor": "celery_kubernetes"}),
            true,
            1,
            &tainted_pool,
        )?,
        sample(
            "kubernetes_requirements_redacted",
            serde_json::json!({
                "name": "ml", "executor": "kubernetes", "requirements": requirements,
            }),
            false,
            0,
            &pool,
        )?,
    ])
}

/// The template migration Job's sample: Airflow 3.3.2's template, its URL redacted, the
/// default cell.
pub fn migrate_sample() -> MigrateInput {
    MigrateInput {
        template: "hangar_tpl_3_3_2".into(),
        airflow_version: "3.3.2".into(),
        sql_alchemy_conn: None,
        cell: KubeCell::default(),
    }
}

//! How an environment's pods reach the platform bucket: only through the agent's bucket
//! gateway (S3's API, `bucket_gateway_url`), with the environment's own access key, good for
//! its own prefix. The `bucket-access` Secret holds it two ways:
//!
//! - `url`: the `object_store` URL the DAG sync sidecar and the requirements containers read
//!   (`--bucket-url-file`), keys included, so no secret is in their arguments;
//! - `credentials`: an AWS shared credentials file with a `hangar` profile, which Airflow's
//!   S3 remote logging uses through the `hangar_bucket` connection (a variable naming the
//!   profile and the gateway, no secret), so task logs land in the bucket and outlive their pods.
//!
//! Nothing else changes for tenants' own code: no default profile, no global endpoint.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, SecretVolumeSource, Volume, VolumeMount};

use super::{Ctx, REDACTED};
use crate::bucket_layout;

/// The Secret with the environment's bucket credentials.
pub const BUCKET_SECRET: &str = "bucket-access";
/// Where it is mounted, read-only.
pub const BUCKET_DIR: &str = "/opt/hangar/bucket";
/// The one bucket the gateway serves (its keys are the platform bucket's layout).
pub const GATEWAY_BUCKET: &str = "hangar";
/// The region requests are signed for (the gateway serves one).
pub const GATEWAY_REGION: &str = "us-east-1";
/// The AWS profile (and Airflow connection) remote logging uses.
pub const PROFILE: &str = "hangar";
pub const CONNECTION_ID: &str = "hangar_bucket";

/// An environment's access key and secret for the gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketAccess {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for BucketAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketAccess")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// The gateway's URL without a trailing slash.
fn gateway<'a>(ctx: &'a Ctx<'_>) -> &'a str {
    ctx.cell().bucket_gateway_url.trim_end_matches('/')
}

/// The Secret's files, or [`REDACTED`] for each without credentials.
pub(crate) fn files(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    let (url, credentials) = match &ctx.input.bucket_access {
        Some(a) => (
            format!(
                "s3://{GATEWAY_BUCKET}?endpoint={}&allow_http=true&region={GATEWAY_REGION}\
                 &access_key_id={}&secret_access_key={}",
                gateway(ctx),
                a.access_key,
                a.secret_key
            ),
            format!(
                "[{PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                a.access_key, a.secret_key
            ),
        ),
        None => (REDACTED.to_owned(), REDACTED.to_owned()),
    };
    BTreeMap::from([
        ("url".to_owned(), url),
        ("credentials".to_owned(), credentials),
    ])
}

pub(crate) fn secret(ctx: &Ctx<'_>) -> Secret {
    super::workloads::opaque_secret(ctx, BUCKET_SECRET, files(ctx))
}

pub(crate) fn volume() -> Volume {
    Volume {
        name: "bucket".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(BUCKET_SECRET.to_owned()),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(crate) fn mount() -> VolumeMount {
    super::pods::mount("bucket", BUCKET_DIR, true)
}

/// The file with the `object_store` URL (`--bucket-url-file`).
pub(crate) fn url_file() -> String {
    format!("{BUCKET_DIR}/url")
}

/// Where Airflow writes task logs: the environment's `logs/{id}/tasks/` prefix, which the
/// control plane reads task logs from.
pub(crate) fn remote_base_log_folder(ctx: &Ctx<'_>) -> String {
    let prefix = bucket_layout::tasks_prefix(
        ctx.input.tenant.as_str(),
        ctx.spec().name.as_str(),
        ctx.input.environment_id,
    );
    format!("s3://{GATEWAY_BUCKET}/{prefix}")
}

/// Airflow's `[logging]` settings for remote logging to the bucket.
pub(crate) fn logging_settings(ctx: &Ctx<'_>) -> [(&'static str, &'static str, String); 3] {
    [
        ("logging", "remote_logging", "True".to_owned()),
        (
            "logging",
            "remote_base_log_folder",
            remote_base_log_folder(ctx),
        ),
        ("logging", "remote_log_conn_id", CONNECTION_ID.to_owned()),
    ]
}

/// The variables that make the connection and the profile: no secret in them.
pub(crate) fn variables(ctx: &Ctx<'_>) -> [(String, String); 2] {
    let connection = serde_json::json!({
        "conn_type": "aws",
        "extra": {
            "profile_name": PROFILE,
            "region_name": GATEWAY_REGION,
            "endpoint_url": gateway(ctx),
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        },
    });
    [
        (
            format!("AIRFLOW_CONN_{}", CONNECTION_ID.to_uppercase()),
            connection.to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            format!("{BUCKET_DIR}/credentials"),
        ),
    ]
}

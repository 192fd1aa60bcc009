//! `hangar dag-sync`: the agent's DAG sync ([`hangar_data_plane::dag_sync`]) as a command of
//! its own, for runtimes where each component syncs its own copy: on Kubernetes it runs as a
//! container beside every Airflow container, writing the pod's shared `emptyDir` with the same
//! atomic switch (the dags folder is a symlink replaced in one `rename`) and the same parse
//! requests for changed files.

use std::path::PathBuf;
use std::time::Duration;

use crate::bucket_source::BucketSource;
use hangar_data_plane::dag_sync::{self, DagSync};
use hangar_tenants::bucket_layout as layout;
use hangar_tenants::names::{EnvName, TenantName};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// Syncs an environment's `dags/` and `plugins/` from the platform bucket into a folder.
#[derive(Debug, clap::Args)]
pub struct DagSyncArgs {
    #[command(flatten)]
    pub bucket: BucketSource,
    /// The environment's tenant.
    #[arg(long, value_parser = parse_tenant)]
    pub tenant: TenantName,
    /// The environment.
    #[arg(long, value_parser = parse_env)]
    pub environment: EnvName,
    /// The folder to sync into: `<home>/dags` and `<home>/plugins` become links to the
    /// current generation of each (point Airflow's `dags_folder` and `plugins_folder` there).
    #[arg(long)]
    pub home: PathBuf,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
    /// One round, then exit (an init container: the DAGs are there before Airflow starts).
    #[arg(long)]
    pub once: bool,
    /// The environment's Airflow configuration file; its `[database] sql_alchemy_conn` is
    /// where changed DAG files are queued for parsing at once. Without it, Airflow finds them
    /// at its next scan.
    #[arg(long = "airflow-config", env = "AIRFLOW_CONFIG")]
    pub airflow_config: Option<PathBuf>,
    /// The environment's `.airflowignore` syntax: `glob` (applied while syncing) or `regexp`
    /// (every file synced; Airflow applies it).
    #[arg(long = "ignore-syntax", default_value = "glob", value_parser = ["glob", "regexp"])]
    pub ignore_syntax: String,
}

fn parse_tenant(s: &str) -> Result<TenantName, String> {
    TenantName::parse(s).map_err(|e| format!("--tenant: {e}"))
}

fn parse_env(s: &str) -> Result<EnvName, String> {
    EnvName::parse(s).map_err(|e| format!("--environment: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum DagSyncCmdError {
    #[error("HANGAR_BUCKET_URL: {0}")]
    Bucket(#[from] hangar_data_plane::bucket::BucketError),
    #[error("failed to create {path}")]
    Home {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to sync from the bucket")]
    Sync(#[from] dag_sync::SyncError),
}

/// Runs the sync until `cancel` (or one round with `--once`).
pub async fn run(args: DagSyncArgs, cancel: CancellationToken) -> Result<(), DagSyncCmdError> {
    let bucket = args.bucket.open()?;
    std::fs::create_dir_all(&args.home).map_err(|source| DagSyncCmdError::Home {
        path: args.home.clone(),
        source,
    })?;
    let (tenant, env) = (args.tenant.as_str(), args.environment.as_str());
    let glob = args.ignore_syntax == "glob";
    let mut dags = DagSync::new(bucket.clone(), tenant, env, &args.home, glob);
    let plugins_prefix = bucket.path(&layout::plugins_prefix(tenant, env));
    let mut plugins = DagSync::folder(bucket, plugins_prefix, &args.home, "plugins", false);
    loop {
        let round = async {
            let out = dags.sync().await?;
            plugins.sync().await?;
            Ok::<_, dag_sync::SyncError>(out)
        }
        .await;
        match round {
            Ok(out) => {
                if out.switched {
                    tracing::info!(
                        tenant,
                        env,
                        downloaded = out.downloaded.len(),
                        removed = out.removed.len(),
                        "synced DAGs"
                    );
                    if let Some(url) = args.airflow_config.as_deref().and_then(database_url) {
                        if let Err(e) = dag_sync::request_parse(&url, &out.downloaded).await {
                            tracing::warn!(error = %e, "failed to ask Airflow to parse the synced DAGs");
                        }
                    }
                }
                if args.once {
                    return Ok(());
                }
            }
            // A first round that fails leaves nothing to run on: the init container fails
            // and is retried by the kubelet.
            Err(e) if args.once => return Err(e.into()),
            Err(e) => tracing::warn!(tenant, env, error = %e, "failed to sync from the bucket"),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(args.interval)) => {}
        }
    }
}

/// The environment database's URL from its `airflow.cfg`'s `[database] sql_alchemy_conn`, as
/// a URL sqlx opens (without SQLAlchemy's driver suffix; `%%` is configparser's `%`).
fn database_url(config: &std::path::Path) -> Option<SecretString> {
    let text = std::fs::read_to_string(config).ok()?;
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s;
        } else if section == "database" {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "sql_alchemy_conn" {
                    let url = value.trim().replace("%%", "%");
                    let url = url.replacen("postgresql+psycopg2://", "postgresql://", 1);
                    return Some(url.into());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_the_database_url_from_the_environments_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("airflow.cfg");
        let secrets = hangar_tenants::api::EnvironmentSecrets {
            fernet_key: "f".into(),
            jwt_secret: "j".into(),
            api_secret_key: "k".into(),
            db_password: "p%w".into(),
            broker_password: "b".into(),
            admin_password: "a".into(),
        };
        let backends = hangar_tenants::blueprint::Backends {
            sql_alchemy_conn: "postgresql+psycopg2://env_x:p%25w@db:5432/env_x".into(),
            broker_url: "redis://u:b@redis:6379/0".into(),
            broker_key_prefix: "env_x:".into(),
        };
        std::fs::write(
            &cfg,
            hangar_tenants::blueprint::airflow_cfg(&secrets, &backends),
        )
        .unwrap();
        assert_eq!(
            database_url(&cfg).unwrap().expose_secret(),
            "postgresql://env_x:p%25w@db:5432/env_x"
        );
        assert!(database_url(&dir.path().join("missing.cfg")).is_none());
    }
}

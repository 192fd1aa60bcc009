//! `hangar agent`: a data-plane agent in its own process, serving one cell with the process
//! runtime. On SIGTERM or Ctrl-C it stops without stopping its environments; the next agent on
//! the same data directory adopts their processes.

use std::path::PathBuf;
use std::time::Duration;

use hangar_data_plane::agent::{self, AgentSettings, OnShutdown};
use hangar_data_plane::autoscaler::machine_worker_slots;
use hangar_data_plane::bucket::Bucket;
use hangar_data_plane::log_ship::ShipSettings;
use hangar_data_plane::process_runtime::{Platform, PlatformError};
use hangar_data_plane::sandbox::{Sandbox, SandboxError, SandboxSettings};
use hangar_tenants::api::CellCapacity;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

fn secret(s: &str) -> Result<SecretString, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The control plane.
    #[arg(long, env = "HANGAR_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The cell this agent serves.
    #[arg(long, env = "HANGAR_CELL")]
    pub cell: String,
    /// The cell's token (from `hangar cell create`).
    #[arg(long, env = "HANGAR_CELL_TOKEN", value_name = "HANGAR_CELL_TOKEN", hide_env_values = true, value_parser = secret)]
    pub cell_token: SecretString,
    /// Where runtimes and environments live on this machine.
    #[arg(long, env = "HANGAR_AGENT_DIR")]
    pub data_dir: PathBuf,
    /// Superuser URL of the platform Postgres the environments' databases live on.
    #[arg(long, env = "HANGAR_PLATFORM_POSTGRES_URL", value_name = "HANGAR_PLATFORM_POSTGRES_URL", hide_env_values = true, value_parser = secret)]
    pub postgres_url: SecretString,
    /// Admin URL of the platform Redis the environments' brokers live on.
    #[arg(long, env = "HANGAR_PLATFORM_REDIS_URL", value_name = "HANGAR_PLATFORM_REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub redis_url: SecretString,
    /// The platform bucket by URL (as `hangar serve`'s `HANGAR_BUCKET_URL`).
    #[arg(long = "bucket-url", env = "HANGAR_BUCKET_URL")]
    pub bucket: Option<String>,
    #[arg(long, env = "HANGAR_MAX_ENVIRONMENTS", default_value_t = 8)]
    pub max_environments: u32,
    /// Seconds an environment's lower worker target must hold before workers are drained.
    #[arg(long, env = "HANGAR_SCALE_DOWN_COOLDOWN_SECS", default_value_t = 60)]
    pub scale_down_cooldown_secs: u64,
    /// Worker slots of this cell's shared pool (default: 2 per core, at most 1 per GiB).
    #[arg(long, env = "HANGAR_WORKER_SLOTS")]
    pub worker_slots: Option<u32>,
    #[arg(long, env = "HANGAR_UV", default_value = "uv")]
    pub uv: PathBuf,
    /// Days the bucket keeps the environments' component and task logs.
    #[arg(long, env = "HANGAR_LOG_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub log_retention_days: u64,
    #[command(flatten)]
    pub isolation: IsolationArgs,
}

/// How the process runtime keeps tenants apart (docs/security.md).
#[derive(Debug, Clone, clap::Args)]
pub struct IsolationArgs {
    /// Run every environment as the agent's own user when it is not root, instead of refusing
    /// to start: environments can then read each other's processes and files, so this is fit
    /// only for one trusted tenant on a laptop. The cell reports itself not isolated.
    #[arg(long, env = "HANGAR_INSECURE_SINGLE_USER", default_value_t = false, action = clap::ArgAction::Set)]
    pub insecure_single_user: bool,
    /// The cgroup (under each hierarchy) that holds the environments' own groups.
    #[arg(long, env = "HANGAR_CGROUP_PARENT", default_value = "hangar")]
    pub cgroup_parent: String,
}

impl IsolationArgs {
    /// Finds how this machine can confine environments; refuses a non-root agent unless
    /// `HANGAR_INSECURE_SINGLE_USER=true`.
    pub async fn sandbox(&self) -> Result<Sandbox, SandboxError> {
        let program = std::env::current_exe().map_err(|source| SandboxError::Files {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        Sandbox::probe(&SandboxSettings {
            program,
            insecure_single_user: self.insecure_single_user,
            cgroup_parent: self.cgroup_parent.clone(),
        })
        .await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentCmdError {
    #[error(transparent)]
    Client(#[from] hangar_client::ClientError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("HANGAR_BUCKET_URL: {0}")]
    Bucket(#[from] hangar_data_plane::bucket::BucketError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

pub async fn run(args: AgentArgs, shutdown: CancellationToken) -> Result<(), AgentCmdError> {
    let client = hangar_client::Client::new(&args.url, Some(args.cell_token.clone()))?;
    let sandbox = args.isolation.sandbox().await?;
    let platform = Platform::connect(
        &args.postgres_url,
        &args.redis_url,
        &args.data_dir,
        &args.uv,
        args.bucket.as_deref().map(Bucket::from_url).transpose()?,
        sandbox,
    )
    .await?;
    let settings = AgentSettings {
        cell: args.cell,
        capacity: CellCapacity {
            max_environments: args.max_environments,
            worker_slots: args.worker_slots.unwrap_or_else(machine_worker_slots),
        },
        poll_wait: Duration::from_secs(25),
        tick: Duration::from_secs(2),
        on_shutdown: OnShutdown::Detach,
        scale_down_cooldown: Duration::from_secs(args.scale_down_cooldown_secs),
        logs: ShipSettings {
            retention: Duration::from_secs(args.log_retention_days * 86_400),
            ..ShipSettings::default()
        },
    };
    agent::run(client, settings, platform, shutdown).await;
    Ok(())
}

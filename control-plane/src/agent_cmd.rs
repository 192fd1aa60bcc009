//! `hangar agent`: a data-plane agent in its own process, serving one cell with the process
//! runtime (`--runtime process`, the default) or a Kubernetes cluster (`--runtime kubernetes`).
//! On SIGTERM or Ctrl-C it stops without stopping its environments; the next agent (on the same
//! data directory, or on the same cluster) adopts them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hangar_data_plane::agent::{self, AgentSettings, OnShutdown};
use hangar_data_plane::autoscaler::machine_worker_slots;
use hangar_data_plane::broker_gateway::BrokerGateway;
use hangar_data_plane::bucket::Bucket;
use hangar_data_plane::bucket_gateway::{Gateway, GatewayKey};
use hangar_data_plane::kubernetes::{
    pool, Address, BlueprintRenderer, Cluster, KubePlatform, KubePlatformError, KubeRuntime,
};
use hangar_data_plane::log_ship::ShipSettings;
use hangar_data_plane::process_runtime::{Platform, PlatformError};
use hangar_data_plane::sandbox::{Sandbox, SandboxError, SandboxSettings};
use hangar_tenants::api::CellCapacity;
use hangar_tenants::blueprint::kubernetes::KubeCell;
use secrecy::{ExposeSecret, SecretString};
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
    /// What runs the cell's environments: processes on this machine, or a Kubernetes cluster.
    #[arg(long, env = "HANGAR_RUNTIME", value_enum, default_value_t = RuntimeKind::Process)]
    pub runtime: RuntimeKind,
    /// Where runtimes and environments live on this machine (process runtime); on a
    /// Kubernetes cell, where the environments' component logs are followed into before they
    /// are shipped (without it they are not shipped).
    #[arg(long, env = "HANGAR_AGENT_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URL of the platform Postgres the environments' databases live on, as a superuser or a
    /// role with CREATEDB and CREATEROLE (a managed Postgres's admin). `?sslmode=require` (or
    /// `verify-full`) for TLS, which the environments then use too.
    #[arg(long, env = "HANGAR_PLATFORM_POSTGRES_URL", value_name = "HANGAR_PLATFORM_POSTGRES_URL", hide_env_values = true, value_parser = secret)]
    pub postgres_url: SecretString,
    /// Admin URL of the platform Redis the environments' brokers live on: one that may run ACL
    /// SETUSER and ACL SAVE, or any Redis 7 (a managed one) with HANGAR_BROKER_GATEWAY_ADDR.
    /// `rediss://` for TLS (`rediss://…#insecure`: without checking the server's
    /// certificate), which the environments' brokers then use too (without the gateway).
    #[arg(long, env = "HANGAR_PLATFORM_REDIS_URL", value_name = "HANGAR_PLATFORM_REDIS_URL", hide_env_values = true, value_parser = secret)]
    pub redis_url: SecretString,
    /// The platform bucket by URL (as `hangar serve`'s `HANGAR_BUCKET_URL`).
    #[arg(long = "bucket-url", env = "HANGAR_BUCKET_URL")]
    pub bucket: Option<String>,
    /// Serve the broker gateway on this address and put every environment's broker behind it,
    /// for a platform Redis without ACL commands (ElastiCache, Memorystore, Azure Cache for
    /// Redis): each environment logs in to the gateway as its own user, which allows only its
    /// own keys and channels, and the gateway alone holds the Redis's admin login. Environments
    /// of the process runtime reach it on this address (loopback when it is 0.0.0.0); pods of
    /// the kubernetes runtime where the cell's `broker_gateway` says.
    #[arg(long, env = "HANGAR_BROKER_GATEWAY_ADDR")]
    pub broker_gateway_addr: Option<std::net::SocketAddr>,
    #[arg(long, env = "HANGAR_MAX_ENVIRONMENTS", default_value_t = 8)]
    pub max_environments: u32,
    /// Environments kept prepared (Airflow up with the default configuration) so that creating
    /// one with the default runtime takes about a second; each holds an idle environment's
    /// memory and counts against HANGAR_MAX_ENVIRONMENTS. Process runtime only.
    #[arg(long, env = "HANGAR_WARM_POOL", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub warm_pool: u32,
    /// Seconds an environment's lower worker target must hold before workers are drained.
    #[arg(long, env = "HANGAR_SCALE_DOWN_COOLDOWN_SECS", default_value_t = 60)]
    pub scale_down_cooldown_secs: u64,
    /// Worker slots of this cell's shared pool (process runtime's default: 2 per core, at most
    /// 1 per GiB; kubernetes runtime's default: the `small` workers its Ready, schedulable worker
    /// nodes fit, read again every 5 minutes).
    #[arg(long, env = "HANGAR_WORKER_SLOTS")]
    pub worker_slots: Option<u32>,
    /// Task slots of this cell's pool for environments with the `hangar` executor, one task
    /// each (process runtime only; default: 4 per core, at most 2 per GiB).
    #[arg(long, env = "HANGAR_TASK_SLOTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub task_slots: Option<u32>,
    #[arg(long, env = "HANGAR_UV", default_value = "uv")]
    pub uv: PathBuf,
    /// Days the bucket keeps the environments' component and task logs.
    #[arg(long, env = "HANGAR_LOG_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub log_retention_days: u64,
    #[command(flatten)]
    pub isolation: IsolationArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// What runs a cell's environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Supervised processes on this machine.
    Process,
    /// A namespace per environment on the Kubernetes cluster the agent runs in (or its
    /// kubeconfig names).
    Kubernetes,
}

/// The kubernetes runtime's settings (docs/kubernetes.md).
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// The cell's Kubernetes settings as JSON (images, worker node pool, system namespace,
    /// egress); what it leaves out has its default. The bucket URL comes from HANGAR_BUCKET_URL.
    #[arg(long, env = "HANGAR_KUBE_CELL_FILE")]
    pub kube_cell_file: Option<PathBuf>,
    /// The platform Postgres as the environments' pods reach it, `host:port` (default: the
    /// host and port of HANGAR_PLATFORM_POSTGRES_URL).
    #[arg(long, env = "HANGAR_KUBE_POD_POSTGRES")]
    pub pod_postgres: Option<String>,
    /// The platform Redis as the environments' pods reach it, `host:port` (default: the host
    /// and port of HANGAR_PLATFORM_REDIS_URL).
    #[arg(long, env = "HANGAR_KUBE_POD_REDIS")]
    pub pod_redis: Option<String>,
    /// Where the bucket gateway listens: the environments' pods reach the bucket only through
    /// it, each with credentials for its own prefix (the cell's `bucket_gateway_url` names
    /// this address as the pods see it).
    #[arg(
        long,
        env = "HANGAR_BUCKET_GATEWAY_ADDR",
        default_value = "0.0.0.0:9470"
    )]
    pub bucket_gateway_addr: std::net::SocketAddr,
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
    #[error(
        "HANGAR_WARM_POOL applies to the process runtime only: a Kubernetes cell keeps no \
         prepared environments (set it to 0)"
    )]
    WarmPoolOnKubernetes,
    #[error(transparent)]
    Client(#[from] hangar_client::ClientError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("HANGAR_BUCKET_URL: {0}")]
    Bucket(#[from] hangar_data_plane::bucket::BucketError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    KubePlatform(#[from] KubePlatformError),
    #[error("failed to reach the Kubernetes API (in-cluster service account or kubeconfig)")]
    KubeClient(#[source] kube::Error),
    #[error("HANGAR_KUBE_CELL_FILE: failed to read {path}")]
    KubeCellFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HANGAR_KUBE_CELL_FILE: {path} is not valid: {message}")]
    KubeCell { path: PathBuf, message: String },
    #[error(transparent)]
    WorkerPool(#[from] hangar_data_plane::kubernetes::pool::PoolError),
    #[error("HANGAR_AGENT_DIR: set where the process runtime keeps runtimes and environments")]
    DataDir,
    #[error("HANGAR_BROKER_GATEWAY_ADDR: failed to listen on {addr}")]
    BrokerGatewayListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HANGAR_PLATFORM_REDIS_URL: the broker gateway cannot use it")]
    BrokerGateway(#[from] hangar_data_plane::broker_gateway::GatewayError),
    #[error(
        "HANGAR_BROKER_GATEWAY_ADDR and the cell's broker_gateway (HANGAR_KUBE_CELL_FILE) go \
         together: the agent serves the gateway at the one, pods reach it at the other"
    )]
    BrokerGatewayCell,
    #[error("HANGAR_BUCKET_GATEWAY_ADDR: failed to listen on {addr}")]
    BucketGateway {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub async fn run(args: AgentArgs, shutdown: CancellationToken) -> Result<(), AgentCmdError> {
    if args.runtime == RuntimeKind::Kubernetes && args.warm_pool > 0 {
        return Err(AgentCmdError::WarmPoolOnKubernetes);
    }
    let client = hangar_client::Client::new(&args.url, Some(args.cell_token.clone()))?;
    let bucket = args.bucket.as_deref().map(Bucket::from_url).transpose()?;
    let settings = |worker_slots: u32, updates| AgentSettings {
        cell: args.cell.clone(),
        capacity: CellCapacity {
            max_environments: args.max_environments,
            worker_slots,
        },
        poll_wait: Duration::from_secs(25),
        tick: Duration::from_secs(2),
        on_shutdown: OnShutdown::Detach,
        scale_down_cooldown: Duration::from_secs(args.scale_down_cooldown_secs),
        logs: ShipSettings {
            retention: Duration::from_secs(args.log_retention_days * 86_400),
            ..ShipSettings::default()
        },
        worker_slots_updates: updates,
        warm_pool: args.warm_pool,
    };
    match (args.runtime, &args.data_dir) {
        (RuntimeKind::Process, Some(data_dir)) => {
            let sandbox = args.isolation.sandbox().await?;
            let platform = Platform::connect(
                &args.postgres_url,
                &args.redis_url,
                data_dir,
                &args.uv,
                bucket,
                sandbox,
            )
            .await?;
            let platform = match args.broker_gateway_addr {
                Some(addr) => {
                    platform.with_broker_gateway(broker_gateway(&args, addr, &shutdown).await?)
                }
                None => platform,
            };
            let platform = match args.task_slots {
                Some(n) => platform.with_task_slots(n),
                None => platform,
            };
            let slots = args.worker_slots.unwrap_or_else(machine_worker_slots);
            agent::run(client, settings(slots, None), platform, shutdown).await;
        }
        (RuntimeKind::Process, None) => return Err(AgentCmdError::DataDir),
        (RuntimeKind::Kubernetes, _) => {
            let (runtime, kube, cell) = kube_runtime(&args, bucket, shutdown.clone()).await?;
            let (slots, updates) = match args.worker_slots {
                Some(n) => (n, None),
                None => {
                    // Sized from the worker nodes now (failing fast when they cannot be
                    // read), then followed as nodes come and go.
                    let n = pool::worker_slots(&kube, &cell.worker_node_selector).await?;
                    tracing::info!(worker_slots = n, "worker pool sized from the worker nodes");
                    let (tx, rx) = tokio::sync::watch::channel(n);
                    tokio::spawn(pool::watch_worker_slots(
                        kube,
                        cell.worker_node_selector,
                        pool::REFRESH,
                        tx,
                        shutdown.clone(),
                    ));
                    (n, Some(rx))
                }
            };
            agent::run(client, settings(slots, updates), runtime, shutdown).await;
        }
    }
    Ok(())
}

/// Serves the broker gateway on `addr` in front of the platform Redis; returns where it listens.
async fn broker_gateway(
    args: &AgentArgs,
    addr: std::net::SocketAddr,
    shutdown: &CancellationToken,
) -> Result<std::net::SocketAddr, AgentCmdError> {
    let bound = BrokerGateway::connect(&args.redis_url)
        .await?
        .spawn(addr, shutdown.clone())
        .await
        .map_err(|source| AgentCmdError::BrokerGatewayListen { addr, source })?;
    tracing::info!(%bound, "broker gateway listening");
    Ok(bound)
}

/// A client of the Kubernetes API `config` names.
fn kube_client(config: kube::Config) -> Result<kube::Client, AgentCmdError> {
    kube::Client::try_from(config).map_err(AgentCmdError::KubeClient)
}

/// The kubernetes runtime of the cluster the agent runs in (or its kubeconfig names), with its
/// client and the cell's settings.
async fn kube_runtime(
    args: &AgentArgs,
    bucket: Option<Bucket>,
    shutdown: CancellationToken,
) -> Result<(KubeRuntime, kube::Client, KubeCell), AgentCmdError> {
    let mut cell: KubeCell = match &args.kube.kube_cell_file {
        None => KubeCell::default(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| AgentCmdError::KubeCellFile {
                    path: path.clone(),
                    source,
                })?;
            serde_json::from_str(&text).map_err(|e| AgentCmdError::KubeCell {
                path: path.clone(),
                message: e.to_string(),
            })?
        }
    };
    if let Some(url) = &args.bucket {
        cell.bucket_url = url.clone();
    }
    cell.validate().map_err(|e| AgentCmdError::KubeCell {
        path: args.kube.kube_cell_file.clone().unwrap_or_default(),
        message: e.to_string(),
    })?;
    let config = kube::Config::infer()
        .await
        .map_err(|e| AgentCmdError::KubeClient(kube::Error::InferConfig(e)))?;
    let client = kube_client(config)?;
    let platform = KubePlatform::connect(
        &args.postgres_url,
        &args.redis_url,
        args.kube.pod_postgres.as_deref(),
        args.kube.pod_redis.as_deref(),
    )
    .await?;
    let platform = match (args.broker_gateway_addr, cell.broker_gateway.as_str()) {
        (None, "") => platform,
        (Some(addr), pods_reach) => {
            let pods_reach = Address::parse(pods_reach).ok_or(AgentCmdError::BrokerGatewayCell)?;
            broker_gateway(args, addr, &shutdown).await?;
            platform.with_broker_gateway(pods_reach)
        }
        (None, _) => return Err(AgentCmdError::BrokerGatewayCell),
    };
    // The environments' only way to the bucket, with the agent's own credentials behind it.
    let key = GatewayKey::derive(args.cell_token.expose_secret().as_bytes());
    let platform_bucket = match &bucket {
        Some(b) => b.clone(),
        None => Bucket::from_url(&cell.bucket_url)?,
    };
    let addr = args.kube.bucket_gateway_addr;
    let bound = Gateway::new(platform_bucket, key.clone())
        .spawn(addr, shutdown)
        .await
        .map_err(|source| AgentCmdError::BucketGateway { addr, source })?;
    tracing::info!(%bound, url = %cell.bucket_gateway_url, "bucket gateway listening");
    let runtime = KubeRuntime::new(
        Cluster::new(client.clone()),
        platform,
        Arc::new(BlueprintRenderer::new(cell.clone(), key)),
        bucket,
    );
    // Component logs are followed into files under the agent's folder when it has one.
    let runtime = match &args.data_dir {
        Some(dir) => runtime.with_logs_dir(dir.join("kube-logs")),
        None => runtime,
    };
    Ok((runtime, client, cell))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn parse(extra: &[&str]) -> Result<AgentArgs, clap::Error> {
        let base = [
            "hangar",
            "--cell",
            "c1",
            "--cell-token",
            "t",
            "--postgres-url",
            "postgres://a:b@db:5432/postgres",
            "--redis-url",
            "redis://a:b@redis:6379",
        ];
        Cli::try_parse_from(base.iter().chain(extra)).map(|c| c.agent)
    }

    #[tokio::test]
    async fn a_kubernetes_client_for_an_https_api_server_can_be_made() {
        let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        assert!(kube_client(config).is_ok());
    }

    #[test]
    fn the_kubernetes_runtime_is_chosen_by_flag_and_needs_no_data_directory() {
        let process = parse(&["--data-dir", "/var/lib/hangar"]).unwrap();
        assert_eq!(process.runtime, RuntimeKind::Process);
        let kube = parse(&["--runtime", "kubernetes", "--worker-slots", "16"]).unwrap();
        assert_eq!(kube.runtime, RuntimeKind::Kubernetes);
        assert_eq!(kube.data_dir, None);
        let sized_from_nodes = parse(&["--runtime", "kubernetes"]).unwrap();
        assert_eq!(
            sized_from_nodes.worker_slots, None,
            "the worker nodes size the pool"
        );
    }

    #[test]
    fn the_broker_gateway_is_off_unless_an_address_is_given() {
        assert_eq!(parse(&[]).unwrap().broker_gateway_addr, None);
        let on = parse(&["--broker-gateway-addr", "0.0.0.0:9471"]).unwrap();
        assert_eq!(
            on.broker_gateway_addr,
            Some("0.0.0.0:9471".parse().unwrap())
        );
        let err = parse(&["--broker-gateway-addr", "gateway:9471"]).unwrap_err();
        assert!(err.to_string().contains("--broker-gateway-addr"), "{err}");
    }
}

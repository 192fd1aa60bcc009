//! `hangar dev`: Hangar on one machine with embedded defaults. A private Postgres and a private
//! Redis (started from the system binaries, kept in the data directory), the control plane, and
//! an in-process data-plane agent running environments with the process runtime as the cell
//! `local`. The admin token, master key and cell token are kept in the data directory, so
//! starting again on the same directory brings everything back.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hangar_data_plane::agent::{self, AgentSettings, OnShutdown};
use hangar_data_plane::bucket::Bucket;
use hangar_data_plane::embedded::{PostgresError, PrivatePostgres, PrivateRedis, RedisError};
use hangar_data_plane::process_runtime::{Platform, PlatformError};
use hangar_tenants::api::{CellCapacity, CreateCell, Runtime};
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::settings::{DatabaseSettings, ServeSettings};
use crate::startup::{Application, StartupError};

#[derive(Debug, Clone, clap::Args)]
pub struct DevSettings {
    /// Where the private Postgres, the admin token and dev.json live.
    #[arg(long, env = "HANGAR_DEV_DIR", default_value = ".hangar/dev")]
    pub data_dir: PathBuf,
    /// Address the API listens on.
    #[arg(long, env = "HANGAR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Environments this machine accepts (each idle one takes about 1 GB of memory).
    #[arg(long, env = "HANGAR_MAX_ENVIRONMENTS", default_value_t = 8)]
    pub max_environments: u32,
    /// The uv program that builds the environments' Python runtimes.
    #[arg(long, env = "HANGAR_UV", default_value = "uv")]
    pub uv: PathBuf,
    /// Worker slots shared by all environments (default: 2 per core, at most 1 per GiB).
    #[arg(long, env = "HANGAR_WORKER_SLOTS")]
    pub worker_slots: Option<u32>,
    /// Task slots shared by the environments with the `hangar` executor, one task each
    /// (default: 4 per core, at most 2 per GiB).
    #[arg(long, env = "HANGAR_TASK_SLOTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub task_slots: Option<u32>,
    /// Seconds an environment's lower worker target must hold before workers are drained.
    #[arg(long, env = "HANGAR_SCALE_DOWN_COOLDOWN_SECS", default_value_t = 60)]
    pub scale_down_cooldown_secs: u64,
    /// Environments kept prepared (Airflow up with the default configuration) so that creating
    /// one with the default runtime takes about a second; each holds an idle environment's
    /// memory and counts against HANGAR_MAX_ENVIRONMENTS.
    #[arg(long, env = "HANGAR_WARM_POOL", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub warm_pool: u32,
    /// Days the local bucket keeps the environments' component and task logs.
    #[arg(long, env = "HANGAR_LOG_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub log_retention_days: u64,
    #[command(flatten)]
    pub isolation: crate::agent_cmd::IsolationArgs,
    /// Serve each environment's Airflow UI on an origin of its own, `{env}--{tenant}.<domain>`
    /// on this server's port (as `hangar serve`). `localhost` needs no DNS: browsers send
    /// `*.localhost` to this machine.
    #[arg(long, env = "HANGAR_UI_DOMAIN", value_parser = crate::ui_domain::UiDomain::parse)]
    pub ui_domain: Option<crate::ui_domain::UiDomain>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("failed to prepare {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Busy(#[from] hangar_data_plane::embedded::DirLockError),
    #[error("failed to start the private Postgres")]
    Postgres(#[from] PostgresError),
    #[error("failed to start the private Redis")]
    Redis(#[from] RedisError),
    #[error("uv not found ({0}): install it with `pip install uv` (scripts/bootstrap does)")]
    NoUv(String),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Sandbox(#[from] hangar_data_plane::sandbox::SandboxError),
    #[error("failed to set up the local bucket")]
    Bucket(#[from] hangar_data_plane::bucket::BucketError),
    #[error("failed to set up the local cell")]
    Cell(#[source] hangar_client::ClientError),
    #[error("the cell `local` exists but its token file {0} is gone: remove the data directory to start over")]
    LostCellToken(PathBuf),
    #[error("failed to create the control plane's database")]
    CreateDatabase(#[source] sqlx::Error),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("failed to serve")]
    Serve(#[source] std::io::Error),
}

fn files(path: &Path) -> impl Fn(std::io::Error) -> DevError + '_ {
    move |source| DevError::Files {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> Result<(), DevError> {
    std::fs::write(path, contents).map_err(files(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(files(path))
}

/// The admin token of this data directory, made on first start.
fn admin_token(dir: &Path) -> Result<String, DevError> {
    let path = dir.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if t.trim().len() >= 16 {
            return Ok(t.trim().to_owned());
        }
    }
    let token = format!(
        "hga_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
    );
    write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}

/// The master key of this data directory, made on first start. Losing it loses the
/// environments' secrets, so it is never replaced once written.
fn master_key(dir: &Path) -> Result<String, DevError> {
    let path = dir.join("master-key");
    match std::fs::read_to_string(&path) {
        Ok(k) => Ok(k.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = crate::secrets::MasterKey::generate();
            write_private(&path, &format!("{key}\n"))?;
            Ok(key)
        }
        Err(e) => Err(DevError::Files { path, source: e }),
    }
}

async fn ensure_database(pg: &PrivatePostgres, name: &str) -> Result<(), DevError> {
    let mut conn = sqlx::PgConnection::connect(pg.url("postgres").expose_secret())
        .await
        .map_err(DevError::CreateDatabase)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(DevError::CreateDatabase)?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(DevError::CreateDatabase)?;
    }
    conn.close().await.map_err(DevError::CreateDatabase)
}

/// Runs until `shutdown` is cancelled, then stops the control plane and the private Postgres.
pub async fn run(settings: DevSettings, shutdown: CancellationToken) -> Result<(), DevError> {
    let dir = &settings.data_dir;
    std::fs::create_dir_all(dir).map_err(files(dir))?;
    let dir = std::fs::canonicalize(dir).map_err(files(dir))?;
    // The Postgres server may run as the `postgres` user, which must be able to reach its folder.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(files(&dir))?;
    // One `hangar dev` per data directory. One that was killed holds nothing: the next one
    // takes over the Postgres, Redis and environments it left running.
    let _held = hangar_data_plane::embedded::DirLock::acquire(&dir)?;
    let uv_ok = tokio::process::Command::new(&settings.uv)
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !uv_ok {
        return Err(DevError::NoUv(settings.uv.display().to_string()));
    }
    // Before anything starts: a non-root `hangar dev` is refused here unless told otherwise.
    let sandbox = settings.isolation.sandbox().await?;
    let token = admin_token(&dir)?;
    let master_key = master_key(&dir)?;
    let pg = PrivatePostgres::start(&dir.join("postgres")).await?;
    let redis = match PrivateRedis::start(&dir.join("redis")).await {
        Ok(r) => r,
        Err(e) => {
            let _ = pg.stop().await;
            return Err(e.into());
        }
    };
    let keys = Keys { token, master_key };
    let served = serve(&settings, &dir, (&pg, &redis), keys, sandbox, shutdown).await;
    if let Err(e) = redis.stop().await {
        tracing::warn!(error = %e, "failed to stop the private Redis");
    }
    if let Err(e) = pg.stop().await {
        tracing::warn!(error = %e, "failed to stop the private Postgres");
    }
    served
}

/// The token of the cell `local`, made (with the cell) on first start.
async fn cell_token(dir: &Path, admin: &hangar_client::Client) -> Result<String, DevError> {
    let path = dir.join("cell-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok(t.trim().to_owned());
    }
    let created = admin
        .create_cell(&CreateCell {
            name: "local".to_owned(),
            runtime: Runtime::Process,
        })
        .await
        .map_err(|e| match e.status() {
            Some(409) => DevError::LostCellToken(path.clone()),
            _ => DevError::Cell(e),
        })?;
    write_private(&path, &format!("{}\n", created.token))?;
    Ok(created.token)
}

/// The platform admin token and the master key of this data directory.
struct Keys {
    token: String,
    master_key: String,
}

async fn serve(
    settings: &DevSettings,
    dir: &Path,
    (pg, redis): (&PrivatePostgres, &PrivateRedis),
    Keys { token, master_key }: Keys,
    sandbox: hangar_data_plane::sandbox::Sandbox,
    shutdown: CancellationToken,
) -> Result<(), DevError> {
    ensure_database(pg, "hangar").await?;
    let app = Application::build(ServeSettings {
        database: DatabaseSettings {
            database_url: pg.url("hangar"),
            db_max_connections: 20,
        },
        listen: settings.listen,
        admin_token: SecretString::from(token.clone()),
        master_key: SecretString::from(master_key),
        airflow_versions: vec![hangar_tenants::DEFAULT_AIRFLOW_VERSION.to_owned()],
        cell_ttl_secs: 120,
        bucket: Some(format!("file://{}", dir.join("bucket").display())),
        token_cache_secs: 5,
        metrics_token: None,
        ui_domain: settings.ui_domain.clone(),
        proxy_max_response_bytes: crate::service::airflow::MAX_RESPONSE_BYTES,
        idle_minute_secs: 60,
        bootstrap_cell: None,
        bootstrap_cell_token: None,
        relay_listen: None,
    })
    .await?;
    let addr = app.local_addr().map_err(DevError::Serve)?;
    let url = format!("http://{addr}");
    let dev_json = dir.join("dev.json");
    write_private(
        &dev_json,
        &serde_json::json!({ "url": url, "admin_token": token }).to_string(),
    )?;
    println!("Hangar is running at {url}");
    println!("  platform admin token: {token}");
    println!("  written to {}", dev_json.display());
    println!("  try: HANGAR_URL={url} HANGAR_TOKEN={token} hangar tenant create demo");
    let app_stop = CancellationToken::new();
    let server = tokio::spawn(app.run(app_stop.clone()));

    let admin = hangar_client::Client::new(&url, Some(SecretString::from(token)))
        .map_err(DevError::Cell)?;
    let cell = admin.with_token(cell_token(dir, &admin).await?);
    let platform = Platform::connect(
        &pg.url("postgres"),
        &redis.admin_url(),
        dir,
        &settings.uv,
        Some(Bucket::local(dir.join("bucket"))?),
        sandbox,
    )
    .await?;
    let platform = match settings.task_slots {
        Some(n) => platform.with_task_slots(n),
        None => platform,
    };
    let agent_settings = AgentSettings {
        cell: "local".to_owned(),
        capacity: CellCapacity {
            max_environments: settings.max_environments,
            worker_slots: settings
                .worker_slots
                .unwrap_or_else(hangar_data_plane::autoscaler::machine_worker_slots),
        },
        poll_wait: std::time::Duration::from_secs(25),
        tick: std::time::Duration::from_secs(2),
        on_shutdown: OnShutdown::Stop,
        scale_down_cooldown: std::time::Duration::from_secs(settings.scale_down_cooldown_secs),
        logs: hangar_data_plane::log_ship::ShipSettings {
            retention: std::time::Duration::from_secs(settings.log_retention_days * 86_400),
            ..Default::default()
        },
        worker_slots_updates: None,
        warm_pool: settings.warm_pool,
    };
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(agent::run(
        cell,
        agent_settings,
        platform,
        agent_stop.clone(),
    ));
    println!("Press Ctrl-C to stop.");
    shutdown.cancelled().await;
    // The agent stops the environments' processes first (their data stays), then the API.
    agent_stop.cancel();
    let _ = agent.await;
    app_stop.cancel();
    match server.await {
        Ok(r) => r.map_err(DevError::Serve),
        Err(e) => Err(DevError::Serve(std::io::Error::other(e))),
    }
}

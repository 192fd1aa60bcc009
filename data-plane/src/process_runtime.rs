//! The process runtime: runs an environment as supervised processes on this machine, on the
//! platform's shared Postgres and Redis, each environment isolated by its own database and
//! role, broker user, Python runtime, AIRFLOW_HOME and ports.
//!
//! `reconcile` is idempotent: every step checks or converges (runtime cached by its inputs,
//! template made once, database and broker user "ensure"d, ports kept in the environment's
//! folder, processes applied by spec hash), so running it again after any crash finishes the job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hangar_tenants::api::{Assignment, EnvironmentSecrets};
use hangar_tenants::blueprint::{self, Backends, Layout, Ports};
use hangar_tenants::bucket_layout as layout;
use hangar_tenants::{ComponentStatus, FailedApply, ObservedState};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::autoscaler::{ScaleError, WorkerRuntime};
use crate::broker::{BrokerAdmin, BrokerError, BrokerUser};
use crate::bucket::Bucket;
use crate::cell_runtime::{
    BucketSync, EnvironmentRuntime, Hibernated, Idleness, Runtime, RuntimeFailure,
};
use crate::dag_sync::{DagSync, SyncError, SyncOutcome};
use crate::embedded::free_port;
use crate::metadata_db::{self, EnvDatabase, EnvTasks, MetadataDbAdmin, MetadataDbError};
use crate::runtime::python::{RuntimeCache, RuntimeError};
use crate::sandbox::{Confinement, Sandbox, SandboxError};
use crate::supervisor::{Supervisor, SupervisorError};

/// How long a component gets to stop on SIGTERM before SIGKILL (workers finish their tasks).
pub const STOP_GRACE: Duration = Duration::from_secs(60);
/// The file in an environment's folder that says it hibernates (written by the agent, which
/// owns the folder; the environment cannot write there).
const HIBERNATED_MARKER: &str = "hibernated";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the assignment carries no secrets (environment made before secrets existed)")]
    NoSecrets,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    MetadataDb(#[from] MetadataDbError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    TaskPool(#[from] crate::task_pool::TaskPoolError),
    #[error("failed to prepare {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeFailure for ReconcileError {
    fn category(&self) -> &'static str {
        match self {
            ReconcileError::NoSecrets => "secrets",
            ReconcileError::Runtime(RuntimeError::Resolve { .. }) => "requirements",
            ReconcileError::Runtime(_) => "runtime",
            ReconcileError::MetadataDb(_) => "metadata_db",
            ReconcileError::Broker(_) => "broker",
            ReconcileError::Supervisor(_) => "processes",
            ReconcileError::Sandbox(_) => "isolation",
            ReconcileError::TaskPool(_) => "task_pool",
            ReconcileError::Files { .. } => "files",
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(
            self,
            ReconcileError::Runtime(RuntimeError::Resolve { .. }) | ReconcileError::NoSecrets
        )
    }
}

/// Where the platform's shared services are, for the environments of this machine.
#[derive(Clone)]
pub struct Platform {
    pub postgres_host: String,
    pub postgres_port: u16,
    pub redis_host: String,
    pub redis_port: u16,
    pub metadata: MetadataDbAdmin,
    pub broker: BrokerAdmin,
    pub runtimes: std::sync::Arc<RuntimeCache>,
    /// Environments live in `envs_dir/<environment id>`.
    pub envs_dir: PathBuf,
    /// The platform bucket, if there is one (the environments' DAGs come from it).
    pub bucket: Option<Bucket>,
    /// How environments are kept apart from each other and from the platform.
    pub sandbox: Sandbox,
    /// The cell's pool of task slots (environments with the `hangar` executor).
    pub task_pool: crate::task_pool::TaskPool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("the {what} URL is not valid: it needs a host and a port")]
    Url { what: &'static str },
    #[error(
        "environment users cannot reach {dir}: {blocked} is not searchable by other users \
         (chmod o+x it, or choose another data directory)"
    )]
    Unreachable { dir: PathBuf, blocked: PathBuf },
    #[error("failed to prepare {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    MetadataDb(#[from] MetadataDbError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl Platform {
    /// Connects to the platform's Postgres (as its admin: a superuser, or `CREATEDB` and
    /// `CREATEROLE`) and Redis (as its admin), with the
    /// machine's folders under `data_dir` (`runtimes/`, `envs/`).
    pub async fn connect(
        postgres_admin_url: &secrecy::SecretString,
        redis_admin_url: &secrecy::SecretString,
        data_dir: &Path,
        uv: &Path,
        bucket: Option<Bucket>,
        sandbox: Sandbox,
    ) -> Result<Self, PlatformError> {
        let host_port = |what, url: &secrecy::SecretString| {
            let u = reqwest::Url::parse(url.expose_secret())
                .map_err(|_| PlatformError::Url { what })?;
            Ok::<_, PlatformError>((
                u.host_str().ok_or(PlatformError::Url { what })?.to_owned(),
                u.port().ok_or(PlatformError::Url { what })?,
            ))
        };
        let (postgres_host, postgres_port) = host_port("Postgres", postgres_admin_url)?;
        let (redis_host, redis_port) = host_port("Redis", redis_admin_url)?;
        if sandbox.has_users() {
            reachable_by_everyone(data_dir)?;
        }
        let runtimes = runtime_cache(&sandbox, &data_dir.join("runtimes"), uv);
        Ok(Self {
            postgres_host,
            postgres_port,
            redis_host,
            redis_port,
            metadata: MetadataDbAdmin::connect(postgres_admin_url).await?,
            broker: BrokerAdmin::connect(redis_admin_url).await?,
            runtimes: std::sync::Arc::new(runtimes),
            envs_dir: data_dir.join("envs"),
            bucket,
            sandbox,
            task_pool: crate::task_pool::TaskPool::start(crate::task_pool::machine_task_slots()),
        })
    }

    /// Gives the cell's task pool `slots` task slots (`HANGAR_TASK_SLOTS`) instead of the
    /// machine's default.
    pub fn with_task_slots(mut self, slots: u32) -> Self {
        self.task_pool = crate::task_pool::TaskPool::start(slots);
        self
    }

    /// Puts the environments' brokers behind the agent's broker gateway at `addr` (for a
    /// platform Redis without ACL users: the managed ones): their users become digests the
    /// gateway checks, and they connect to it (on loopback when it listens everywhere).
    pub fn with_broker_gateway(mut self, addr: std::net::SocketAddr) -> Self {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip => ip,
        };
        self.redis_host = ip.to_string();
        self.redis_port = addr.port();
        self.broker = self.broker.through_gateway();
        self
    }

    /// A runtime cache at `root` whose runtimes the environments' users can run.
    pub fn runtime_cache(&self, root: &Path, uv: &Path) -> RuntimeCache {
        runtime_cache(&self.sandbox, root, uv)
    }
}

/// The interpreter runtimes are built on when environments have users of their own: it must
/// be readable by every user (uv's default may be one under root's home, which they cannot
/// enter). `HANGAR_PYTHON` overrides it.
const SHARED_PYTHON: &str = "/usr/bin/python3";

fn runtime_cache(sandbox: &Sandbox, root: &Path, uv: &Path) -> RuntimeCache {
    let cache = RuntimeCache::new(root, uv);
    match std::env::var("HANGAR_PYTHON") {
        Ok(p) if !p.is_empty() => cache.with_python(p),
        _ if sandbox.has_users() && Path::new(SHARED_PYTHON).exists() => {
            cache.with_python(SHARED_PYTHON)
        }
        _ => cache,
    }
}

/// Environments' processes run as other users: the data directory (where their runtimes and
/// homes are) must be searchable by them all the way down; it is made `0711` itself (they may
/// pass through it, not list it), and its `runtimes` readable.
fn reachable_by_everyone(data_dir: &Path) -> Result<(), PlatformError> {
    use std::os::unix::fs::PermissionsExt;
    let prepare = |path: &Path| {
        let path = path.to_owned();
        move |source| PlatformError::Files { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(prepare(data_dir))?;
    let dir = std::fs::canonicalize(data_dir).map_err(prepare(data_dir))?;
    if let Some(blocked) = crate::embedded::unsearchable_ancestor(&dir) {
        return Err(PlatformError::Unreachable { dir, blocked });
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        .map_err(prepare(&dir))?;
    let runtimes = dir.join("runtimes");
    std::fs::create_dir_all(&runtimes).map_err(prepare(&runtimes))?;
    std::fs::set_permissions(&runtimes, std::fs::Permissions::from_mode(0o755))
        .map_err(prepare(&runtimes))?;
    Ok(())
}

fn files(path: &Path) -> impl Fn(std::io::Error) -> ReconcileError + '_ {
    move |source| ReconcileError::Files {
        path: path.to_owned(),
        source,
    }
}

/// One environment on this machine.
pub struct ProcessEnvironment {
    platform: Platform,
    /// The environment's id: its cgroups and user are named after it.
    id: uuid::Uuid,
    home: PathBuf,
    supervisor: Supervisor,
    /// The revision whose processes run now.
    running_revision: Option<i64>,
    /// Where the environment's Airflow CLI commands run, once it was applied.
    cli_target: Option<crate::cli_runner::Target>,
    /// What the running revision's processes were rendered from, so scaling re-renders them
    /// without preparing the runtime, database, broker user and folders again.
    prepared: Option<Prepared>,
    /// Where its api-server answers: `http://127.0.0.1:<port><webserver path>` (no final `/`).
    api_url: Option<String>,
    http: reqwest::Client,
    dag_sync: Option<DagSync>,
    plugin_sync: Option<DagSync>,
    /// The DAG sync's state, as reported.
    sync_status: Option<hangar_tenants::DagSyncStatus>,
    /// `requirements.txt` of the environment's bucket prefix: its ETag and text, as last read.
    bucket_requirements: Option<(Option<String>, String)>,
    /// Celery workers to run, set by the autoscaler (`None`: the spec's `min_workers`).
    workers: Option<u32>,
    /// The autoscaler's view, as reported.
    worker_status: Option<hangar_tenants::WorkerStatus>,
    /// The environment's own database, for task counts.
    tasks: EnvTasks,
    /// How its processes are confined, once prepared.
    confinement: Confinement,
    /// Whether its triggerer runs: only while it has triggers (`None`: as a previous agent
    /// left it, until the first start).
    triggerer: Option<bool>,
    /// When it was last seen to have a trigger.
    triggers_seen: Option<std::time::Instant>,
    /// When its triggerer was last started (its heartbeat counts in Airflow's health check
    /// from [`TRIGGERER_GRACE`] after).
    triggerer_started: Option<std::time::Instant>,
}

/// How long a triggerer started on demand has to heartbeat before Airflow's health check of
/// it counts.
const TRIGGERER_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the triggerer keeps running after the environment's last trigger is gone, so a
/// DAG that defers task after task does not start it for each.
const TRIGGERER_LINGER: std::time::Duration = std::time::Duration::from_secs(60);

/// A revision's prepared inputs to the blueprint.
#[derive(Debug, Clone)]
struct Prepared {
    revision: i64,
    layout: Layout,
    ports: Ports,
    backends: Backends,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SavedPorts {
    api: u16,
    worker_log: u16,
    trigger_log: u16,
}

impl ProcessEnvironment {
    pub fn new(platform: Platform, assignment: &Assignment) -> Self {
        let home = platform.envs_dir.join(assignment.id.simple().to_string());
        let supervisor = Supervisor::new(&home.join("run"), &home.join("components"));
        Self {
            platform,
            supervisor,
            id: assignment.id,
            home,
            running_revision: None,
            api_url: None,
            http: reqwest::Client::new(),
            dag_sync: None,
            plugin_sync: None,
            sync_status: None,
            bucket_requirements: None,
            workers: None,
            worker_status: None,
            tasks: EnvTasks::default(),
            cli_target: None,
            prepared: None,
            confinement: Confinement::default(),
            triggerer: None,
            triggers_seen: None,
            triggerer_started: None,
        }
    }

    /// The URL of the environment's own metadata database, logged in as its own role.
    fn env_db_url(&self, id: uuid::Uuid, secrets: &EnvironmentSecrets) -> secrecy::SecretString {
        EnvDatabase::for_environment(id, secrets.db_password.clone().into()).url(
            &self.platform.postgres_host,
            self.platform.postgres_port,
            self.platform.metadata.tls(),
        )
    }

    /// The environment's ports, chosen once and kept in its folder.
    fn ports(&self) -> Result<Ports, ReconcileError> {
        let path = self.home.join("ports.json");
        if let Some(saved) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<SavedPorts>(&b).ok())
        {
            return Ok(Ports {
                api: saved.api,
                worker_log: saved.worker_log,
                trigger_log: saved.trigger_log,
            });
        }
        let pick = || free_port().map_err(files(&path));
        let saved = SavedPorts {
            api: pick()?,
            worker_log: pick()?,
            trigger_log: pick()?,
        };
        let json = serde_json::to_vec(&saved).unwrap_or_default();
        std::fs::write(&path, json).map_err(files(&path))?;
        Ok(Ports {
            api: saved.api,
            worker_log: saved.worker_log,
            trigger_log: saved.trigger_log,
        })
    }

    /// Brings the environment to its assignment's revision. On failure the previous revision's
    /// processes keep running untouched.
    pub async fn apply(&mut self, a: &Assignment) -> Result<(), ReconcileError> {
        let secrets: &EnvironmentSecrets = a.secrets.as_ref().ok_or(ReconcileError::NoSecrets)?;
        // Applying wakes it.
        let marker = self.home.join(HIBERNATED_MARKER);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(files(&marker)(e));
            }
            _ => {}
        }
        let version = a.spec.airflow_version.as_str();
        let runtime = self
            .platform
            .runtimes
            .ensure(version, &a.spec.requirements)
            .await?;
        let template = metadata_db::template_name(version);
        let airflow = runtime.bin("airflow");
        let scratch = self.platform.envs_dir.join(".template-home");
        self.platform
            .metadata
            .ensure_template(&template, |url| {
                migrate(airflow.clone(), scratch.clone(), url)
            })
            .await?;
        let db = EnvDatabase::for_environment(a.id, secrets.db_password.clone().into());
        self.platform
            .metadata
            .ensure_database(&db, &template)
            .await?;
        let broker = BrokerUser::for_environment(a.id, secrets.broker_password.clone().into());
        self.platform.broker.ensure_user(&broker).await?;

        // Its user, folders and cgroups before anything of it runs (the first DAG sync writes
        // into its home).
        self.confinement = self
            .platform
            .sandbox
            .prepare(
                a.id,
                &self.home,
                &runtime.dir,
                &[self.home.join(blueprint::PASSWORDS_FILE)],
                &a.spec,
            )
            .await?;
        self.supervisor.set_confinement(self.confinement.clone());
        // DAGs and plugins are there before Airflow starts; each folder is its sync's symlink,
        // or a plain folder without a bucket (or until the first sync succeeds).
        // A prepared environment nobody claimed has no bucket prefix of its own.
        if self.platform.bucket.is_some() && !a.warm {
            if let Err(e) = self.sync_bucket(a).await {
                tracing::warn!(error = %e, "bucket sync before start failed; starting without");
            }
        }
        for dir in [self.home.join("dags"), self.home.join("plugins")] {
            if std::fs::metadata(&dir).is_err() {
                std::fs::create_dir_all(&dir).map_err(files(&dir))?;
            }
        }
        let ports = self.ports()?;
        let layout = Layout {
            home: self.home.clone(),
            runtime: runtime.dir.clone(),
            url_path: a.airflow_path(),
        };
        let backends = Backends {
            sql_alchemy_conn: db
                .sqlalchemy_url(
                    &self.platform.postgres_host,
                    self.platform.postgres_port,
                    self.platform.metadata.tls(),
                )
                .expose_secret()
                .to_owned(),
            broker_url: broker
                .broker_url(
                    &self.platform.redis_host,
                    self.platform.redis_port,
                    self.platform.broker.tls,
                )
                .expose_secret()
                .to_owned(),
            broker_key_prefix: broker.key_prefix.clone(),
        };
        let prepared = Prepared {
            revision: a.revision,
            layout,
            ports,
            backends,
        };
        self.start(a, secrets, &prepared).await?;
        self.prepared = Some(prepared);
        Ok(())
    }

    /// Renders the environment's processes from prepared inputs and makes the supervisor run
    /// them (with the autoscaler's worker count).
    async fn start(
        &mut self,
        a: &Assignment,
        secrets: &EnvironmentSecrets,
        prepared: &Prepared,
    ) -> Result<(), ReconcileError> {
        let Prepared {
            layout,
            ports,
            backends,
            ..
        } = prepared;
        let workers = self.workers(&a.spec);
        self.workers = Some(workers);
        let mut bp = blueprint::blueprint(&a.spec, secrets, layout, *ports, backends, workers);
        // The triggerer runs only while the environment has triggers (see `on_demand`).
        let triggerer = self
            .triggerer
            .unwrap_or_else(|| self.supervisor.live_pid_files("triggerer") > 0);
        self.triggerer = Some(triggerer);
        if !triggerer {
            self.triggerer_started = None;
        } else if self.triggerer_started.is_none() {
            self.triggerer_started = Some(std::time::Instant::now());
        }
        if !triggerer {
            bp.processes
                .retain(|p| p.kind != hangar_tenants::blueprint::ComponentKind::Triggerer);
        }
        // Every component loads plugins: a new plugins generation restarts them (workers by
        // retiring, so running tasks finish).
        // No plugins at all counts as one state, synced or not, so a prepared environment's
        // first sync after it was claimed restarts nothing.
        let plugins = self
            .plugin_sync
            .as_ref()
            .filter(|p| !p.is_empty())
            .map_or(0, DagSync::generation);
        // The files are part of what a process was started from: a change restarts it.
        let digest = files_digest(&bp.files);
        for p in &mut bp.processes {
            p.env
                .insert("HANGAR_PLUGINS_GENERATION".to_owned(), plugins.to_string());
            p.env
                .insert("HANGAR_FILES_DIGEST".to_owned(), digest.clone());
        }
        for (path, contents) in &bp.files {
            write_private(path, contents, self.confinement.owner())?;
        }
        self.supervisor.apply(&bp.processes, STOP_GRACE).await?;
        self.join_task_pool(a, &bp, layout)?;
        self.running_revision = Some(a.revision);
        self.cli_target = bp
            .processes
            .iter()
            .find(|p| p.kind == hangar_tenants::blueprint::ComponentKind::Scheduler)
            .and_then(|p| {
                Some(crate::cli_runner::Target::Process(
                    crate::cli_runner::ProcessTarget {
                        program: p.argv.first()?.into(),
                        env: p.env.clone(),
                        cwd: layout.dags(),
                        confinement: self.confinement.clone(),
                    },
                ))
            });
        self.api_url = Some(format!(
            "http://127.0.0.1:{}{}",
            ports.api,
            layout.url_path.trim_end_matches('/')
        ));
        Ok(())
    }

    /// Puts an environment with the `hangar` executor into the cell's task pool, with what its
    /// tasks run with: its runtime, its Airflow settings without secrets, its confinement;
    /// takes any other out.
    fn join_task_pool(
        &self,
        a: &Assignment,
        bp: &blueprint::Blueprint,
        layout: &Layout,
    ) -> Result<(), ReconcileError> {
        if a.spec.executor != hangar_tenants::Executor::Hangar {
            self.platform.task_pool.detach(a.id);
            return Ok(());
        }
        let Some(env) = &bp.task_env else {
            return Ok(());
        };
        // Of its folder a task reads its DAGs and plugins (each a symlink to a generation of
        // its sync), its settings without secrets, and its own workload (added at its start).
        let (dags, plugins) = (layout.dags(), layout.plugins());
        let readable = vec![
            crate::dag_sync::generations_of(&dags),
            crate::dag_sync::generations_of(&plugins),
            dags,
            plugins,
            layout.task_config_file(),
        ];
        let target = crate::task_pool::EnvTarget {
            id: a.id,
            home: self.home.clone(),
            python: layout.runtime.join("bin").join("python"),
            env: env.clone(),
            readable,
            confinement: self.confinement.clone(),
            socket: layout.task_pool_socket(),
            log_file: self.supervisor.log_file("tasks"),
            quota: crate::task_pool::Quota::for_environment(&a.spec),
            task_memory_mib: crate::task_pool::task_memory_mib(&a.spec),
        };
        self.platform
            .task_pool
            .attach(target)
            .map_err(ReconcileError::TaskPool)
    }

    /// The workers to run: the autoscaler's number within the spec's bounds; before its first
    /// decision, as many as a previous agent left running (the autoscaler then drains any
    /// surplus after the cooldown instead of at once).
    fn workers(&self, spec: &hangar_tenants::EnvironmentSpec) -> u32 {
        self.workers
            .unwrap_or_else(|| {
                u32::try_from(self.supervisor.live_pid_files("worker-")).unwrap_or(u32::MAX)
            })
            .clamp(spec.min_workers, spec.max_workers.max(spec.min_workers))
    }

    /// Where the environment's Airflow CLI commands run (after its first apply).
    /// The environment's home on this machine (its files, its logs).
    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn cli_target(&self) -> Option<&crate::cli_runner::Target> {
        self.cli_target.as_ref()
    }

    /// The log shipper reads the component logs and Airflow's task logs under its home.
    pub fn log_source(&self, a: &Assignment) -> crate::log_ship::LogSource {
        crate::log_ship::LogSource {
            tenant: a.tenant.clone(),
            name: a.name.clone(),
            home: self.home.clone(),
        }
    }

    /// One round of syncing from the environment's bucket prefix: DAGs, plugins and
    /// `requirements.txt` (reported; the control plane turns a change into an update).
    pub async fn sync_bucket(&mut self, a: &Assignment) -> Result<BucketSync, SyncError> {
        let Some(bucket) = self.platform.bucket.clone() else {
            return Ok(BucketSync::default());
        };
        let dags = self.sync_dags(a).await?;
        let plugins = self.plugin_sync.get_or_insert_with(|| {
            let prefix = bucket.path(&layout::plugins_prefix(&a.tenant, &a.name));
            DagSync::folder(bucket.clone(), prefix, &self.home, "plugins", false)
        });
        let before = plugins.generation();
        plugins.sync().await?;
        let plugins_changed = plugins.generation() != before;
        bucket
            .read_requirements(&a.tenant, &a.name, &mut self.bucket_requirements)
            .await;
        Ok(BucketSync {
            dags,
            plugins_changed,
        })
    }

    /// One round of the DAG sync from the environment's `dags/` prefix of the bucket (see
    /// [`DagSync`]); new and changed DAG files are then parsed at once rather than at Airflow's
    /// next scan. Without a bucket there is nothing to do.
    pub async fn sync_dags(&mut self, a: &Assignment) -> Result<SyncOutcome, SyncError> {
        let Some(bucket) = &self.platform.bucket else {
            return Ok(SyncOutcome::default());
        };
        let regexp = a
            .spec
            .airflow_config_overrides
            .get("core.dag_ignore_file_syntax")
            .is_some_and(|v| v.eq_ignore_ascii_case("regexp"));
        let sync = self.dag_sync.get_or_insert_with(|| {
            DagSync::new(bucket.clone(), &a.tenant, &a.name, &self.home, !regexp)
        });
        let result = sync.sync().await;
        let status = self.sync_status.get_or_insert_with(Default::default);
        match &result {
            Ok(out) => {
                status.error = None;
                status.files = sync_file_count(&self.home.join("dags"));
                status.refused = out
                    .refused
                    .iter()
                    .map(|(key, reason)| hangar_tenants::RefusedObject {
                        key: key.clone(),
                        reason: reason.clone(),
                    })
                    .collect();
                if out.switched && self.api_url.is_some() {
                    self.request_parse(a, &out.downloaded).await;
                }
            }
            Err(e) => status.error = Some(format!("{e}{}", crate::agent::source_chain(e))),
        }
        result
    }

    /// Asks the environment's dag-processor to parse these files next (Airflow's priority
    /// parsing requests, as its `parseDagFile` API makes them), so a new or changed DAG shows up
    /// in seconds, not at the next periodic scan.
    async fn request_parse(&self, a: &Assignment, files: &[String]) {
        let Some(secrets) = a.secrets.as_ref() else {
            return;
        };
        let url = self.env_db_url(a.id, secrets);
        if let Err(e) = crate::dag_sync::request_parse(&url, files).await {
            tracing::warn!(error = %e, "failed to ask Airflow to parse the synced DAGs");
        }
    }

    /// The environment's state now: its processes, and whether its Airflow answers healthy.
    pub async fn observe(&mut self, failed: Option<FailedApply>) -> ObservedState {
        if self.hibernated().is_some() {
            return ObservedState {
                revision: self.running_revision,
                failed,
                dag_sync: self.sync_status.clone(),
                bucket_requirements: self.bucket_requirements.as_ref().map(|(_, t)| t.clone()),
                hibernated: true,
                ..ObservedState::default()
            };
        }
        let mut components = self.supervisor.tick();
        let mut endpoints = std::collections::BTreeMap::new();
        if let Some(url) = self.api_url.clone() {
            // A triggerer started on demand is checked once it has had time to heartbeat.
            let triggerer = self.triggerer == Some(true)
                && self
                    .triggerer_started
                    .is_some_and(|at| at.elapsed() >= TRIGGERER_GRACE);
            components.push(crate::health::airflow_health(&self.http, &url, triggerer).await);
            endpoints.insert("api".to_owned(), url);
        }
        // With the `hangar` executor: its tasks in the cell's task pool, and no workers.
        let workers = match self.platform.task_pool.environment_usage(self.id) {
            Some((queued, running)) => Some(hangar_tenants::WorkerStatus {
                queued,
                running,
                ..hangar_tenants::WorkerStatus::default()
            }),
            None => self.worker_status.clone(),
        };
        ObservedState {
            revision: self.running_revision,
            components,
            failed,
            deleted: false,
            endpoints,
            dag_sync: self.sync_status.clone(),
            bucket_requirements: self.bucket_requirements.as_ref().map(|(_, t)| t.clone()),
            workers,
            reconcile: None,
            hibernated: false,
            idle_since: None,
            next_run: None,
            log_disk: None,
        }
    }

    /// Stops every process of the environment (its task runners included, by its cgroup and
    /// user) and marks it hibernated in its folder, so that the next agent leaves it stopped
    /// too; its database, broker user, files and secrets stay. Applying it wakes it.
    pub async fn hibernate(
        &mut self,
        wake_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), ReconcileError> {
        self.platform.task_pool.detach(self.id);
        self.supervisor.stop_all(STOP_GRACE).await;
        self.platform.sandbox.kill_all(self.id).await;
        self.api_url = None;
        self.prepared = None;
        self.workers = None;
        // Woken, it starts without a triggerer until it has a trigger again.
        self.triggerer = Some(false);
        self.triggers_seen = None;
        self.triggerer_started = None;
        let marker = self.home.join(HIBERNATED_MARKER);
        let state = serde_json::to_vec(&Hibernated { wake_at }).unwrap_or_default();
        std::fs::write(&marker, state).map_err(files(&marker))
    }

    /// Whether the environment hibernates, and when it is to wake (its folder says so; a
    /// marker it cannot read still says it sleeps, with no wake-up of its own).
    pub fn hibernated(&self) -> Option<Hibernated> {
        let state = std::fs::read(self.home.join(HIBERNATED_MARKER)).ok()?;
        Some(serde_json::from_slice(&state).unwrap_or_default())
    }

    /// Whether nothing of the environment is to run, and when its next scheduled run is due
    /// (its own database says).
    pub async fn idle(&mut self, a: &Assignment) -> Result<Idleness, ScaleError> {
        let Some(secrets) = a.secrets.as_ref() else {
            return Ok(Idleness {
                idle: true,
                next_run: None,
            });
        };
        let url = self.env_db_url(a.id, secrets);
        Ok(Idleness {
            idle: self.tasks.idle(&url).await?,
            next_run: self.tasks.next_run_due(&url).await?,
        })
    }

    /// Runs the triggerer while the environment has triggers (a deferred task, an asset
    /// watcher, a callback) and for [`TRIGGERER_LINGER`] after, and stops it otherwise: an
    /// idle environment without one holds about 200 MB less. A task that defers waits for
    /// the triggerer to start (a few seconds) before its trigger fires.
    pub async fn on_demand(&mut self, a: &Assignment) {
        let Some(prepared) = self.prepared.clone().filter(|p| p.revision == a.revision) else {
            return;
        };
        let Some(secrets) = a.secrets.as_ref() else {
            return;
        };
        let url = self.env_db_url(a.id, secrets);
        let has = match self.tasks.has_triggers(&url).await {
            Ok(has) => has,
            Err(e) => {
                tracing::debug!(error = %e, "failed to read whether the environment has triggers");
                return;
            }
        };
        if has {
            self.triggers_seen = Some(std::time::Instant::now());
        }
        let wanted = self
            .triggers_seen
            .is_some_and(|at| at.elapsed() < TRIGGERER_LINGER);
        if self.triggerer == Some(wanted) {
            return;
        }
        tracing::info!(
            triggerer = wanted,
            "the environment's triggers changed; starting or stopping its triggerer"
        );
        self.triggerer = Some(wanted);
        if let Err(e) = self.start(a, secrets, &prepared).await {
            tracing::warn!(error = %e, "failed to start or stop the triggerer");
        }
    }

    /// Removes everything of the environment: processes, database and role, broker user and
    /// keys, files. Idempotent.
    pub async fn delete(&mut self, a: &Assignment) -> Result<(), ReconcileError> {
        self.platform.task_pool.detach(a.id);
        self.supervisor.stop_all(STOP_GRACE).await;
        let password = a
            .secrets
            .as_ref()
            .map(|s| s.db_password.clone())
            .unwrap_or_default();
        self.platform
            .metadata
            .drop_database(&EnvDatabase::for_environment(a.id, password.into()))
            .await?;
        let broker = BrokerUser::for_environment(a.id, String::new().into());
        self.platform.broker.remove_user(&broker).await?;
        if self.home.exists() {
            std::fs::remove_dir_all(&self.home).map_err(files(&self.home))?;
        }
        self.platform.sandbox.remove(a.id).await?;
        self.running_revision = None;
        self.api_url = None;
        Ok(())
    }

    /// Stops supervising without stopping the processes (agent shutdown that should leave the
    /// environment running for the next agent).
    pub fn detach(&mut self) {
        self.platform.task_pool.detach(self.id);
        self.supervisor.detach();
    }

    /// Stops the processes, keeping data (a clean stop of the whole machine), and returns the
    /// state to report: every component stopped, so the environment does not look available
    /// while nothing runs.
    pub async fn stop(&mut self) -> ObservedState {
        if self.hibernated().is_some() {
            return self.observe(None).await;
        }
        let components = self
            .supervisor
            .statuses()
            .into_iter()
            .filter(|c| self.supervisor.pid(&c.name).is_some() || !c.healthy)
            .map(|c| ComponentStatus {
                name: c.name,
                healthy: false,
                message: Some(
                    "stopped with its machine's agent; it starts again with the agent".to_owned(),
                ),
            })
            .collect();
        self.platform.task_pool.detach(self.id);
        self.supervisor.stop_all(STOP_GRACE).await;
        // Task runners have process groups of their own, out of reach of the supervisor's
        // group kill: whatever of the environment still runs is killed by its cgroup and user.
        self.platform.sandbox.kill_all(self.id).await;
        ObservedState {
            revision: self.running_revision,
            components,
            failed: None,
            deleted: false,
            endpoints: Default::default(),
            dag_sync: None,
            bucket_requirements: None,
            workers: None,
            reconcile: None,
            hibernated: false,
            idle_since: None,
            next_run: None,
            log_disk: None,
        }
    }
}

/// A short digest of the blueprint's files (secrets included, so it never leaves the agent's
/// processes' own environment as more than 64 bits of a hash).
fn files_digest(files: &[(PathBuf, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (path, contents) in files {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(contents.as_bytes());
        h.update([0]);
    }
    crate::supervisor::short_hex(&h.finalize())
}

/// Writes a file only `owner` (the environment's user; else the agent's) may read, replacing
/// it whole: written beside it and renamed, so no reader sees half of it and no link the
/// environment's user might have left at its name is followed.
fn write_private(
    path: &Path,
    contents: &str,
    owner: Option<(u32, u32)>,
) -> Result<(), ReconcileError> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    // Unchanged: keep the file (and its inode, which running processes' Landlock rules name).
    let same_owner = |m: &std::fs::Metadata| owner.is_none_or(|(uid, _)| m.uid() == uid);
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && same_owner(&m))
        && std::fs::read(path).is_ok_and(|b| b == contents.as_bytes())
    {
        return Ok(());
    }
    let tmp = path.with_extension("hangar-new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(files(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(files(&tmp))?;
    crate::sandbox::own(&tmp, owner, 0o600)?;
    std::fs::rename(&tmp, path).map_err(files(path))
}

/// Regular files under `root` (following the dags symlink), byte-code caches aside.
fn sync_file_count(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() && entry.file_name() != "__pycache__" => {
                    stack.push(entry.path())
                }
                Ok(t) if t.is_file() => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// `airflow db migrate` into a template database.
async fn migrate(
    airflow: PathBuf,
    home: PathBuf,
    url: secrecy::SecretString,
) -> Result<(), String> {
    std::fs::create_dir_all(&home)
        .map_err(|e| format!("failed to create {}: {e}", home.display()))?;
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(&airflow)
            .args(["db", "migrate"])
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", url.expose_secret())
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .output(),
    )
    .await
    .map_err(|_| "airflow db migrate took longer than 10 minutes".to_owned())?
    .map_err(|e| format!("failed to run {}: {e}", airflow.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

impl Runtime for Platform {
    type Environment = ProcessEnvironment;

    fn environment(&self, assignment: &Assignment) -> ProcessEnvironment {
        ProcessEnvironment::new(self.clone(), assignment)
    }

    fn isolation(&self) -> hangar_tenants::api::CellIsolation {
        self.sandbox.report()
    }

    fn bucket(&self) -> Option<&Bucket> {
        self.bucket.as_ref()
    }
}

/// The trait's steps are the inherent methods above (callers outside the agent use them
/// directly).
impl EnvironmentRuntime for ProcessEnvironment {
    type Error = ReconcileError;

    async fn apply(&mut self, a: &Assignment) -> Result<(), ReconcileError> {
        ProcessEnvironment::apply(self, a).await
    }

    async fn sync_bucket(&mut self, a: &Assignment) -> Result<BucketSync, SyncError> {
        ProcessEnvironment::sync_bucket(self, a).await
    }

    async fn observe(&mut self, failed: Option<FailedApply>) -> ObservedState {
        ProcessEnvironment::observe(self, failed).await
    }

    async fn delete(&mut self, a: &Assignment) -> Result<(), ReconcileError> {
        ProcessEnvironment::delete(self, a).await
    }

    fn detach(&mut self) {
        ProcessEnvironment::detach(self);
    }

    async fn stop(&mut self) -> ObservedState {
        ProcessEnvironment::stop(self).await
    }

    async fn on_demand(&mut self, a: &Assignment) {
        ProcessEnvironment::on_demand(self, a).await
    }

    async fn idle(&mut self, a: &Assignment) -> Result<Idleness, ScaleError> {
        ProcessEnvironment::idle(self, a).await
    }

    async fn hibernate(
        &mut self,
        wake_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), ReconcileError> {
        ProcessEnvironment::hibernate(self, wake_at).await
    }

    fn hibernated(&self) -> Option<Hibernated> {
        ProcessEnvironment::hibernated(self)
    }

    fn log_source(&self, a: &Assignment) -> Option<crate::log_ship::LogSource> {
        Some(ProcessEnvironment::log_source(self, a))
    }

    fn cli_target(&self) -> Option<crate::cli_runner::Target> {
        ProcessEnvironment::cli_target(self).cloned()
    }
}

impl WorkerRuntime for ProcessEnvironment {
    /// Queued and running task instances from the environment's own database (the signal
    /// MWAA and the Airflow Helm chart scale on).
    async fn task_counts(&mut self, a: &Assignment) -> Result<(u32, u32), ScaleError> {
        let Some(secrets) = a.secrets.as_ref() else {
            return Ok((0, 0));
        };
        let url = self.env_db_url(a.id, secrets);
        Ok(self.tasks.counts(&url).await?)
    }

    fn current_workers(&self) -> u32 {
        self.workers.unwrap_or(0)
    }

    fn draining_workers(&self) -> u32 {
        u32::try_from(self.supervisor.draining_pids().len()).unwrap_or(u32::MAX)
    }

    /// Runs the applied revision with `n` workers: the supervisor starts the new ones and
    /// retires the surplus (warm shutdown, tracked until they exit).
    async fn scale_to(&mut self, a: &Assignment, n: u32) -> Result<(), ScaleError> {
        self.workers = Some(n);
        let secrets = a.secrets.as_ref().ok_or(ReconcileError::NoSecrets)?;
        match self.prepared.clone() {
            Some(p) if p.revision == a.revision => Ok(self.start(a, secrets, &p).await?),
            _ => Ok(self.apply(a).await?),
        }
    }

    fn set_worker_status(&mut self, status: hangar_tenants::WorkerStatus) {
        self.worker_status = Some(status);
    }
}

//! The test harness: one private Postgres per test process (or the one named by
//! `HANGAR_TEST_DATABASE_URL`), a fresh database per test, and `spawn_app()` running the real
//! control plane on a free port. Also a fake data-plane agent that speaks the real cell API.

pub mod browser;
pub mod dev;
pub mod emulators;
pub mod fake_airflow;
pub mod otlp;
pub mod portal;
pub mod runs;
pub mod terraform;

use std::path::PathBuf;
use std::time::Duration;

use hangar_client::Client;
use hangar_control_plane::settings::{DatabaseSettings, ServeSettings};
use hangar_control_plane::startup::Application;
use hangar_data_plane::embedded::PrivatePostgres;
use hangar_data_plane::tunnel::TunnelEnvironments;
use hangar_tenants::api::{
    Assignments, CellCapacity, CellIsolation, CreateCell, CreateEnvironment, CreateTenant,
    CreateToken, RegisterCell, Role, Runtime,
};
use hangar_tenants::ObservedState;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-platform-admin-token-0123456789";
/// The test control plane's `HANGAR_METRICS_TOKEN`.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";
/// How long a test waits for a cell's tunnel to come up or go down: the agent reconnects
/// within about a second, after a minute at most (its longest backoff).
pub const TUNNEL_WAIT: Duration = Duration::from_secs(90);

/// The server every test of this process creates its databases on: a superuser URL of its
/// `postgres` database.
pub async fn server_url() -> anyhow::Result<String> {
    static SERVER: OnceCell<String> = OnceCell::const_new();
    SERVER
        .get_or_try_init(|| async {
            if let Ok(url) = std::env::var("HANGAR_TEST_DATABASE_URL") {
                return Ok(url);
            }
            let dir = PathBuf::from(format!(
                "/tmp/hangar-test-pg-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            let pg = PrivatePostgres::start(&dir).await?;
            pg.stop_and_remove_after(std::process::id())?;
            Ok(pg.url("postgres").expose_secret().to_owned())
        })
        .await
        .cloned()
}

/// A new, empty database on the test server; returns its URL.
pub async fn fresh_database() -> anyhow::Result<String> {
    let server = server_url().await?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, _) = server
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("database URL without a path: {server}"))?;
    Ok(format!("{base}/{name}"))
}

/// A control plane running on a free port against its own fresh database.
pub struct TestApp {
    pub address: String,
    pub database_url: String,
    /// A client holding the platform admin token.
    pub admin: Client,
    /// Where its relay for the other replicas listens, if it does.
    pub relay: Option<std::net::SocketAddr>,
    master_key: String,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// With `HANGAR_TEST_LOG` set (a `tracing` filter such as `hangar=debug,hyper=debug`), the
/// control plane's and the agent's logs go to the test's output, shown when a test fails.
fn test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let Ok(filter) = std::env::var("HANGAR_TEST_LOG") else {
        return;
    };
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
    test_logging();
    let database_url = match fresh_database().await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("failed to get a test database: {e:#}");
            std::process::exit(1)
        }
    };
    let master_key = hangar_control_plane::secrets::MasterKey::generate();
    spawn_app_on(database_url, master_key, configure).await
}

async fn spawn_app_on(
    database_url: String,
    master_key: String,
    configure: impl FnOnce(&mut ServeSettings),
) -> TestApp {
    let mut settings = ServeSettings {
        database: DatabaseSettings {
            database_url: SecretString::from(database_url.clone()),
            db_max_connections: 10,
        },
        listen: ([127, 0, 0, 1], 0).into(),
        admin_token: SecretString::from(ADMIN_TOKEN.to_owned()),
        master_key: SecretString::from(master_key.clone()),
        airflow_versions: vec!["3.3.2".to_owned()],
        cell_ttl_secs: 120,
        bucket: None,
        token_cache_secs: 5,
        metrics_token: Some(SecretString::from(METRICS_TOKEN.to_owned())),
        ui_domain: None,
        proxy_max_response_bytes: hangar_control_plane::service::airflow::MAX_RESPONSE_BYTES,
        idle_minute_secs: 60,
        bootstrap_cell: None,
        bootstrap_cell_token: None,
        relay_listen: None,
    };
    configure(&mut settings);
    let database_url = settings.database.database_url.expose_secret().to_owned();
    let app = match Application::build(settings).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("failed to start the control plane: {e}");
            std::process::exit(1)
        }
    };
    let port = app.local_addr().map(|a| a.port()).unwrap_or_default();
    let address = format!("http://127.0.0.1:{port}");
    let relay = app.relay_addr();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let admin = client(&address, Some(ADMIN_TOKEN));
    TestApp {
        address,
        database_url,
        admin,
        relay,
        master_key,
        shutdown,
    }
}

pub fn client(address: &str, token: Option<&str>) -> Client {
    match Client::new(address, token.map(|t| SecretString::from(t.to_owned()))) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bad test address {address}: {e}");
            std::process::exit(1)
        }
    }
}

impl TestApp {
    /// Another replica of this control plane, as `configure` sets it: the same database and
    /// master key, a port of its own.
    pub async fn replica(&self, configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        spawn_app_on(
            self.database_url.clone(),
            self.master_key.clone(),
            configure,
        )
        .await
    }

    /// `hangar serve` as a process of its own, a replica of this control plane (its database
    /// and master key) on `listen` with the platform bucket `bucket_url`; its log goes to `log`.
    /// A test kills it with `Child::kill` (SIGKILL) and starts it again on the same address.
    pub fn serve_process(
        &self,
        listen: std::net::SocketAddr,
        bucket_url: &str,
        log: &std::path::Path,
    ) -> std::io::Result<std::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        std::process::Command::new(hangar_bin())
            .arg("serve")
            .env("HANGAR_DATABASE_URL", &self.database_url)
            .env("HANGAR_MASTER_KEY", &self.master_key)
            .env("HANGAR_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("HANGAR_METRICS_TOKEN", METRICS_TOKEN)
            .env("HANGAR_LISTEN", listen.to_string())
            .env("HANGAR_BUCKET_URL", bucket_url)
            .env("HANGAR_AIRFLOW_VERSIONS", "3.3.2")
            .env("HANGAR_DB_MAX_CONNECTIONS", "10")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
    }

    /// Stops this control plane (as dropping it does).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the control plane sees `cell`'s tunnel up (or down), failing the test after
    /// `TUNNEL_WAIT`.
    #[allow(clippy::panic, reason = "a test assertion")]
    pub async fn wait_for_tunnel(&self, cell: &str, up: bool) {
        let start = std::time::Instant::now();
        loop {
            let cells = self.admin.list_cells().await.unwrap_or_else(|e| {
                panic!("listing cells: {e}");
            });
            let now = cells
                .cells
                .iter()
                .find(|c| c.name == cell)
                .is_some_and(|c| c.tunnel_connected);
            if now == up {
                return;
            }
            assert!(
                start.elapsed() < TUNNEL_WAIT,
                "cell {cell}'s tunnel is not {} after {:?}",
                if up { "up" } else { "down" },
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/metrics`, scraped with the metrics token.
    #[allow(clippy::panic, reason = "a test assertion")]
    pub async fn metrics(&self) -> String {
        let r = reqwest::Client::new()
            .get(format!("{}/metrics", self.address))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e:?}"));
        assert_eq!(r.status(), 200, "GET /metrics");
        r.text().await.unwrap_or_default()
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Client {
        client(&self.address, None)
    }

    /// Creates a tenant and returns a client holding a token of `role` for it.
    pub async fn tenant_with_role(&self, tenant: &str, role: Role) -> anyhow::Result<Client> {
        Ok(self
            .admin
            .with_token(self.token_with_role(tenant, role).await?))
    }

    /// Creates a tenant and returns a token of `role` for it.
    pub async fn token_with_role(&self, tenant: &str, role: Role) -> anyhow::Result<String> {
        if self.admin.get_tenant(tenant).await.is_err() {
            self.admin
                .create_tenant(&CreateTenant {
                    name: tenant.to_owned(),
                    display_name: None,
                })
                .await?;
        }
        let t = self
            .admin
            .create_token(
                tenant,
                &CreateToken {
                    name: format!("{}-token", role.as_str()),
                    role,
                },
            )
            .await?;
        Ok(t.token)
    }

    /// Creates a cell and returns an agent for it, registered with room for `max_environments`
    /// (and no isolation report).
    pub async fn registered_agent(
        &self,
        cell: &str,
        max_environments: u32,
    ) -> anyhow::Result<FakeAgent> {
        self.registered_agent_reporting(cell, max_environments, None)
            .await
    }

    /// As [`Self::registered_agent`], with an agent that reports `isolation` when it registers.
    pub async fn registered_agent_reporting(
        &self,
        cell: &str,
        max_environments: u32,
        isolation: Option<CellIsolation>,
    ) -> anyhow::Result<FakeAgent> {
        let created = self
            .admin
            .create_cell(&CreateCell {
                name: cell.to_owned(),
                runtime: Runtime::Process,
            })
            .await?;
        let agent = FakeAgent {
            cell: cell.to_owned(),
            client: self.admin.with_token(created.token),
            cursor: 0,
            tunnel: TunnelEnvironments::default(),
            tunnel_stop: CancellationToken::new(),
        };
        agent.register(max_environments, isolation).await?;
        Ok(agent)
    }
}

/// A data-plane agent that runs nothing: it talks to the real cell API as a real agent does,
/// and reports whatever observed state a test tells it to. Its tunnel is the real agent's
/// (`hangar_data_plane::tunnel`), forwarding to whatever a test puts in `tunnel`.
pub struct FakeAgent {
    pub cell: String,
    pub client: Client,
    pub cursor: i64,
    /// Where the cell's tunnel forwards each environment's Airflow requests.
    pub tunnel: TunnelEnvironments,
    tunnel_stop: CancellationToken,
}

impl FakeAgent {
    /// Keeps the cell's tunnel open, as the real agent does (reconnecting when it ends), until
    /// [`Self::close_tunnel`] or the end of the test.
    pub fn open_tunnel(&mut self) {
        self.tunnel_stop.cancel();
        self.tunnel_stop = CancellationToken::new();
        tokio::spawn(hangar_data_plane::tunnel::run(
            self.client.clone(),
            self.cell.clone(),
            self.tunnel.clone(),
            self.tunnel_stop.clone(),
        ));
    }

    /// Closes the cell's tunnel for good.
    pub fn close_tunnel(&self) {
        self.tunnel_stop.cancel();
    }

    /// Reports `env` running (`healthy(1)`) with its api-server at `api`, where the cell's
    /// tunnel forwards its requests.
    pub async fn serve_airflow(&self, env: uuid::Uuid, api: &str) -> anyhow::Result<()> {
        self.tunnel.set(env, api);
        let mut observed = healthy(1);
        observed.endpoints.insert("api".into(), api.into());
        self.report(env, &observed).await?;
        Ok(())
    }

    /// Registers (again) with room for `max_environments`, reporting `isolation`.
    pub async fn register(
        &self,
        max_environments: u32,
        isolation: Option<CellIsolation>,
    ) -> Result<hangar_tenants::api::Cell, hangar_client::ClientError> {
        self.register_warm(max_environments, isolation, 0).await
    }

    /// Registers (again) as [`Self::register`], keeping `warm_pool` environments prepared.
    pub async fn register_warm(
        &self,
        max_environments: u32,
        isolation: Option<CellIsolation>,
        warm_pool: u32,
    ) -> Result<hangar_tenants::api::Cell, hangar_client::ClientError> {
        self.client
            .register_cell(
                &self.cell,
                &RegisterCell {
                    capacity: CellCapacity {
                        max_environments,
                        worker_slots: 8,
                    },
                    agent_version: "fake-agent/1".to_owned(),
                    isolation,
                    warm_pool,
                    agent_panics: 0,
                },
            )
            .await
    }

    /// Long-polls for changes after the last cursor, up to `wait`.
    pub async fn poll(&mut self, wait: Duration) -> anyhow::Result<Assignments> {
        let a = self
            .client
            .assignments(&self.cell, self.cursor, wait)
            .await?;
        self.cursor = a.cursor;
        Ok(a)
    }

    pub async fn report(
        &self,
        env: uuid::Uuid,
        observed: &ObservedState,
    ) -> anyhow::Result<hangar_tenants::api::Environment> {
        Ok(self
            .client
            .report_observed(&self.cell, env, observed)
            .await?)
    }
}

/// An answer that must be a problem document (`application/problem+json`): its status and the
/// problem.
#[allow(clippy::panic, reason = "a test assertion")]
pub async fn problem_of(r: reqwest::Response) -> (u16, hangar_tenants::api::Problem) {
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{} answered {status}",
        r.url()
    );
    let problem = r
        .json()
        .await
        .unwrap_or_else(|e| panic!("a problem document: {e:?}"));
    (status, problem)
}

/// Creates the tenant's environment `name` with every default; returns its id.
pub async fn create_env(c: &Client, tenant: &str, name: &str) -> anyhow::Result<uuid::Uuid> {
    let req = CreateEnvironment {
        name: name.to_owned(),
        ..Default::default()
    };
    Ok(c.create_environment(tenant, &req, None)
        .await?
        .environment
        .id)
}

/// A control plane with tenant `data`, an editor's client, and its environment `etl` running
/// on cell `local`, whose (fake) agent is returned with the environment's id; the agent's
/// tunnel is up, forwarding to nothing yet (`FakeAgent::serve_airflow`).
pub async fn running_etl() -> anyhow::Result<(TestApp, Client, FakeAgent, uuid::Uuid)> {
    running_etl_with(|_| {}).await
}

/// `running_etl` with the control plane's settings changed by `configure`.
pub async fn running_etl_with(
    configure: impl FnOnce(&mut ServeSettings),
) -> anyhow::Result<(TestApp, Client, FakeAgent, uuid::Uuid)> {
    let app = spawn_app_with(configure).await;
    let editor = app.tenant_with_role("data", Role::Editor).await?;
    let mut agent = app.registered_agent("local", 10).await?;
    let id = create_env(&editor, "data", "etl").await?;
    agent.poll(Duration::from_secs(5)).await?;
    agent.report(id, &healthy(1)).await?;
    agent.open_tunnel();
    app.wait_for_tunnel("local", true).await;
    Ok((app, editor, agent, id))
}

/// Observed state of `revision` running with every listed component healthy.
pub fn healthy(revision: i64) -> ObservedState {
    ObservedState {
        revision: Some(revision),
        components: ["api-server", "scheduler-0", "dag-processor", "triggerer"]
            .into_iter()
            .map(|n| hangar_tenants::ComponentStatus {
                name: n.to_owned(),
                healthy: true,
                message: None,
            })
            .collect(),
        ..Default::default()
    }
}

/// The whole platform on this machine, as `hangar dev` runs it: the control plane (with a
/// bucket directory), a private Redis and (unless asked not to) an in-process agent with the
/// process runtime as the cell `local`. Environments' processes are killed when the test
/// process exits, whatever happened.
pub struct Stack {
    pub app: TestApp,
    pub dir: PathBuf,
    pub bucket: PathBuf,
    /// A client holding the cell's token (what the agent uses).
    pub cell: Client,
    pub cell_token: String,
    pub redis_admin: SecretString,
    pub redis_port: u16,
    pub postgres_admin: String,
    /// The cell's parent cgroup (the environments' groups are under it).
    pub cgroup_parent: String,
    /// The stack's own platform Postgres, when it has one (`StackOptions::own_postgres`).
    pub postgres: Option<hangar_data_plane::embedded::PrivatePostgres>,
    agent_stop: CancellationToken,
    agent: Option<tokio::task::JoinHandle<()>>,
}

impl Stack {
    /// Stops the in-process agent, which stops every environment's processes.
    pub async fn shutdown(mut self) {
        self.agent_stop.cancel();
        if let Some(a) = self.agent.take() {
            let _ = a.await;
        }
    }

    /// The folder of an environment on this machine.
    pub fn env_home(&self, id: uuid::Uuid) -> PathBuf {
        self.dir.join("envs").join(id.simple().to_string())
    }
}

/// Waits until `tenant/env` is in phase `want`, failing the test after `within`.
#[allow(clippy::panic, reason = "a test assertion")]
pub async fn wait_for_phase(
    client: &Client,
    tenant: &str,
    env: &str,
    want: hangar_tenants::Phase,
    within: Duration,
) -> hangar_tenants::api::Environment {
    let start = std::time::Instant::now();
    loop {
        let e = client
            .get_environment(tenant, env)
            .await
            .unwrap_or_else(|e| {
                panic!("reading {tenant}/{env}: {e}");
            });
        if e.phase == want {
            return e;
        }
        assert!(
            e.phase != hangar_tenants::Phase::CreateFailed,
            "{tenant}/{env} is CREATE_FAILED ({:?}), not {want}",
            e.status_message
        );
        assert!(
            start.elapsed() < within,
            "{tenant}/{env} is {} ({:?}) after {:?}, not {want}",
            e.phase,
            e.status_message,
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A call to `tenant/env`'s Airflow REST API (`/api/v2/{path}`) through Hangar's proxy: the
/// status and the JSON body (`Null` when it is not JSON); a request that fails fails the test.
#[allow(clippy::panic, reason = "a test assertion")]
pub async fn airflow_api(
    client: &Client,
    tenant: &str,
    env: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut rb = client.request(
        method,
        &format!("v1/tenants/{tenant}/environments/{env}/airflow/api/v2/{path}"),
    );
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("Airflow API {path}: {e:?}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The `hangar` binary of this build, target/<profile>/hangar: beside this executable (the
/// benchmark) or beside its `deps` folder (a test). The agent confines environments' processes
/// with its `sandbox-exec`.
#[allow(clippy::panic, reason = "a test set-up failure")]
pub fn hangar_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("hangar"))
        .find(|b| b.is_file())
        .unwrap_or_else(|| panic!("build the binary first: cargo build --bin hangar"))
}

/// Removes what environments under `dir` leave on the machine besides their files: their Unix
/// users (found by their home under `dir`) and the cgroups under `cgroup_parent`.
pub fn remove_environment_users_and_cgroups(dir: &std::path::Path, cgroup_parent: &str) {
    let prefix = format!("{}/", dir.display());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 5 && fields[5].starts_with(&prefix) {
            let _ = std::process::Command::new("userdel")
                .args(["-f", fields[0]])
                .status();
        }
    }
    let roots = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    for root in std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(roots) {
        let parent = root.join(cgroup_parent);
        if let Ok(groups) = std::fs::read_dir(&parent) {
            for g in groups.flatten().filter(|g| g.path().is_dir()) {
                let _ = std::fs::remove_dir(g.path());
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// Serves `app` on a free loopback port until the returned token is cancelled: a stand-in for
/// a service the platform talks to (an OTLP collector, an environment's Airflow).
pub async fn serve_on_free_port(
    app: axum::Router,
) -> std::io::Result<(std::net::SocketAddr, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    Ok((address, stop))
}

/// Where the tests keep Python runtimes between runs, so Airflow is installed once per machine.
/// The providers of the official Airflow image that Hangar's Kubernetes runtime relies on:
/// the Kubernetes executor's, and the amazon one for remote task logs through the bucket
/// gateway. The tests that load the rendered pod template and write remote logs share this
/// runtime.
pub const KUBERNETES_PROVIDERS: &str =
    "apache-airflow-providers-cncf-kubernetes==10.25.0\napache-airflow-providers-amazon==9.39.0";

/// A finished command's standard output, or a panic with its standard error when it failed.
pub fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key, in PEM.
pub fn self_signed_localhost() -> anyhow::Result<(String, String)> {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    Ok((c.cert.pem(), c.key_pair.serialize_pem()))
}

pub fn test_runtime_dir() -> PathBuf {
    std::env::var("HANGAR_TEST_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("hangar-runtime-test-cache"))
}

/// A DAG scheduled every 2 minutes, with one quick task.
pub const EVERY_TWO_MINUTES: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule="*/2 * * * *", start_date=datetime(2024, 1, 1), catchup=False)
def every_two_minutes():
    @task
    def tick():
        return "tick"

    tick()


every_two_minutes()
"#;

pub async fn spawn_stack() -> anyhow::Result<Stack> {
    spawn_stack_with(true).await
}

/// The stack; `with_agent: false` leaves running the agent to the test (`hangar agent`).
pub async fn spawn_stack_with(with_agent: bool) -> anyhow::Result<Stack> {
    spawn_stack_on(with_agent, None).await
}

/// The stack on the platform bucket `bucket_url` (`HANGAR_BUCKET_URL`; default: a folder of
/// the stack's own, `Stack::bucket`).
pub async fn spawn_stack_on(with_agent: bool, bucket_url: Option<String>) -> anyhow::Result<Stack> {
    spawn_stack_opts(StackOptions {
        with_agent,
        bucket_url,
        ..StackOptions::default()
    })
    .await
}

/// How a test's stack is set up.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Run the agent in-process (`false`: the test runs `hangar agent`).
    pub with_agent: bool,
    /// `HANGAR_BUCKET_URL` (default: a folder of the stack's own, `Stack::bucket`).
    pub bucket_url: Option<String>,
    /// The cell's shared worker pool.
    pub worker_slots: u32,
    pub scale_down_cooldown: Duration,
    /// How often the agent checks each environment (the shipped agent: 2 s).
    pub tick: Duration,
    /// Put the control plane, the agent and the environments on a Postgres and a Redis of the
    /// stack's own set up as managed services may be: TLS connections only, a Postgres admin
    /// that is not a superuser (`CREATEDB`, `CREATEROLE`), and a Redis that refuses ACL
    /// commands (the environments' brokers then go through the agent's broker gateway).
    pub managed_like: bool,
    /// `HANGAR_IDLE_MINUTE_SECS`: how long one minute of `hibernate_after_idle_minutes` lasts.
    pub idle_minute_secs: u64,
    /// `HANGAR_WARM_POOL`: environments the cell keeps prepared.
    pub warm_pool: u32,
    /// `HANGAR_TASK_SLOTS`: the cell's task pool (`None`: the machine's default).
    pub task_slots: Option<u32>,
    /// Put the control plane, the agent and the environments on a platform Postgres of the
    /// stack's own (`Stack::postgres`), which the test may restart.
    pub own_postgres: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            with_agent: true,
            bucket_url: None,
            worker_slots: 8,
            scale_down_cooldown: Duration::from_secs(5),
            tick: Duration::from_secs(1),
            managed_like: false,
            idle_minute_secs: 60,
            warm_pool: 0,
            task_slots: None,
            own_postgres: false,
        }
    }
}

pub async fn spawn_stack_opts(opts: StackOptions) -> anyhow::Result<Stack> {
    let StackOptions {
        with_agent,
        bucket_url,
        worker_slots,
        scale_down_cooldown,
        tick,
        managed_like,
        idle_minute_secs,
        warm_pool,
        task_slots,
        own_postgres,
    } = opts;
    use hangar_data_plane::agent::{self, AgentSettings, OnShutdown};
    use hangar_data_plane::embedded::{run_after_exit, PrivateRedis};
    use hangar_data_plane::process_runtime::Platform;
    use hangar_data_plane::sandbox::{Sandbox, SandboxSettings};
    use std::os::unix::fs::PermissionsExt;

    let dir = PathBuf::from(format!(
        "/tmp/hangar-e2e-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    // Environments' users and cgroups go with the stack: users by their home under `dir`,
    // cgroups under this stack's own parent group.
    let cgroup_parent = format!("hangar-test-{}", uuid::Uuid::new_v4().simple());
    run_after_exit(
        std::process::id(),
        &format!(
            "for f in {d}/envs/*/run/*.pid {d}/envs/*/tasks/*.pid; do [ -f \"$f\" ] && kill -9 -$(cut -d' ' -f1 \"$f\") 2>/dev/null; done; \
             kill $(cat {d}/redis/redis.pid 2>/dev/null) 2>/dev/null; sleep 0.5; \
             for u in $(awk -F: '$6 ~ \"^{d}/\" {{print $1}}' /etc/passwd); do userdel -f \"$u\" 2>/dev/null; done; \
             for g in /sys/fs/cgroup/{cg} /sys/fs/cgroup/*/{cg}; do [ -d \"$g\" ] && rmdir \"$g\"/* \"$g\" 2>/dev/null; done; \
             {keep}rm -rf {d}",
            d = dir.display(),
            cg = cgroup_parent,
            // HANGAR_TEST_KEEP=1 keeps the environments' files (logs included) for a look after
            // a failure, in /tmp/hangar-kept-<test pid>.
            keep = if std::env::var_os("HANGAR_TEST_KEEP").is_some() {
                format!("cp -a {}/envs /tmp/hangar-kept-{} 2>/dev/null; ", dir.display(), std::process::id())
            } else {
                String::new()
            },
        ),
    )?;
    let mut redis = if managed_like {
        PrivateRedis::start_without_acl_commands(&dir.join("redis")).await?
    } else {
        PrivateRedis::start(&dir.join("redis")).await?
    };
    let bucket = dir.join("bucket");
    let url = bucket_url.unwrap_or_else(|| format!("file://{}", bucket.display()));
    let platform_bucket = hangar_data_plane::bucket::Bucket::from_url(&url)?;
    let mut own = None;
    let (control_plane_db, postgres_admin) = if own_postgres && !managed_like {
        let pg = hangar_data_plane::embedded::PrivatePostgres::start(&dir.join("pg")).await?;
        pg.stop_and_remove_after(std::process::id())?;
        let mut conn = sqlx::PgConnection::connect(pg.url("postgres").expose_secret()).await?;
        sqlx::query("CREATE DATABASE hangar")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let urls = (
            Some(pg.url("hangar").expose_secret().to_owned()),
            pg.url("postgres").expose_secret().to_owned(),
        );
        own = Some(pg);
        urls
    } else if managed_like {
        let (cert, key) = self_signed_localhost()?;
        redis.require_tls(&cert, &key).await?;
        let pg = hangar_data_plane::embedded::PrivatePostgres::start(&dir.join("pg")).await?;
        pg.stop_and_remove_after(std::process::id())?;
        pg.require_tls(&cert, &key).await?;
        let superuser = format!("{}?sslmode=require", pg.url("postgres").expose_secret());
        let mut conn = sqlx::PgConnection::connect(&superuser).await?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(&format!(
            "CREATE ROLE platform_admin LOGIN CREATEDB CREATEROLE PASSWORD '{password}'"
        ))
        .execute(&mut conn)
        .await?;
        sqlx::query("CREATE DATABASE hangar OWNER platform_admin")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let url = |db: &str| {
            format!(
                "postgres://platform_admin:{password}@127.0.0.1:{}/{db}?sslmode=require",
                pg.port()
            )
        };
        (Some(url("hangar")), url("postgres"))
    } else {
        (None, server_url().await?)
    };
    let app = spawn_app_with(|s| {
        s.bucket = Some(url);
        s.idle_minute_secs = idle_minute_secs;
        if let Some(db) = control_plane_db {
            s.database.database_url = SecretString::from(db);
        }
    })
    .await;
    let created = app
        .admin
        .create_cell(&hangar_tenants::api::CreateCell {
            name: "local".to_owned(),
            runtime: Runtime::Process,
        })
        .await?;
    let cell = app.admin.with_token(created.token.clone());
    let sandbox = Sandbox::probe(&SandboxSettings {
        program: hangar_bin(),
        insecure_single_user: false,
        cgroup_parent: cgroup_parent.clone(),
    })
    .await?;
    let mut platform = Platform::connect(
        &SecretString::from(postgres_admin.clone()),
        &redis.admin_url(),
        &dir,
        std::path::Path::new("uv"),
        Some(platform_bucket),
        sandbox,
    )
    .await?;
    platform.runtimes = std::sync::Arc::new(
        platform.runtime_cache(&test_runtime_dir(), std::path::Path::new("uv")),
    );
    if let Some(n) = task_slots {
        platform = platform.with_task_slots(n);
    }
    let agent_stop = CancellationToken::new();
    if managed_like {
        let gateway = hangar_data_plane::broker_gateway::BrokerGateway::connect(&redis.admin_url())
            .await?
            .spawn("127.0.0.1:0".parse()?, agent_stop.clone())
            .await?;
        platform = platform.with_broker_gateway(gateway);
    }
    let settings = AgentSettings {
        cell: "local".to_owned(),
        capacity: CellCapacity {
            max_environments: 10,
            worker_slots,
        },
        poll_wait: Duration::from_secs(10),
        tick,
        on_shutdown: OnShutdown::Stop,
        scale_down_cooldown,
        logs: hangar_data_plane::log_ship::ShipSettings::default(),
        worker_slots_updates: None,
        warm_pool,
    };
    let agent = with_agent.then(|| {
        tokio::spawn(agent::run(
            cell.clone(),
            settings,
            platform,
            agent_stop.clone(),
        ))
    });
    Ok(Stack {
        app,
        dir,
        bucket,
        cell,
        cell_token: created.token,
        redis_admin: redis.admin_url(),
        redis_port: redis.port(),
        postgres_admin,
        cgroup_parent,
        postgres: own,
        agent_stop,
        agent,
    })
}

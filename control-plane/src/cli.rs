//! The `hangar` client subcommands: thin wrappers over the typed client, printing JSON with
//! `--json` and aligned tables otherwise.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context};
use hangar_client::Client;
use hangar_tenants::api::{
    Cell, CreateAccessKey, CreateCell, CreateEnvironment, CreateTenant, CreateToken, Environment,
    Role, Runtime, UpdateEnvironment,
};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// The Hangar API.
    #[arg(
        long,
        env = "HANGAR_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token (platform admin or a tenant token).
    #[arg(long, env = "HANGAR_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (platform admin).
    Create {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    Get {
        name: String,
    },
    /// List tenants (platform admin).
    List,
    /// Delete a tenant that has no environment left, with its tokens, access keys and audit
    /// log (platform admin).
    Delete {
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a tenant token; its secret is printed once.
    Create {
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
        #[arg(long, value_parser = ["viewer", "editor", "admin"])]
        role: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    List {
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    Revoke {
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
        id: uuid::Uuid,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AccessKeyCmd {
    /// Create an access key for the MWAA-compatible API (AWS Signature V4); its secret is
    /// printed once.
    Create {
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
        #[arg(long, value_parser = ["viewer", "editor", "admin"])]
        role: String,
        #[arg(long, default_value = "cli")]
        name: String,
    },
    List {
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    /// Revoke a key, by its id or its access key id.
    Revoke {
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
        key: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum CellCmd {
    /// Create a data-plane cell and print its agent's token once (platform admin).
    Create {
        name: String,
        #[arg(long, value_parser = ["process", "kubernetes"], default_value = "process")]
        runtime: String,
    },
    List,
}

/// Fields of an environment spec, as flags. Unset flags are left out of the request.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SpecArgs {
    #[arg(long)]
    pub airflow_version: Option<String>,
    /// celery, hangar (the cell's shared pool of task slots; process runtime only),
    /// kubernetes or celery_kubernetes (both; Kubernetes runtime only).
    #[arg(long)]
    pub executor: Option<String>,
    /// micro, small, medium, large or xlarge.
    #[arg(long = "class")]
    pub environment_class: Option<String>,
    #[arg(long)]
    pub min_workers: Option<u32>,
    #[arg(long)]
    pub max_workers: Option<u32>,
    /// Share of the cell's worker pool when it is oversubscribed (1–100).
    #[arg(long)]
    pub worker_weight: Option<u32>,
    /// Minutes idle (nothing to run, no use, no DAG run due) before the environment
    /// hibernates; 0 never. It wakes on use and ahead of its next scheduled DAG run.
    #[arg(long, value_name = "MINUTES")]
    pub hibernate_after_idle_minutes: Option<u32>,
    #[arg(long)]
    pub schedulers: Option<u32>,
    /// Airflow setting as section.key=value (repeatable; replaces all overrides).
    #[arg(long = "config", value_name = "SECTION.KEY=VALUE")]
    pub config: Vec<String>,
    /// Environment variable as NAME=VALUE (repeatable; replaces all variables).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env_vars: Vec<String>,
    /// Tag as KEY=VALUE (repeatable; replaces all tags).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// A requirements.txt file to install (`-` reads standard input).
    #[arg(long)]
    pub requirements: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DagsCmd {
    /// Uploads a folder's DAG files to the environment, only those that differ from what it
    /// has, several at once, with a progress bar: `hangar dags push etl ./dags --tenant data`.
    Push {
        /// The environment.
        #[arg(value_name = "ENV")]
        first: String,
        /// The folder to upload (its files land under the environment's `dags/`).
        #[arg(value_name = "DIR")]
        dir: Option<String>,
        /// Deprecated: give the environment first instead (`hangar dags push ENV DIR`).
        #[arg(long, hide = true)]
        env: Option<String>,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
        /// Also remove the environment's DAG files that are not in the folder.
        #[arg(long)]
        delete: bool,
        /// Uploads in flight at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
    /// Lists the environment's DAG files: `hangar dags list etl --tenant data`.
    List {
        /// The environment.
        env: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
}

/// The environment and folder of `dags push`: `ENV DIR`, or the deprecated `--env ENV DIR`
/// (which says so on standard error).
fn push_target(
    first: String,
    dir: Option<String>,
    env: Option<String>,
) -> anyhow::Result<(String, std::path::PathBuf)> {
    match (env, Some(first), dir) {
        (Some(env), Some(dir), None) => {
            eprintln!(
                "warning: `--env` is deprecated and will be removed: write `hangar dags push {env} {dir}`"
            );
            Ok((env, dir.into()))
        }
        (Some(_), _, _) => {
            bail!("give the environment once: `hangar dags push ENV DIR` (without `--env`)")
        }
        (None, Some(env), Some(dir)) => Ok((env, dir.into())),
        (None, _, _) => bail!("missing DIR: `hangar dags push ENV DIR`"),
    }
}

/// Regular files under `dir`, relative, `/`-separated; no `__pycache__`, `.git` or
/// byte-code.
fn local_dag_files(dir: &std::path::Path) -> anyhow::Result<BTreeMap<String, std::path::PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("failed to read {}", d.display()))?;
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "__pycache__" || name == ".git" || name.ends_with(".pyc") {
                continue;
            }
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)?
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, e.path());
            }
        }
    }
    Ok(out)
}

/// `hangar airflow ENV -- ARGS…`.
#[derive(Debug, clap::Args)]
pub struct AirflowArgs {
    /// The environment.
    pub env: String,
    #[arg(long, env = "HANGAR_TENANT")]
    pub tenant: String,
    /// Seconds the command may run (at most 300).
    #[arg(long, default_value_t = 60)]
    pub timeout: u32,
    /// The Airflow CLI arguments, after `--`.
    #[arg(last = true, required = true)]
    pub args: Vec<String>,
}

/// Runs an Airflow CLI command in the environment; its stdout and stderr are printed as they
/// are, and its exit code returned (1 when it was killed or not run).
pub async fn airflow(opts: &ClientOpts, a: AirflowArgs) -> anyhow::Result<i32> {
    let c = client(opts)?;
    let r = c
        .run_airflow_cli(
            &a.tenant,
            &a.env,
            &hangar_tenants::api::RunAirflowCli {
                args: a.args,
                timeout_seconds: Some(a.timeout),
            },
        )
        .await?;
    if opts.json {
        print_json(&r)?;
    } else {
        print!("{}", r.stdout);
        eprint!("{}", r.stderr);
        if r.truncated {
            eprintln!("(output cut at 1 MiB)");
        }
        if r.timed_out {
            eprintln!("(killed after {} s)", a.timeout);
        }
    }
    Ok(r.exit_code.unwrap_or(1))
}

/// `hangar logs ENV [--component C] [-f]`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The environment.
    pub env: String,
    #[arg(long, env = "HANGAR_TENANT")]
    pub tenant: String,
    /// api-server, scheduler (every one) or scheduler-N, dag-processor, triggerer, worker (every
    /// worker) or worker-N.
    #[arg(long, short = 'c')]
    pub component: Option<String>,
    /// From this time: RFC 3339 or an age (30s, 10m, 2h, 7d); default the last hour.
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this time (as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// The least severe level shown (debug, info, warning, error, critical).
    #[arg(long)]
    pub level: Option<String>,
    /// Only lines containing this text (any case).
    #[arg(long, short = 'q')]
    pub grep: Option<String>,
    /// Lines at most (with -f: lines from before it starts following).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Keep printing new lines as they are written.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

fn print_log_line(opts: &ClientOpts, l: &hangar_tenants::api::LogLine) -> anyhow::Result<()> {
    if opts.json {
        println!("{}", serde_json::to_string(l)?);
    } else {
        println!(
            "{} {:<13} {:<8} {}",
            l.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            l.component,
            l.level.as_str().to_uppercase(),
            l.message
        );
    }
    Ok(())
}

/// Prints the environment's component logs, oldest first; with `-f` it keeps following.
pub async fn logs(opts: &ClientOpts, a: LogsArgs) -> anyhow::Result<()> {
    let c = client(opts)?;
    let mut query: Vec<(&str, String)> = vec![];
    for (k, v) in [
        ("component", a.component),
        ("since", a.since),
        ("until", a.until),
        ("level", a.level),
        ("q", a.grep),
        ("limit", a.limit.map(|n| n.to_string())),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    if !a.follow {
        let page = c.logs(&a.tenant, &a.env, &query).await?;
        for l in &page.lines {
            print_log_line(opts, l)?;
        }
        if page.truncated && !opts.json {
            eprintln!("(more lines matched: narrow with --since/--until or raise --limit)");
        }
        return Ok(());
    }
    let mut follower = c.follow_logs(&a.tenant, &a.env, &query).await?;
    while let Some(l) = follower.next().await? {
        print_log_line(opts, &l)?;
    }
    Ok(())
}

/// `hangar task-log ENV DAG RUN TASK [--try N]`.
#[derive(Debug, clap::Args)]
pub struct TaskLogArgs {
    /// The environment.
    pub env: String,
    #[arg(long, env = "HANGAR_TENANT")]
    pub tenant: String,
    pub dag: String,
    pub run: String,
    pub task: String,
    /// The try; default the latest.
    #[arg(long = "try")]
    pub try_number: Option<u32>,
}

/// Prints one task try's log.
pub async fn task_log(opts: &ClientOpts, a: TaskLogArgs) -> anyhow::Result<()> {
    let text = client(opts)?
        .task_log(&a.tenant, &a.env, &a.dag, &a.run, &a.task, a.try_number)
        .await?;
    print!("{text}");
    Ok(())
}

async fn list_dags(opts: &ClientOpts, c: &Client, tenant: &str, env: &str) -> anyhow::Result<()> {
    let list = c.list_dags(tenant, env).await?;
    if opts.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .files
        .iter()
        .map(|f| vec![f.path.clone(), f.size.to_string()])
        .collect();
    print_table(&["PATH", "BYTES"], &rows);
    Ok(())
}

pub async fn dags(opts: &ClientOpts, cmd: DagsCmd) -> anyhow::Result<()> {
    use futures::StreamExt;
    let c = client(opts)?;
    let (args, env, tenant, delete, parallel) = match cmd {
        DagsCmd::List { env, tenant } => return list_dags(opts, &c, &tenant, &env).await,
        DagsCmd::Push {
            first,
            dir,
            env,
            tenant,
            delete,
            parallel,
        } => ((first, dir), env, tenant, delete, parallel),
    };
    let (env, dir) = push_target(args.0, args.1, env)?;
    let local = local_dag_files(&dir)?;
    let remote: BTreeMap<String, u64> = c
        .list_dags(&tenant, &env)
        .await?
        .files
        .into_iter()
        .map(|f| (f.path, f.size))
        .collect();
    // Same size: compare contents (DAG files are small); otherwise it changed.
    let mut changed = Vec::new();
    for (rel, path) in &local {
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
        let same = match remote.get(rel) {
            Some(size) if *size == bytes.len() as u64 => {
                c.get_dag(&tenant, &env, rel).await? == bytes
            }
            _ => false,
        };
        if !same {
            changed.push((rel.clone(), bytes));
        }
    }
    let stale: Vec<&String> = if delete {
        remote.keys().filter(|k| !local.contains_key(*k)).collect()
    } else {
        Vec::new()
    };
    let bar = indicatif::ProgressBar::new((changed.len() + stale.len()) as u64);
    if opts.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let uploaded: Vec<String> = futures::stream::iter(changed)
        .map(|(rel, bytes)| {
            let (c, tenant, env, bar) = (&c, &tenant, &env, &bar);
            async move {
                c.put_dag(tenant, env, &rel, bytes)
                    .await
                    .with_context(|| format!("failed to upload {rel}"))?;
                bar.set_message(rel.clone());
                bar.inc(1);
                Ok::<_, anyhow::Error>(rel)
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    for rel in &stale {
        c.delete_dag(&tenant, &env, rel)
            .await
            .with_context(|| format!("failed to remove {rel}"))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let unchanged = local.len() - uploaded.len();
    if opts.json {
        let mut uploaded = uploaded;
        uploaded.sort();
        return print_json(&serde_json::json!({
            "uploaded": uploaded,
            "removed": stale,
            "unchanged": unchanged,
        }));
    }
    println!(
        "uploaded {}, removed {}, unchanged {unchanged}",
        uploaded.len(),
        stale.len()
    );
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum EnvCmd {
    Create {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
        #[command(flatten)]
        spec: SpecArgs,
        /// Makes a retried create safe: the same key returns the same environment.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    List {
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    Get {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    Update {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
        #[command(flatten)]
        spec: SpecArgs,
        /// Apply only if the environment is still at this revision.
        #[arg(long)]
        if_revision: Option<i64>,
    },
    Delete {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    /// Stops the environment's processes once no DAG run is queued or running, keeping its
    /// database, files and secrets; any use through Hangar, or `wake`, starts it again.
    Hibernate {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    /// Starts a hibernated environment again.
    Wake {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    /// Lists the DAG files the environment's Airflow could not import, with the reason.
    ImportErrors {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    /// Prints a one-minute URL that opens the environment's Airflow UI in a browser.
    WebLogin {
        name: String,
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    /// Prints the Kubernetes objects Hangar renders for an environment (secrets redacted) as
    /// one JSON List, which `kubectl apply -f -` takes: `hangar env manifests --tenant T NAME`
    /// reads it from the control plane, `hangar env manifests --spec FILE` renders a create
    /// request without one.
    Manifests(crate::manifests_cmd::ManifestsArgs),
}

fn pairs(flag: &str, items: &[String]) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    if items.is_empty() {
        return Ok(None);
    }
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--{flag} takes KEY=VALUE, got {kv:?}"))
        })
        .collect::<anyhow::Result<_>>()
        .map(Some)
}

impl SpecArgs {
    /// The spec fields given, as the JSON object of a create or update request.
    fn to_json(&self) -> anyhow::Result<Map<String, Value>> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put(
            "airflow_version",
            self.airflow_version.clone().map(Value::from),
        );
        put("executor", self.executor.clone().map(Value::from));
        put(
            "environment_class",
            self.environment_class.clone().map(Value::from),
        );
        put("min_workers", self.min_workers.map(Value::from));
        put("max_workers", self.max_workers.map(Value::from));
        put("worker_weight", self.worker_weight.map(Value::from));
        put(
            "hibernate_after_idle_minutes",
            self.hibernate_after_idle_minutes.map(Value::from),
        );
        put("schedulers", self.schedulers.map(Value::from));
        let map = |v: Option<BTreeMap<String, String>>| v.map(|m| serde_json::json!(m));
        put(
            "airflow_config_overrides",
            map(pairs("config", &self.config)?),
        );
        put("env_vars", map(pairs("env", &self.env_vars)?));
        put("tags", map(pairs("tag", &self.tags)?));
        if let Some(path) = &self.requirements {
            let text = if path == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                std::fs::read_to_string(path).with_context(|| format!("failed to read {path}"))?
            };
            put("requirements", Some(Value::from(text)));
        }
        Ok(m)
    }
}

fn client(opts: &ClientOpts) -> anyhow::Result<Client> {
    Ok(Client::new(
        &opts.url,
        opts.token.clone().map(SecretString::from),
    )?)
}

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows under headers, each column as wide as its widest cell.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    );
    for row in rows {
        println!("{}", line(row.clone()));
    }
}

fn env_row(e: &Environment) -> Vec<String> {
    vec![
        e.name.clone(),
        e.phase.to_string(),
        e.revision.to_string(),
        serde_json::to_value(e.spec.environment_class)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        format!("{}-{}", e.spec.min_workers, e.spec.max_workers),
        e.spec.airflow_version.to_string(),
        e.cell.clone().unwrap_or_else(|| "-".to_owned()),
    ]
}

const ENV_HEADERS: [&str; 7] = [
    "NAME", "PHASE", "REVISION", "CLASS", "WORKERS", "AIRFLOW", "CELL",
];

fn print_env(opts: &ClientOpts, e: &Environment) -> anyhow::Result<()> {
    if opts.json {
        return print_json(e);
    }
    print_table(&ENV_HEADERS, &[env_row(e)]);
    if let Some(m) = &e.status_message {
        println!("\n{m}");
    }
    if let Some(w) = isolation_warning(e) {
        eprintln!("\n{w}");
    }
    Ok(())
}

/// The warning for an environment whose cell does not keep it apart from other tenants'.
fn isolation_warning(e: &Environment) -> Option<String> {
    (e.isolated == Some(false)).then(|| {
        format!(
            "warning: cell {} does not isolate its environments from each other (own Unix user, \
             cgroup limits, Landlock): run only code you trust on it",
            e.cell.as_deref().unwrap_or("-")
        )
    })
}

/// A cell's ISOLATED column: `unknown` when its agent sent no report (the API then counts its
/// environments as not isolated).
fn isolated_column(cell: &Cell) -> &'static str {
    match &cell.isolation {
        Some(i) if i.isolated => "yes",
        Some(_) => "no",
        None => "unknown",
    }
}

pub async fn tenant(opts: &ClientOpts, cmd: TenantCmd) -> anyhow::Result<()> {
    let c = client(opts)?;
    let tenants = match cmd {
        TenantCmd::Create { name, display_name } => {
            vec![
                c.create_tenant(&CreateTenant { name, display_name })
                    .await?,
            ]
        }
        TenantCmd::Get { name } => vec![c.get_tenant(&name).await?],
        TenantCmd::Delete { name } => {
            c.delete_tenant(&name).await?;
            if !opts.json {
                println!("tenant {name} deleted");
            }
            return Ok(());
        }
        TenantCmd::List => {
            let list = c.list_tenants().await?;
            if opts.json {
                return print_json(&list);
            }
            list.tenants
        }
    };
    if opts.json && tenants.len() == 1 {
        return print_json(&tenants[0]);
    }
    let rows: Vec<_> = tenants
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.display_name.clone().unwrap_or_default(),
                t.created_at.to_rfc3339(),
            ]
        })
        .collect();
    print_table(&["NAME", "DISPLAY NAME", "CREATED"], &rows);
    Ok(())
}

pub async fn token(opts: &ClientOpts, cmd: TokenCmd) -> anyhow::Result<()> {
    let c = client(opts)?;
    match cmd {
        TokenCmd::Create { tenant, role, name } => {
            let role = Role::parse(&role).context("--role must be viewer, editor or admin")?;
            let t = c.create_token(&tenant, &CreateToken { name, role }).await?;
            if opts.json {
                return print_json(&t);
            }
            println!("{}", t.token);
            eprintln!(
                "token {} ({}) for tenant {tenant}: shown once, store it now",
                t.id,
                t.role.as_str()
            );
        }
        TokenCmd::List { tenant } => {
            let list = c.list_tokens(&tenant).await?;
            if opts.json {
                return print_json(&list);
            }
            let rows: Vec<_> = list
                .tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.role.as_str().to_owned(),
                        format!("{}…", t.prefix),
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "ROLE", "PREFIX", "STATE"], &rows);
        }
        TokenCmd::Revoke { tenant, id } => {
            c.revoke_token(&tenant, id).await?;
            if !opts.json {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}

pub async fn access_key(opts: &ClientOpts, cmd: AccessKeyCmd) -> anyhow::Result<()> {
    let c = client(opts)?;
    match cmd {
        AccessKeyCmd::Create { tenant, role, name } => {
            let role = Role::parse(&role).context("--role must be viewer, editor or admin")?;
            let k = c
                .create_access_key(&tenant, &CreateAccessKey { name, role })
                .await?;
            if opts.json {
                return print_json(&k);
            }
            println!("AWS_ACCESS_KEY_ID={}", k.access_key_id);
            println!("AWS_SECRET_ACCESS_KEY={}", k.secret_access_key);
            eprintln!(
                "access key {} ({}) for tenant {tenant}: the secret is shown once, store it now",
                k.access_key_id,
                k.role.as_str()
            );
        }
        AccessKeyCmd::List { tenant } => {
            let list = c.list_access_keys(&tenant).await?;
            if opts.json {
                return print_json(&list);
            }
            let rows: Vec<_> = list
                .access_keys
                .iter()
                .map(|k| {
                    vec![
                        k.access_key_id.clone(),
                        k.name.clone(),
                        k.role.as_str().to_owned(),
                        k.last_used_at
                            .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339()),
                        if k.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            print_table(
                &["ACCESS KEY ID", "NAME", "ROLE", "LAST USED", "STATE"],
                &rows,
            );
        }
        AccessKeyCmd::Revoke { tenant, key } => {
            c.revoke_access_key(&tenant, &key).await?;
            if !opts.json {
                println!("revoked {key}");
            }
        }
    }
    Ok(())
}

pub async fn cell(opts: &ClientOpts, cmd: CellCmd) -> anyhow::Result<()> {
    let c = client(opts)?;
    match cmd {
        CellCmd::Create { name, runtime } => {
            let runtime = match runtime.as_str() {
                "kubernetes" => Runtime::Kubernetes,
                _ => Runtime::Process,
            };
            let created = c.create_cell(&CreateCell { name, runtime }).await?;
            if opts.json {
                return print_json(&created);
            }
            println!("{}", created.token);
            eprintln!(
                "cell {}: agent token shown once, store it now",
                created.cell.name
            );
        }
        CellCmd::List => {
            let list = c.list_cells().await?;
            if opts.json {
                return print_json(&list);
            }
            let rows: Vec<_> = list
                .cells
                .iter()
                .map(|cell| {
                    vec![
                        cell.name.clone(),
                        format!("{:?}", cell.runtime).to_lowercase(),
                        cell.environments.to_string(),
                        cell.capacity
                            .map_or_else(|| "-".to_owned(), |c| c.max_environments.to_string()),
                        isolated_column(cell).to_owned(),
                        format!("{}/{}", cell.warm_ready, cell.warm_pool),
                        if cell.tunnel_connected { "up" } else { "down" }.to_owned(),
                        cell.last_seen_at
                            .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339()),
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME",
                    "RUNTIME",
                    "ENVIRONMENTS",
                    "MAX",
                    "ISOLATED",
                    "PREPARED",
                    "TUNNEL",
                    "LAST SEEN",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

pub async fn env(opts: &ClientOpts, cmd: EnvCmd) -> anyhow::Result<()> {
    let c = client(opts)?;
    match cmd {
        EnvCmd::Create {
            name,
            tenant,
            spec,
            idempotency_key,
        } => {
            let mut body = spec.to_json()?;
            body.insert("name".to_owned(), Value::from(name));
            let req: CreateEnvironment =
                serde_json::from_value(Value::Object(body)).context("invalid environment flags")?;
            let created = c
                .create_environment(&tenant, &req, idempotency_key.as_deref())
                .await?;
            print_env(opts, &created.environment)
        }
        EnvCmd::List { tenant } => {
            let list = c.list_environments(&tenant).await?;
            if opts.json {
                return print_json(&list);
            }
            let rows: Vec<_> = list.environments.iter().map(env_row).collect();
            print_table(&ENV_HEADERS, &rows);
            Ok(())
        }
        EnvCmd::Get { name, tenant } => print_env(opts, &c.get_environment(&tenant, &name).await?),
        EnvCmd::Update {
            name,
            tenant,
            spec,
            if_revision,
        } => {
            let body = spec.to_json()?;
            if body.is_empty() {
                bail!("nothing to update: give at least one spec flag (see --help)");
            }
            let req: UpdateEnvironment =
                serde_json::from_value(Value::Object(body)).context("invalid environment flags")?;
            print_env(
                opts,
                &c.update_environment(&tenant, &name, &req, if_revision)
                    .await?,
            )
        }
        EnvCmd::Delete { name, tenant } => {
            print_env(opts, &c.delete_environment(&tenant, &name).await?)
        }
        EnvCmd::Hibernate { name, tenant } => {
            print_env(opts, &c.hibernate_environment(&tenant, &name).await?)
        }
        EnvCmd::Wake { name, tenant } => {
            print_env(opts, &c.wake_environment(&tenant, &name).await?)
        }
        EnvCmd::ImportErrors { name, tenant } => {
            let list = c.import_errors(&tenant, &name).await?;
            if opts.json {
                return print_json(&list);
            }
            if list.import_errors.is_empty() {
                println!("no import errors");
            }
            for e in &list.import_errors {
                let last = e.message.trim_end().lines().last().unwrap_or_default();
                println!("{}: {last}", e.file);
            }
            Ok(())
        }
        EnvCmd::Manifests(args) => crate::manifests_cmd::run(&c, args).await,
        EnvCmd::WebLogin { name, tenant } => {
            let t = c.web_login_token(&tenant, &name).await?;
            if opts.json {
                return print_json(&t);
            }
            let url = c.base_url().join(t.login_url.trim_start_matches('/'))?;
            println!("{url}");
            Ok(())
        }
    }
}

/// `hangar portal-login --tenant T`: prints a one-time sign-in link to the portal.
pub async fn portal_login(opts: &ClientOpts, tenant: &str) -> anyhow::Result<()> {
    let c = client(opts)?;
    let link = c.portal_login_link(tenant).await?;
    println!("{}", c.url_of(&link.login_path));
    eprintln!(
        "open it within five minutes (until {}); it works once",
        link.expires_at.format("%H:%M:%S UTC")
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn push_takes_the_environment_then_the_folder() {
        let (env, dir) = push_target("etl".into(), Some("./dags".into()), None).unwrap();
        assert_eq!((env.as_str(), dir), ("etl", "./dags".into()));
    }

    #[test]
    fn push_still_takes_the_deprecated_flag() {
        let (env, dir) = push_target("./dags".into(), None, Some("etl".into())).unwrap();
        assert_eq!((env.as_str(), dir), ("etl", "./dags".into()));
    }

    #[test]
    fn push_refuses_a_missing_folder_or_two_environments() {
        let e = push_target("etl".into(), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing DIR"), "{e}");
        let e = push_target("etl".into(), Some("./dags".into()), Some("etl".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("environment once"), "{e}");
    }
}

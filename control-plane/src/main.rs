//! `hangar`: the control plane server (`serve`, `migrate`, `openapi`) and the command line client.

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use hangar_control_plane::cli::{
    self, AccessKeyCmd, CellCmd, ClientOpts, EnvCmd, TenantCmd, TokenCmd,
};
use hangar_control_plane::persistence::Db;
use hangar_control_plane::settings::{DatabaseSettings, ServeSettings};
use hangar_control_plane::startup::Application;
use hangar_control_plane::telemetry::{self, Telemetry};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "hangar", version, about = "Self-hosted managed Apache Airflow")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane API.
    Serve(ServeSettings),
    /// Run Hangar on this machine with embedded defaults (private Postgres, control plane).
    Dev(hangar_control_plane::dev::DevSettings),
    /// Run a data-plane agent for one cell (process runtime).
    Agent(hangar_control_plane::agent_cmd::AgentArgs),
    /// Sync an environment's DAGs and plugins from the platform bucket into a folder (the
    /// container beside each Airflow container on Kubernetes).
    DagSync(hangar_control_plane::dag_sync_cmd::DagSyncArgs),
    /// An environment's installed requirements as one archive in the platform bucket (built
    /// once by a Job, unpacked by every pod on Kubernetes).
    Requirements {
        #[command(subcommand)]
        cmd: hangar_control_plane::requirements_cmd::RequirementsCmd,
    },
    /// Apply the database migrations and exit.
    Migrate(DatabaseSettings),
    /// Print the API's OpenAPI document (`--mwaa`: the MWAA-compatible API's; `--portal`:
    /// the portal's).
    Openapi {
        #[arg(long, conflicts_with = "portal")]
        mwaa: bool,
        #[arg(long)]
        portal: bool,
    },
    /// Tenants (platform admin).
    Tenant {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: TenantCmd,
    },
    /// Tenant tokens.
    Token {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Access keys for the MWAA-compatible API (AWS Signature V4).
    AccessKey {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: AccessKeyCmd,
    },
    /// Airflow environments.
    Env {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: EnvCmd,
    },
    /// An environment's DAG files.
    Dags {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: hangar_control_plane::cli::DagsCmd,
    },
    /// Run an allow-listed Airflow CLI command in an environment:
    /// `hangar airflow etl --tenant data -- dags list`. Prints its output; exits with its code.
    Airflow {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: hangar_control_plane::cli::AirflowArgs,
    },
    /// An environment's component logs: `hangar logs etl --tenant data --component scheduler -f`.
    Logs {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: hangar_control_plane::cli::LogsArgs,
    },
    /// One task try's log: `hangar task-log etl --tenant data DAG RUN TASK [--try N]`.
    TaskLog {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(flatten)]
        args: hangar_control_plane::cli::TaskLogArgs,
    },
    /// Data-plane cells (platform admin).
    Cell {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: CellCmd,
    },
    /// Print a one-time link that signs a browser in to the portal with this token's rights
    /// (valid five minutes).
    PortalLogin {
        #[command(flatten)]
        opts: ClientOpts,
        /// The tenant whose page the link opens.
        #[arg(long, env = "HANGAR_TENANT")]
        tenant: String,
    },
    /// Print a shell completion script: `hangar completions bash > /etc/bash_completion.d/hangar`,
    /// `hangar completions zsh > "${fpath[1]}/_hangar"`,
    /// `hangar completions fish > ~/.config/fish/completions/hangar.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Replay a multi-tenant task trace through Hangar's shared worker pool, dedicated
    /// (MWAA-like) workers and KEDA autoscaling, offline.
    Simulate {
        #[command(subcommand)]
        cmd: hangar_control_plane::simulate_cmd::SimulateCmd,
    },
}

/// Logging, and traces when the `OTEL_*` variables ask for them (see `telemetry`).
fn init_telemetry(service: &str) -> anyhow::Result<Telemetry> {
    let t = telemetry::init(service)?;
    if t.exporting() {
        tracing::info!(service, "exporting traces with OTLP");
    }
    Ok(t)
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}

/// `hangar sandbox-exec …` is how the agent starts every process of an environment, confined
/// (`hangar_data_plane::sandbox::exec`). It is dispatched before anything else starts: no
/// runtime threads, no telemetry, nothing but the confinement and the `execve`.
fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "sandbox-exec") {
        let code = hangar_data_plane::sandbox::exec::main(args);
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    async_main()
}

#[tokio::main]
async fn async_main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => {
            let telemetry = init_telemetry("hangar-control-plane")?;
            let app = Application::build(settings).await?;
            let addr = app.local_addr()?;
            tracing::info!(%addr, "hangar control plane listening");
            let token = CancellationToken::new();
            tokio::spawn(shutdown_signal(token.clone()));
            let served = app.run(token).await.context("failed to serve");
            telemetry.shutdown().await;
            served?;
        }
        Command::Dev(settings) => {
            let telemetry = init_telemetry("hangar-dev")?;
            let token = CancellationToken::new();
            tokio::spawn(shutdown_signal(token.clone()));
            let ran = hangar_control_plane::dev::run(settings, token).await;
            telemetry.shutdown().await;
            ran?;
        }
        Command::Agent(args) => {
            let telemetry = init_telemetry("hangar-agent")?;
            let token = CancellationToken::new();
            tokio::spawn(shutdown_signal(token.clone()));
            let ran = hangar_control_plane::agent_cmd::run(args, token).await;
            telemetry.shutdown().await;
            ran?;
        }
        Command::DagSync(args) => {
            let telemetry = init_telemetry("hangar-dag-sync")?;
            let token = CancellationToken::new();
            tokio::spawn(shutdown_signal(token.clone()));
            let ran = hangar_control_plane::dag_sync_cmd::run(args, token).await;
            telemetry.shutdown().await;
            ran?;
        }
        Command::Requirements { cmd } => {
            let telemetry = init_telemetry("hangar-requirements")?;
            let token = CancellationToken::new();
            tokio::spawn(shutdown_signal(token.clone()));
            let ran = hangar_control_plane::requirements_cmd::run(cmd, token).await;
            telemetry.shutdown().await;
            ran?;
        }
        Command::Migrate(db) => {
            let telemetry = init_telemetry("hangar-migrate")?;
            let db = Db::connect(&db.database_url, 2).await?;
            db.migrate().await?;
            tracing::info!("migrations applied");
            telemetry.shutdown().await;
        }
        Command::Openapi { mwaa, portal } => print!(
            "{}",
            if mwaa {
                hangar_control_plane::mwaa::document::openapi_json(None)
            } else if portal {
                hangar_control_plane::portal::document::openapi_json()
            } else {
                hangar_control_plane::api::openapi_json()
            }
        ),
        Command::Tenant { opts, cmd } => cli::tenant(&opts, cmd).await?,
        Command::Token { opts, cmd } => cli::token(&opts, cmd).await?,
        Command::AccessKey { opts, cmd } => cli::access_key(&opts, cmd).await?,
        Command::Env { opts, cmd } => cli::env(&opts, cmd).await?,
        Command::Dags { opts, cmd } => cli::dags(&opts, cmd).await?,
        Command::Airflow { opts, args } => {
            let code = cli::airflow(&opts, args).await?;
            if code != 0 {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(code);
            }
        }
        Command::Logs { opts, args } => cli::logs(&opts, args).await?,
        Command::TaskLog { opts, args } => cli::task_log(&opts, args).await?,
        Command::Cell { opts, cmd } => cli::cell(&opts, cmd).await?,
        Command::PortalLogin { opts, tenant } => cli::portal_login(&opts, &tenant).await?,
        Command::Completions { shell } => {
            use std::io::Write;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hangar", &mut script);
            match std::io::stdout().write_all(&script) {
                // Piped into `head`: not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                written => written.context("failed to write the completion script")?,
            }
        }
        Command::Simulate { cmd } => hangar_control_plane::simulate_cmd::run(cmd)?,
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Every help text, of every subcommand, long and short form.
    fn all_help(cmd: &mut clap::Command, out: &mut Vec<(String, String)>) {
        let name = cmd.get_name().to_owned();
        out.push((name.clone(), cmd.render_long_help().to_string()));
        out.push((name, cmd.render_help().to_string()));
        for sub in cmd.get_subcommands_mut() {
            all_help(sub, out);
        }
    }

    /// A mention of an issue of the tracker: "issue 5", "issue #5", "#12".
    fn issue_reference(text: &str) -> Option<String> {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let numbered = |s: &str| {
                let s = s.trim_start_matches(['(', '#']);
                s.chars().next().is_some_and(|c| c.is_ascii_digit())
            };
            if w.trim_start_matches('(').starts_with("issue")
                && words.get(i + 1).is_some_and(|n| numbered(n))
            {
                return Some(format!("{w} {}", words[i + 1]));
            }
            if let Some(rest) = w.trim_start_matches('(').strip_prefix('#') {
                if rest.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    return Some((*w).to_owned());
                }
            }
        }
        None
    }

    #[test]
    fn the_reference_finder_sees_issue_numbers_and_nothing_else() {
        assert!(issue_reference("the trace of issue 5: 200 tenants").is_some());
        assert!(issue_reference("see (issue #12)").is_some());
        assert!(issue_reference("fixed in #26587").is_some());
        assert!(issue_reference("an issue with the bucket, 5 retries").is_none());
        assert!(issue_reference("colour #fff and 200 tenants").is_none());
    }

    #[test]
    fn help_texts_speak_of_the_product_not_of_the_tracker() {
        let mut texts = Vec::new();
        all_help(&mut Cli::command(), &mut texts);
        assert!(texts.len() > 40, "walked {} help texts", texts.len());
        for (name, text) in texts {
            assert!(
                issue_reference(&text).is_none(),
                "`{name}` help mentions {:?}:\n{text}",
                issue_reference(&text)
            );
        }
    }

    #[test]
    fn completions_are_generated_for_every_shell() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hangar", &mut out);
            let script = String::from_utf8(out).unwrap();
            for sub in ["dags", "portal-login", "task-log", "completions"] {
                assert!(script.contains(sub), "{shell} completions lack `{sub}`");
            }
        }
    }

    #[test]
    fn every_command_takes_the_environment_first() {
        let cli = Cli::try_parse_from(["hangar", "dags", "push", "etl", "./dags", "--tenant", "t"])
            .unwrap();
        let Command::Dags {
            cmd: cli::DagsCmd::Push {
                first, dir, env, ..
            },
            ..
        } = cli.command
        else {
            panic!("not a push");
        };
        assert_eq!(
            (first.as_str(), dir.as_deref(), env),
            ("etl", Some("./dags"), None)
        );
        for argv in [
            &["hangar", "dags", "list", "etl", "--tenant", "t"][..],
            &["hangar", "logs", "etl", "--tenant", "t"],
            &[
                "hangar", "airflow", "etl", "--tenant", "t", "--", "dags", "list",
            ],
            // The earlier form still parses; it warns when run.
            &[
                "hangar", "dags", "push", "--env", "etl", "./dags", "--tenant", "t",
            ],
        ] {
            Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
    }
}

//! Airflow CLI commands in a tenant's environment (the role of MWAA's CLI token): checked
//! against the allow-list here, queued for the environment's cell, run by its agent in the
//! environment's own runtime, answered to the caller, who waits. Every call is audited, refused
//! ones too.

use std::time::{Duration, Instant};

use hangar_tenants::airflow_cli;
use hangar_tenants::api::{AirflowCliResult, CliCall, CliCalls, Role, RunAirflowCli};
use hangar_tenants::{FieldError, Phase};
use serde_json::json;
use uuid::Uuid;

use super::cells::own_cell;
use super::{ServiceError, Services, StoreContext, TenantRef};
use crate::auth::Actor;
use crate::persistence;

/// The time a command gets unless the caller says otherwise, and the most it may ask for.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;
pub const MAX_TIMEOUT_SECS: u32 = 300;
/// Days a call and its output are kept.
const KEEP_DAYS: i32 = 1;
/// The longest an agent's claim waits for a command.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);
/// How long past its own time limit a caller waits for the agent's answer.
const ANSWER_GRACE: Duration = Duration::from_secs(10);

impl Services {
    /// Runs an allow-listed Airflow CLI command in the environment and returns what it gave.
    /// Editors and admins only: a command can change state (`dags trigger`, `dags pause`).
    pub async fn run_airflow_cli(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        req: RunAirflowCli,
    ) -> Result<AirflowCliResult, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Editor).await?;
        let row = self.live_environment(&t, env).await?;
        let timeout = req.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECS);
        let checked = if (1..=MAX_TIMEOUT_SECS).contains(&timeout) {
            airflow_cli::check(req.args.clone()).map_err(ServiceError::from)
        } else {
            Err(FieldError::new(
                "timeout_seconds",
                format!("must be between 1 and {MAX_TIMEOUT_SECS}"),
            )
            .into())
        };
        let command = match checked {
            Ok(c) => c,
            Err(e) => {
                self.audit_cli(
                    actor,
                    &t,
                    env,
                    &req.args,
                    json!({ "refused": e.to_string() }),
                )
                .await?;
                return Err(e);
            }
        };
        // A command is a use: a hibernated environment wakes for it.
        let row = self.awake_for_use(actor, &t, row).await?;
        let running =
            row.phase != Phase::Deleting.as_str() && row.phase != Phase::Creating.as_str();
        let cell_id = row
            .cell_id
            .filter(|_| running)
            .ok_or_else(|| ServiceError::Conflict {
                field: None,
                message: format!(
                    "environment {env:?} is {}: commands run once it is running",
                    row.phase
                ),
            })?;
        // Calls and their output are kept a day (the audit log keeps who ran what).
        if let Err(e) = persistence::cli_calls::prune(&self.db.pool, KEEP_DAYS).await {
            tracing::warn!(error = %e, "failed to prune old Airflow CLI calls");
        }
        let id = Uuid::new_v4();
        self.audit_cli(actor, &t, env, &command.args, json!({ "call": id }))
            .await?;
        persistence::cli_calls::insert(
            &self.db.pool,
            id,
            row.id,
            cell_id,
            &json!(command.args),
            i32::try_from(timeout).unwrap_or(i32::MAX),
        )
        .await
        .store("queue an Airflow CLI command")?;
        let deadline = Instant::now() + Duration::from_secs(u64::from(timeout)) + ANSWER_GRACE;
        loop {
            if let Some(result) = persistence::cli_calls::result(&self.db.pool, id)
                .await
                .store("read an Airflow CLI result")?
            {
                return serde_json::from_value(result).map_err(|e| ServiceError::Corrupt {
                    action: "read an Airflow CLI result",
                    message: e.to_string(),
                });
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::Unavailable(format!(
                    "the agent of environment {env:?} did not answer within {} s",
                    (Duration::from_secs(u64::from(timeout)) + ANSWER_GRACE).as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn audit_cli(
        &self,
        actor: &Actor,
        t: &TenantRef,
        env: &str,
        args: &[String],
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        let mut details = details;
        details["args"] = json!(args);
        self.audit(
            actor,
            t,
            "environment.cli",
            &format!("{}/environments/{env}", t.name),
            details,
        )
        .await
    }

    /// The commands waiting for the cell's agent, each handed out once; with none, waits up to
    /// `wait` for one (long poll, checking every 100 ms).
    pub async fn claim_cli_calls(
        &self,
        actor: &Actor,
        cell: &str,
        wait: Duration,
    ) -> Result<CliCalls, ServiceError> {
        let cell_id = own_cell(actor, cell)?;
        let until = Instant::now() + wait.min(MAX_CLAIM_WAIT).min(self.cell_ttl / 2);
        let calls = loop {
            let calls = persistence::cli_calls::claim(&self.db.pool, cell_id)
                .await
                .store("claim Airflow CLI commands")?;
            if !calls.is_empty() || Instant::now() >= until {
                break calls;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Ok(CliCalls {
            calls: calls
                .into_iter()
                .map(|c| CliCall {
                    id: c.id,
                    environment_id: c.environment_id,
                    args: serde_json::from_value(c.args).unwrap_or_default(),
                    timeout_seconds: u32::try_from(c.timeout_secs).unwrap_or(DEFAULT_TIMEOUT_SECS),
                })
                .collect(),
        })
    }

    /// The agent's answer to a command it claimed.
    pub async fn finish_cli_call(
        &self,
        actor: &Actor,
        cell: &str,
        id: Uuid,
        result: AirflowCliResult,
    ) -> Result<(), ServiceError> {
        let cell_id = own_cell(actor, cell)?;
        let stored = persistence::cli_calls::finish(&self.db.pool, id, cell_id, &json!(result))
            .await
            .store("record an Airflow CLI result")?;
        if stored {
            Ok(())
        } else {
            Err(ServiceError::not_found("CLI call", id.to_string()))
        }
    }
}

//! Handlers of environment logs: component logs (a page, or a live follow as server-sent
//! events), task logs, and the agents' live lines.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use hangar_tenants::api::{LogBatch, LogPage, Problem};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;
use crate::auth::Actor;
use crate::service::logs::RawLogQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// `api-server`, `scheduler` (every scheduler) or `scheduler-N`, `dag-processor`,
    /// `triggerer`, `worker` (every worker) or `worker-N`.
    #[param(pattern = "^([a-z][a-z0-9-]{0,62})?$")]
    pub component: Option<String>,
    /// From this time: RFC 3339, or an age such as `30s`, `10m`, `2h`, `7d`. Without it, the
    /// last hour before `until`, and the page keeps the newest lines.
    #[param(
        pattern = r"^([0-9]{1,9}[smhd]|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub since: Option<String>,
    /// Up to this time (as `since`); not with `follow`.
    #[param(
        pattern = r"^([0-9]{1,9}[smhd]|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    pub until: Option<String>,
    /// The least severe level shown: `debug`, `info`, `warning`, `error`, `critical`.
    #[param(pattern = "^(debug|info|warning|error|critical)?$")]
    pub level: Option<String>,
    /// Text the line contains, in any case.
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// Lines at most: 1–10000, default 1000 (with `follow`, lines from before, default 100).
    #[param(pattern = "^[0-9]{0,5}$")]
    pub limit: Option<String>,
    /// `true` streams the lines as server-sent events as they are written.
    #[param(pattern = "^(true|false)?$")]
    pub follow: Option<String>,
}

/// The environment's component logs, oldest first (viewer or above). With `follow=true` a
/// `text/event-stream`: the last matching lines, then each new one as an event whose data is
/// the line as JSON, within about a second of being written.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}/logs", tag = "environments",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path), LogsQuery),
    responses((status = 200, body = LogPage, description = "the lines; with follow=true, server-sent events of `LogLine`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a bad parameter, named in `errors[0].field`", body = Problem, content_type = "application/problem+json")))]
pub async fn environment_logs(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath((tenant, env)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let follow = match q.follow.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::Service(
                hangar_tenants::FieldError::new("follow", "must be true or false").into(),
            ))
        }
    };
    let raw = RawLogQuery {
        component: q.component,
        since: q.since,
        until: q.until,
        level: q.level,
        q: q.q,
        limit: q.limit,
    };
    if !follow {
        return Ok(Json(s.services.read_logs(&actor, &tenant, &env, &raw).await?).into_response());
    }
    let lines = s.services.follow_logs(&actor, &tenant, &env, &raw).await?;
    let events = lines.map(|line| {
        Ok::<_, Infallible>(
            Event::default()
                .json_data(&line)
                .unwrap_or_else(|_| Event::default().comment("unencodable line")),
        )
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskLogQuery {
    /// The try (1, 2, …); without it, the latest.
    #[serde(rename = "try")]
    #[param(value_type = Option<u32>, minimum = 1)]
    pub try_number: Option<String>,
    /// A mapped task's index; without it, an unmapped task.
    #[param(value_type = Option<i64>, minimum = -1)]
    pub map_index: Option<String>,
}

/// `{dag}/runs/{run}/tasks/{task}/logs` under an environment's `dags/`: the task log route
/// shares its prefix with DAG files (`dags/{path}`), so the DAG file handler hands such a path
/// here. (A DAG file stored at exactly that shape straight in the bucket is still synced and
/// listed, but not read back by `GET`, and the API does not write or delete one: 405.)
pub fn task_log_target(path: &str) -> Option<(&str, &str, &str)> {
    match path.split('/').collect::<Vec<_>>()[..] {
        [dag, "runs", run, "tasks", task, "logs"] => Some((dag, run, task)),
        _ => None,
    }
}

/// One task try's log as text (viewer or above), kept in the bucket by the environment's
/// agent, so it is there after the worker that wrote it is gone.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/environments/{env}/dags/{dag}/runs/{run}/tasks/{task}/logs",
    tag = "environments", security(("bearer" = [])),
    params(("tenant" = String, Path), ("env" = String, Path), ("dag" = String, Path),
        ("run" = String, Path), ("task" = String, Path), TaskLogQuery),
    responses((status = 200, body = String, content_type = "text/plain"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
#[allow(clippy::too_many_arguments)]
pub async fn task_log(
    s: &AppState,
    actor: &Actor,
    tenant: &str,
    env: &str,
    dag: &str,
    run: &str,
    task: &str,
    q: &TaskLogQuery,
) -> Result<Response, ApiError> {
    let text = s
        .services
        .task_log(
            actor,
            tenant,
            env,
            dag,
            run,
            task,
            q.try_number.as_deref(),
            q.map_index.as_deref(),
        )
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Lines the cell's agent captured, for followers and recent reads (cell token).
#[utoipa::path(post, path = "/v1/cells/{cell}/log-lines", tag = "cells", request_body = LogBatch,
    security(("bearer" = [])), params(("cell" = String, Path)),
    responses((status = 204), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn post_log_lines(
    State(s): State<AppState>,
    actor: Actor,
    ApiPath(cell): ApiPath<String>,
    ApiJson(batch): ApiJson<LogBatch>,
) -> Result<StatusCode, ApiError> {
    s.services.ingest_log_lines(&actor, &cell, batch).await?;
    Ok(StatusCode::NO_CONTENT)
}

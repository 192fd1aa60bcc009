//! An environment's logs and its Airflow CLI in the portal: component logs with filters and a
//! live follow mode (server-sent events), the task log viewer, and the allow-listed CLI as a
//! form whose output is shown as a terminal would.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures::{Stream, StreamExt};
use hangar_tenants::api::RunAirflowCli;
use hangar_tenants::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::PortalError;
use super::form::{errors_by_field, Form};
use super::session::Session;
use super::templates::{page_context, render};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::service::logs::RawLogQuery;
use crate::service::ServiceError;

/// How often a live log stream checks that its session still holds.
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The log page's query: the component log filters, and a task log to show.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct LogsQuery {
    component: Option<String>,
    level: Option<String>,
    q: Option<String>,
    since: Option<String>,
    dag: Option<String>,
    run: Option<String>,
    task: Option<String>,
    #[serde(rename = "try")]
    try_number: Option<String>,
}

fn nonblank(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl LogsQuery {
    fn raw(&self) -> RawLogQuery {
        RawLogQuery {
            component: nonblank(&self.component),
            since: nonblank(&self.since),
            until: None,
            level: nonblank(&self.level),
            q: nonblank(&self.q),
            limit: Some("500".to_owned()),
        }
    }
}

/// `GET …/logs`: the newest component log lines matching the filters, and a task's log when
/// `dag`, `run` and `task` are given.
pub async fn page(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, PortalError> {
    let mut status = StatusCode::OK;
    let mut errors = Vec::new();
    let lines = match s
        .services
        .read_logs(&session.actor, &tenant, &env, &q.raw())
        .await
    {
        Ok(page) => page.lines,
        Err(ServiceError::Invalid(f)) => {
            status = StatusCode::UNPROCESSABLE_ENTITY;
            errors.extend(f.0);
            vec![]
        }
        Err(e) => return Err(e.into()),
    };
    let task_log = match (nonblank(&q.dag), nonblank(&q.run), nonblank(&q.task)) {
        (Some(dag), Some(run), Some(task)) => {
            let try_number = nonblank(&q.try_number);
            match s
                .services
                .task_log(
                    &session.actor,
                    &tenant,
                    &env,
                    &dag,
                    &run,
                    &task,
                    try_number.as_deref(),
                    None,
                )
                .await
            {
                Ok(text) => Some(text),
                Err(e @ (ServiceError::Invalid(_) | ServiceError::NotFound { .. })) => {
                    let p = ApiError::Service(e).to_problem();
                    if p.errors.is_empty() {
                        errors.push(FieldError::new("task", p.detail));
                    } else {
                        errors.extend(p.errors);
                    }
                    None
                }
                Err(e) => return Err(e.into()),
            }
        }
        _ => None,
    };
    let mut ctx = page_context(&session, Some(&tenant), &format!("{tenant}/{env}: logs"));
    ctx.insert("env_name", &env);
    ctx.insert(
        "lines",
        &lines
            .iter()
            .map(|l| {
                json!({
                    "ts": l.ts.format("%H:%M:%S%.3f").to_string(),
                    "component": l.component,
                    "level": l.level.as_str(),
                    "message": l.message,
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("query", &q);
    ctx.insert(
        "follow_query",
        &serde_urlencoded_pairs(&[
            ("component", nonblank(&q.component)),
            ("level", nonblank(&q.level)),
            ("q", nonblank(&q.q)),
        ]),
    );
    ctx.insert("task_log", &task_log);
    ctx.insert("errors", &errors_by_field_logs(&errors));
    let mut resp = super::html(render("logs.html", &ctx)?);
    *resp.status_mut() = status;
    Ok(resp)
}

/// Log query errors by their parameter (`component`, `level`, `dag`, …).
fn errors_by_field_logs(errors: &[FieldError]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in errors {
        out.entry(e.field.clone())
            .or_default()
            .push(e.message.clone());
    }
    out
}

fn serde_urlencoded_pairs(pairs: &[(&str, Option<String>)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    ser.finish()
}

/// `GET …/logs/events`: new component log lines matching the filters, as they come
/// (server-sent `line` events).
pub async fn follow(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PortalError> {
    let mut raw = q.raw();
    raw.limit = None;
    let lines = s
        .services
        .follow_logs(&session.actor, &tenant, &env, &raw)
        .await?;
    let lines = lines.map(|l| {
        json!({
            "ts": l.ts.format("%H:%M:%S%.3f").to_string(),
            "component": l.component,
            "level": l.level.as_str(),
            "message": l.message,
        })
        .to_string()
    });
    // The session is checked again every few seconds: signed out, expired or revoked, the
    // stream ends.
    let cookie = session.cookie.clone();
    let ended = futures::stream::unfold((s, cookie), |(s, cookie)| async move {
        tokio::time::sleep(SESSION_CHECK_EVERY).await;
        let live = s.services.portal_session(&cookie, None).await.is_ok();
        Some((live, (s, cookie)))
    })
    .filter(|live| std::future::ready(!live))
    .map(|_| None);
    let events = futures::stream::select(lines.map(Some), ended)
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
        .map(|data| Ok(Event::default().event("line").data(data)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn cli_form(
    session: &Session,
    tenant: &str,
    env: &str,
    args: &str,
    result: Option<serde_json::Value>,
    errors: &[FieldError],
) -> Result<Response, PortalError> {
    let mut ctx = page_context(
        session,
        Some(tenant),
        &format!("{tenant}/{env}: Airflow CLI"),
    );
    ctx.insert("env_name", env);
    ctx.insert("args", args);
    ctx.insert("result", &result);
    ctx.insert("errors", &errors_by_field(errors));
    let mut resp = super::html(render("cli.html", &ctx)?);
    if !errors.is_empty() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// `GET …/cli`: the command form (editors and admins run commands; viewers see why not).
pub async fn cli_page(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Response, PortalError> {
    s.services
        .get_environment(&session.actor, &tenant, &env)
        .await?;
    cli_form(&session, &tenant, &env, "dags list", None, &[])
}

/// `POST …/cli` (`args`: the words after `airflow`, quoted as in a shell).
pub async fn cli_run(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    let text = form.get("args").unwrap_or_default().trim().to_owned();
    let text = text.strip_prefix("airflow ").unwrap_or(&text).to_owned();
    let Some(args) = shlex::split(&text).filter(|a| !a.is_empty()) else {
        let e = FieldError::new(
            "args",
            "type a command, e.g. `dags list` (quotes must be closed)",
        );
        return cli_form(&session, &tenant, &env, &text, None, &[e]);
    };
    match s
        .services
        .run_airflow_cli(
            &session.actor,
            &tenant,
            &env,
            RunAirflowCli {
                args,
                timeout_seconds: None,
            },
        )
        .await
    {
        Ok(r) => cli_form(
            &session,
            &tenant,
            &env,
            &text,
            Some(serde_json::to_value(&r).unwrap_or_default()),
            &[],
        ),
        Err(ServiceError::Invalid(f)) => cli_form(&session, &tenant, &env, &text, None, &f.0),
        Err(e) => Err(e.into()),
    }
}

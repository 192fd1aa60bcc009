//! The tenant's environments: the list (live phases), the create form, an environment's page
//! (live phase and components, workers, DAG sync, bucket, revision history, the update form,
//! "Open Airflow") and its deletion.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures::Stream;
use hangar_tenants::api::{CreateEnvironment, Environment, UpdateEnvironment};
use hangar_tenants::{EnvironmentClass, Executor, FieldError, FieldErrors};
use serde_json::{json, Value};
use tera::Context;

use super::error::PortalError;
use super::form::{environment_request, errors_by_field, map_lines, Form, ENVIRONMENT_FIELDS};
use super::session::Session;
use super::templates::{page_context, render};
use crate::api::error::ApiError;
use crate::api::web_login::see_other;
use crate::api::AppState;
use crate::service::ServiceError;

/// How often live pages look for changes.
const LIVE_EVERY: Duration = Duration::from_secs(1);

/// What the list and the live updates show of an environment.
fn summary(e: &Environment) -> Value {
    let workers = e.observed.as_ref().and_then(|o| o.workers.as_ref());
    json!({
        "name": e.name,
        "phase": e.phase.as_str(),
        "revision": e.revision,
        "status_message": e.status_message,
        "airflow_version": e.spec.airflow_version.as_str(),
        "environment_class": e.spec.environment_class,
        "executor": e.spec.executor,
        "queued": workers.map(|w| w.queued),
        "running": workers.map(|w| w.running),
        "desired": workers.map(|w| w.desired),
        "actual": workers.map(|w| w.actual),
        "updated_at": e.updated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    })
}

/// An environment's page data, for its template and its live updates.
fn detail_json(e: &Environment) -> Value {
    let mut v = summary(e);
    let o = e.observed.as_ref();
    v["components"] = json!(o.map(|o| o.components.clone()).unwrap_or_default());
    v["observed_revision"] = json!(o.and_then(|o| o.revision));
    v["dag_sync"] = json!(o.and_then(|o| o.dag_sync.clone()));
    v["log_disk_full_since"] = json!(o
        .and_then(|o| o.log_disk.as_ref())
        .map(|d| d.since.format("%Y-%m-%d %H:%M:%S UTC").to_string()));
    v["draining"] = json!(o.and_then(|o| o.workers.as_ref()).map(|w| w.draining));
    v["last_used_at"] = json!(e
        .last_used_at
        .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string()));
    v["hibernate_after_idle_minutes"] = json!(e.spec.hibernate_after_idle_minutes);
    v
}

/// Environments a list page shows.
const PER_PAGE: u32 = 100;

/// The list's query: a part of the name to look for, and the page (from 1).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    page: Option<String>,
}

impl ListQuery {
    fn name_part(&self) -> String {
        self.q.as_deref().unwrap_or_default().trim().to_owned()
    }

    /// The page, from 0; anything but a number ≥ 1 is the first.
    fn page(&self) -> u32 {
        self.page
            .as_deref()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| *p >= 1)
            .map_or(0, |p| p - 1)
    }

    fn query_string(&self, page: u32) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        let q = self.name_part();
        if !q.is_empty() {
            ser.append_pair("q", &q);
        }
        if page > 0 {
            ser.append_pair("page", &(page + 1).to_string());
        }
        ser.finish()
    }
}

/// `GET /tenants/{t}`: the tenant's environments, a page at a time, filtered by name.
pub async fn list(
    State(s): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, PortalError> {
    let page = q.page();
    let (envs, total) = s
        .services
        .list_environments_page(&session.actor, &tenant, &q.name_part(), page, PER_PAGE)
        .await?;
    let mut ctx = page_context(&session, Some(&tenant), &format!("{tenant}: environments"));
    ctx.insert(
        "environments",
        &envs.iter().map(summary).collect::<Vec<_>>(),
    );
    let first = u64::from(page) * u64::from(PER_PAGE);
    ctx.insert("q", &q.name_part());
    ctx.insert("total", &total);
    ctx.insert("from", &(first + 1).min(total));
    ctx.insert("to", &(first + envs.len() as u64));
    ctx.insert("previous", &(page > 0).then(|| q.query_string(page - 1)));
    ctx.insert(
        "next",
        &(first + u64::from(PER_PAGE) < total).then(|| q.query_string(page + 1)),
    );
    ctx.insert("live_query", &q.query_string(page));
    Ok(super::html(render("tenant.html", &ctx)?))
}

/// A stream of `event` messages: `read` every second, sent when it changed.
fn live<F, Fut>(read: F, event: &'static str) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Value>> + Send,
{
    futures::stream::unfold(
        (read, String::new(), true),
        move |(read, last, first)| async move {
            if !first {
                tokio::time::sleep(LIVE_EVERY).await;
            }
            // Gone (deleted, or the session ended): the stream ends; the page says so at its
            // next load.
            let v = read().await?;
            let text = v.to_string();
            if text == last {
                return Some((
                    Ok(Event::default().comment("unchanged")),
                    (read, last, false),
                ));
            }
            let ev = Event::default().event(event).data(text.clone());
            Some((Ok(ev), (read, text, false)))
        },
    )
}

/// `GET /tenants/{t}/events?q=&page=`: the list page's rows, live (server-sent `environments`
/// events).
pub async fn list_events(
    State(s): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PortalError> {
    // Refused at once when the session may not read the tenant.
    s.services.get_tenant(&session.actor, &tenant).await?;
    let read = move || {
        let (s, cookie, tenant, q) = (s.clone(), session.cookie.clone(), tenant.clone(), q.clone());
        async move {
            // Checked again every time: a session signed out, expired or revoked stops here.
            let actor = s.services.portal_session(&cookie, None).await.ok()?.actor;
            let (envs, _) = s
                .services
                .list_environments_page(&actor, &tenant, &q.name_part(), q.page(), PER_PAGE)
                .await
                .ok()?;
            Some(Value::Array(envs.iter().map(summary).collect()))
        }
    };
    Ok(Sse::new(live(read, "environments")).keep_alive(KeepAlive::default()))
}

/// The choices the environment form offers.
fn choices(s: &AppState, ctx: &mut Context) {
    ctx.insert("airflow_versions", &s.services.platform.airflow_versions);
    ctx.insert(
        "environment_classes",
        &[
            EnvironmentClass::Micro,
            EnvironmentClass::Small,
            EnvironmentClass::Medium,
            EnvironmentClass::Large,
            EnvironmentClass::Xlarge,
        ],
    );
    ctx.insert(
        "executors",
        &[
            Executor::Celery,
            Executor::Kubernetes,
            Executor::CeleryKubernetes,
            Executor::Hangar,
        ],
    );
}

fn new_page(
    s: &AppState,
    session: &Session,
    tenant: &str,
    values: &BTreeMap<String, String>,
    errors: &[FieldError],
) -> Result<Response, PortalError> {
    let mut ctx = page_context(session, Some(tenant), "New environment");
    choices(s, &mut ctx);
    ctx.insert("values", values);
    ctx.insert("errors", &errors_by_field(errors));
    let mut resp = super::html(render("environment_new.html", &ctx)?);
    if !errors.is_empty() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// `GET /tenants/{t}/environments/new`: the create form, with the API's defaults.
pub async fn new_form(
    State(s): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
) -> Result<Response, PortalError> {
    s.services.get_tenant(&session.actor, &tenant).await?;
    let values: BTreeMap<String, String> = [
        ("airflow_version", hangar_tenants::DEFAULT_AIRFLOW_VERSION),
        ("environment_class", "small"),
        ("executor", "celery"),
        ("min_workers", "0"),
        ("max_workers", "10"),
        ("worker_weight", "1"),
        ("hibernate_after_idle_minutes", "60"),
        ("schedulers", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    new_page(&s, &session, &tenant, &values, &[])
}

/// The field errors of a refused change, if it was refused for its input.
fn input_errors(e: ServiceError) -> Result<Vec<FieldError>, PortalError> {
    match e {
        e @ (ServiceError::Invalid(_) | ServiceError::Conflict { .. }) => {
            let p = ApiError::Service(e).to_problem();
            Ok(if p.errors.is_empty() {
                vec![FieldError::new("form", p.detail)]
            } else {
                p.errors
            })
        }
        e => Err(e.into()),
    }
}

/// `POST /tenants/{t}/environments`: creates an environment from the form.
pub async fn create(
    State(s): State<AppState>,
    session: Session,
    Path(tenant): Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    let req: CreateEnvironment = match environment_request(&form, &ENVIRONMENT_FIELDS) {
        Ok(r) => r,
        Err(FieldErrors(errors)) => {
            return new_page(&s, &session, &tenant, &form.values(), &errors);
        }
    };
    match s
        .services
        .create_environment(&session.actor, &tenant, req, None)
        .await
    {
        Ok(c) => Ok(see_other(
            &format!("/tenants/{tenant}/environments/{}", c.environment.name),
            None,
        )),
        Err(e) => {
            let errors = input_errors(e)?;
            new_page(&s, &session, &tenant, &form.values(), &errors)
        }
    }
}

/// The form's values from an environment's spec.
fn spec_values(e: &Environment) -> BTreeMap<String, String> {
    let spec = &e.spec;
    [
        ("airflow_version", spec.airflow_version.as_str().to_owned()),
        ("executor", wire(&spec.executor)),
        ("environment_class", wire(&spec.environment_class)),
        ("min_workers", spec.min_workers.to_string()),
        ("max_workers", spec.max_workers.to_string()),
        ("worker_weight", spec.worker_weight.to_string()),
        (
            "hibernate_after_idle_minutes",
            spec.hibernate_after_idle_minutes.to_string(),
        ),
        ("schedulers", spec.schedulers.to_string()),
        (
            "airflow_config_overrides",
            map_lines(&spec.airflow_config_overrides),
        ),
        ("env_vars", map_lines(&spec.env_vars)),
        ("requirements", spec.requirements.clone()),
        ("tags", map_lines(&spec.tags)),
        ("revision", e.revision.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A value's wire name (an enum as the API spells it).
fn wire<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

async fn detail_page(
    s: &AppState,
    session: &Session,
    tenant: &str,
    env: &str,
    values: Option<BTreeMap<String, String>>,
    errors: &[FieldError],
    status: StatusCode,
) -> Result<Response, PortalError> {
    let e = s
        .services
        .get_environment(&session.actor, tenant, env)
        .await?;
    let history = s
        .services
        .environment_history(&session.actor, tenant, env)
        .await?;
    let mut ctx = page_context(session, Some(tenant), &format!("{tenant}/{env}"));
    choices(s, &mut ctx);
    ctx.insert("env", &detail_json(&e));
    ctx.insert("bucket", &e.bucket);
    ctx.insert("webserver_url", &e.webserver_url);
    ctx.insert("isolated", &e.isolated);
    ctx.insert("cell", &e.cell);
    ctx.insert(
        "history",
        &history
            .iter()
            .map(|h| {
                json!({
                    "at": h.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    "actor": h.actor,
                    "action": h.action.trim_start_matches("environment."),
                    "revision": h.details.get("revision"),
                    "changed": h.details.get("changed"),
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert("values", &values.unwrap_or_else(|| spec_values(&e)));
    ctx.insert("errors", &errors_by_field(errors));
    let mut resp = super::html(render("environment.html", &ctx)?);
    *resp.status_mut() = status;
    Ok(resp)
}

/// `GET /tenants/{t}/environments/{e}`: the environment's page.
pub async fn detail(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Response, PortalError> {
    detail_page(&s, &session, &tenant, &env, None, &[], StatusCode::OK).await
}

/// `GET …/events`: the environment's phase, components and workers, live.
pub async fn detail_events(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PortalError> {
    s.services
        .get_environment(&session.actor, &tenant, &env)
        .await?;
    let read = move || {
        let (s, cookie, tenant, env) = (
            s.clone(),
            session.cookie.clone(),
            tenant.clone(),
            env.clone(),
        );
        async move {
            let actor = s.services.portal_session(&cookie, None).await.ok()?.actor;
            let e = s
                .services
                .get_environment(&actor, &tenant, &env)
                .await
                .ok()?;
            Some(detail_json(&e))
        }
    };
    Ok(Sse::new(live(read, "environment")).keep_alive(KeepAlive::default()))
}

/// `POST /tenants/{t}/environments/{e}`: the update form, applied to the revision it was
/// opened at (a change made meanwhile is a conflict, shown with what changed).
pub async fn update(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    let revision = match form.text("revision").map(str::parse::<i64>) {
        Some(Ok(r)) => r,
        _ => {
            let e = FieldError::new("revision", "is missing: reload the page and try again");
            return detail_page(
                &s,
                &session,
                &tenant,
                &env,
                Some(form.values()),
                &[e],
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let req: UpdateEnvironment = match environment_request(&form, &ENVIRONMENT_FIELDS[1..]) {
        Ok(r) => r,
        Err(FieldErrors(errors)) => {
            return detail_page(
                &s,
                &session,
                &tenant,
                &env,
                Some(form.values()),
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match s
        .services
        .update_environment(&session.actor, &tenant, &env, req, Some(revision))
        .await
    {
        Ok(_) => Ok(see_other(
            &format!("/tenants/{tenant}/environments/{env}"),
            None,
        )),
        Err(ServiceError::StaleRevision { .. }) => {
            let history = s
                .services
                .environment_history(&session.actor, &tenant, &env)
                .await?;
            let changed: Vec<String> = history
                .iter()
                .filter(|h| {
                    h.details
                        .get("revision")
                        .and_then(Value::as_i64)
                        .is_some_and(|r| r > revision)
                })
                .flat_map(|h| {
                    h.details
                        .get("changed")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let message = format!(
                "the environment was changed while you edited it (revision {revision} is no longer current{}); \
                 your values are kept below: check them against the current ones and send again",
                if changed.is_empty() {
                    String::new()
                } else {
                    format!("; changed since: {}", changed.join(", "))
                }
            );
            let mut values = form.values();
            // Sending again applies to the current revision.
            let current = s
                .services
                .get_environment(&session.actor, &tenant, &env)
                .await?;
            values.insert("revision".to_owned(), current.revision.to_string());
            detail_page(
                &s,
                &session,
                &tenant,
                &env,
                Some(values),
                &[FieldError::new("revision", message)],
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => {
            let errors = input_errors(e)?;
            detail_page(
                &s,
                &session,
                &tenant,
                &env,
                Some(form.values()),
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

fn delete_form(
    session: &Session,
    tenant: &str,
    env: &str,
    error: Option<&str>,
) -> Result<Response, PortalError> {
    let mut ctx = page_context(session, Some(tenant), &format!("Delete {env}"));
    ctx.insert("env_name", env);
    ctx.insert("values", &json!({}));
    ctx.insert(
        "errors",
        &json!({ "confirm": error.into_iter().collect::<Vec<_>>() }),
    );
    let mut resp = super::html(render("environment_delete.html", &ctx)?);
    if error.is_some() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(resp)
}

/// `GET …/delete`: asks to type the environment's name to confirm.
pub async fn delete_page(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
) -> Result<Response, PortalError> {
    s.services
        .get_environment(&session.actor, &tenant, &env)
        .await?;
    delete_form(&session, &tenant, &env, None)
}

/// `POST …/delete` (`confirm` = the environment's name): deletes it.
pub async fn delete(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    if form.text("confirm") != Some(env.as_str()) {
        return delete_form(
            &session,
            &tenant,
            &env,
            Some("type the environment's name exactly to delete it"),
        );
    }
    s.services
        .delete_environment(&session.actor, &tenant, &env)
        .await?;
    Ok(see_other(&format!("/tenants/{tenant}"), None))
}

/// `POST …/hibernate`: asks the environment to hibernate (editors).
pub async fn hibernate(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    set_hibernation(&s, &session, &tenant, &env, &form, true).await
}

/// `POST …/wake`: wakes a hibernated environment (editors).
pub async fn wake(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    set_hibernation(&s, &session, &tenant, &env, &form, false).await
}

async fn set_hibernation(
    s: &AppState,
    session: &Session,
    tenant: &str,
    env: &str,
    form: &Form,
    hibernate: bool,
) -> Result<Response, PortalError> {
    form.check_csrf(session)?;
    if hibernate {
        s.services
            .hibernate_environment(&session.actor, tenant, env)
            .await?;
    } else {
        s.services
            .wake_environment(&session.actor, tenant, env)
            .await?;
    }
    Ok(see_other(
        &format!("/tenants/{tenant}/environments/{env}"),
        None,
    ))
}

/// `POST …/open-airflow`: a web login into the environment's Airflow UI, with the viewer's own
/// rights.
pub async fn open_airflow(
    State(s): State<AppState>,
    session: Session,
    Path((tenant, env)): Path<(String, String)>,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    let login = s
        .services
        .create_web_login(&session.actor, &tenant, &env)
        .await?;
    Ok(see_other(&login.login_url, None))
}

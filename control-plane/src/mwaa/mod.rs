//! The MWAA-compatible API: AWS MWAA's REST-JSON protocol under `/mwaa`, so `aws mwaa` and
//! boto3's `mwaa` client work against Hangar with `--endpoint-url {HANGAR_URL}/mwaa`. Requests
//! are signed with AWS Signature V4 (service `airflow`, any region) with a tenant's access key
//! ([`auth`]); the key's tenant and role then apply as for a bearer token, through the same
//! services as the JSON API. Shapes and their mapping to Hangar's: [`model`]. Errors carry
//! MWAA's `x-amzn-ErrorType` and `{"message"}` ([`MwaaError`]).

pub mod auth;
pub mod cli;
pub mod document;
pub mod model;
mod shapes;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use hangar_tenants::FieldErrors;
use serde_json::{json, Map, Value};

use crate::api::AppState;
use crate::persistence;
use crate::service::{ServiceError, StoreContext};
use auth::Signed;

/// The fields `CreateEnvironment` requires (botocore checks them too).
pub const CREATE_REQUIRED: [&str; 4] = [
    "ExecutionRoleArn",
    "SourceBucketArn",
    "DagS3Path",
    "NetworkConfiguration",
];
/// MWAA's page size bounds for `ListEnvironments`.
const MAX_RESULTS: usize = 25;

/// An MWAA error: its HTTP status, its code (`x-amzn-ErrorType`) and its message.
#[derive(Debug)]
pub struct MwaaError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl MwaaError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }
}

/// Field errors as one message, each field by its MWAA name.
fn fields_message(errors: &FieldErrors) -> String {
    errors
        .0
        .iter()
        .map(|e| format!("{}: {}", model::mwaa_field(&e.field), e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<FieldErrors> for MwaaError {
    fn from(e: FieldErrors) -> Self {
        Self::validation(fields_message(&e))
    }
}

impl From<ServiceError> for MwaaError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(fields) => fields.into(),
            ServiceError::NotFound { kind, name } => {
                Self::not_found(format!("{kind} {name:?} not found"))
            }
            ServiceError::Forbidden(m) => {
                Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", m)
            }
            ServiceError::Unauthenticated | ServiceError::BadCredential { .. } => Self::new(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            ServiceError::Conflict { message, .. } => Self::validation(message),
            ServiceError::StaleRevision { .. } => Self::validation(e.to_string()),
            ServiceError::Unavailable(m) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                m,
            ),
            // Only a REST call reaches the environment's Airflow: what it answered and the
            // platform does not pass on is the server side's fault, as MWAA names it.
            ServiceError::BadGateway(m) => {
                Self::new(StatusCode::BAD_REQUEST, "RestApiServerException", m)
            }
            other => {
                tracing::error!(error = %other, "MWAA-compatible API: request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerException",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for MwaaError {
    fn into_response(self) -> Response {
        // AWS's own spelling: `Message` for access errors, `message` for the rest.
        let key = if self.code == "AccessDeniedException" {
            "Message"
        } else {
            "message"
        };
        let mut resp = (self.status, Json(json!({ key: self.message }))).into_response();
        resp.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        resp
    }
}

type MwaaResult = Result<Json<Value>, MwaaError>;

/// The path's one parameter (an environment's name or an ARN), refused as MWAA refuses a bad
/// field when it cannot be read (not UTF-8 once decoded).
struct Named(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Named {
    type Rejection = MwaaError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, MwaaError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| Self(p))
            .map_err(|e| MwaaError::validation(format!("the path cannot be read: {e}")))
    }
}

/// The routes, mounted at `/mwaa` ([`document::PREFIX`]); [`document`] describes each.
pub fn routes() -> Router<AppState> {
    use document as d;
    Router::new()
        .route(d::ENVIRONMENTS, get(list_environments))
        .route(
            d::ENVIRONMENT,
            put(create_environment)
                .get(get_environment)
                .patch(update_environment)
                .delete(delete_environment),
        )
        .route(
            d::TAGS,
            get(list_tags).post(tag_resource).delete(untag_resource),
        )
        .route(d::METRICS, post(publish_metrics))
        .route(d::CLI_TOKEN, post(create_cli_token))
        .route(d::WEB_TOKEN, post(create_web_login_token))
        .route(d::REST_API, post(invoke_rest_api))
        .route(d::DOCUMENT, get(openapi_document))
}

/// The routes at the control plane's root that MWAA's clients call on the web server's host:
/// the CLI (`POST /aws_mwaa/cli` with a CLI token) and the console's login page.
pub fn web_server_routes() -> Router<AppState> {
    Router::new()
        .route(document::WEB_CLI, post(cli::run))
        .route(document::CONSOLE_SSO, get(cli::console_sso))
        .route(document::WEB_LOGIN, get(cli::web_login))
}

/// `GET /mwaa/openapi.json`: this API's OpenAPI document, unauthenticated like the JSON
/// API's own, with the Airflow versions this platform offers.
async fn openapi_document(State(s): State<AppState>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document::openapi_json(Some(&s.services.platform.airflow_versions)),
    )
        .into_response()
}

/// The host MWAA's clients are to reach the web server on: this control plane, as the caller
/// reached it.
fn web_server_hostname(call: &Signed) -> String {
    call.host.clone()
}

async fn create_cli_token(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> MwaaResult {
    let token = s
        .services
        .create_cli_token(&call.actor, &call.tenant, &name)
        .await?;
    Ok(Json(json!({
        "CliToken": token,
        "WebServerHostname": web_server_hostname(&call),
    })))
}

async fn create_web_login_token(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> MwaaResult {
    let login = s
        .services
        .create_web_login(&call.actor, &call.tenant, &name)
        .await?;
    Ok(Json(json!({
        "WebToken": login.web_token,
        "WebServerHostname": web_server_hostname(&call),
        "IamIdentity": format!("arn:aws:iam::{}:user/{}", call.tenant, call.access_key_id),
        "AirflowIdentity": crate::service::airflow::airflow_user_of(&call.actor),
    })))
}

/// How long a REST call through `InvokeRestApi` may take.
const REST_API_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// `QueryParameters` as a query string (a list value repeats its key).
fn query_string(params: Option<&Value>) -> Result<String, MwaaError> {
    let Some(params) = params else {
        return Ok(String::new());
    };
    let obj = params
        .as_object()
        .ok_or_else(|| MwaaError::validation("QueryParameters: must be an object"))?;
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in obj {
        let values = match v {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for v in values {
            let text = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(MwaaError::validation(format!(
                    "QueryParameters.{k}: must be a string, number or boolean (or a list of them)"
                )))
                }
            };
            q.append_pair(k, &text);
        }
    }
    Ok(q.finish())
}

/// A REST call's answer as an error of the kind MWAA gives (client or server side).
fn rest_api_error(code: &'static str, status: u16, body: Value) -> Response {
    let mut resp = (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "message": format!("the Airflow REST API answered {status}"),
            "RestApiStatusCode": status,
            "RestApiResponse": body,
        })),
    )
        .into_response();
    resp.headers_mut()
        .insert("x-amzn-ErrorType", HeaderValue::from_static(code));
    resp
}

async fn invoke_rest_api(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> Result<Response, MwaaError> {
    let body = body_json(&call)?;
    let path = body
        .get("Path")
        .and_then(Value::as_str)
        .ok_or_else(|| MwaaError::validation("Path: is required"))?;
    if !path.starts_with('/')
        || path.split('/').any(|p| p == ".." || p == ".")
        || path.contains('?')
    {
        return Err(MwaaError::validation(
            "Path: must be an Airflow REST API path such as /dags, without '..' or a query",
        ));
    }
    let method = match body.get("Method").and_then(Value::as_str) {
        Some(m @ ("GET" | "PUT" | "POST" | "PATCH" | "DELETE")) => {
            axum::http::Method::from_bytes(m.as_bytes())
                .map_err(|_| MwaaError::validation("Method: is not valid"))?
        }
        _ => {
            return Err(MwaaError::validation(
                "Method: is required, one of GET, PUT, POST, PATCH, DELETE",
            ))
        }
    };
    let query = query_string(body.get("QueryParameters"))?;
    let tail = if query.is_empty() {
        format!("api/v2{path}")
    } else {
        format!("api/v2{path}?{query}")
    };
    for attempt in 0..2 {
        let target = s
            .services
            .airflow_target(&call.actor, &call.tenant, &name)
            .await?;
        let mut req = crate::service::airflow_call::AirflowRequest::new(
            method.clone(),
            tail.clone(),
            REST_API_WITHIN,
        );
        if let Some(b) = body.get("Body") {
            req = req.json(b);
        }
        let (status, answer) = s.services.airflow_json(&name, &target, req).await?;
        if status == StatusCode::UNAUTHORIZED && attempt == 0 {
            s.services.forget_airflow_token(&target);
            continue;
        }
        let code = status.as_u16();
        return Ok(if status.is_client_error() {
            rest_api_error("RestApiClientException", code, answer)
        } else if status.is_server_error() {
            rest_api_error("RestApiServerException", code, answer)
        } else {
            Json(json!({ "RestApiStatusCode": code, "RestApiResponse": answer })).into_response()
        });
    }
    Err(MwaaError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerException",
        "the environment's Airflow refused the platform's login",
    ))
}

/// The body as a JSON object (`{}` when empty).
fn body_json(call: &Signed) -> Result<Value, MwaaError> {
    if call.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&call.body)
        .map_err(|e| MwaaError::validation(format!("the body is not valid JSON: {e}")))
}

/// The environment's kept MWAA fields.
async fn kept(s: &AppState, env: uuid::Uuid) -> Result<Map<String, Value>, MwaaError> {
    let fields = persistence::mwaa::get(&s.services.db.pool, env)
        .await
        .store("read an environment's MWAA fields")?;
    Ok(match fields {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    })
}

async fn keep(s: &AppState, env: uuid::Uuid, fields: Map<String, Value>) -> Result<(), MwaaError> {
    if fields.is_empty() {
        return Ok(());
    }
    let mut conn = s
        .services
        .db
        .pool
        .acquire()
        .await
        .store("reach the database")?;
    persistence::mwaa::merge(&mut conn, env, &Value::Object(fields))
        .await
        .store("keep an environment's MWAA fields")?;
    Ok(())
}

async fn create_environment(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> MwaaResult {
    let body = body_json(&call)?;
    let fields = model::fields(&body, &CREATE_REQUIRED)?;
    let kept_fields = fields.kept.clone();
    let created = s
        .services
        .create_environment(&call.actor, &call.tenant, fields.create(&name), None)
        .await?;
    keep(&s, created.environment.id, kept_fields).await?;
    Ok(Json(
        json!({ "Arn": model::arn(&call.region, &call.tenant, &name) }),
    ))
}

async fn get_environment(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> MwaaResult {
    let env = s
        .services
        .get_environment(&call.actor, &call.tenant, &name)
        .await?;
    let kept = kept(&s, env.id).await?;
    Ok(Json(
        json!({ "Environment": model::environment(&env, &call.region, &call.host, &kept) }),
    ))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "MaxResults")]
    max_results: Option<String>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

async fn list_environments(
    State(s): State<AppState>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    call: Signed,
) -> MwaaResult {
    let axum::extract::Query(q) = query.map_err(|e| {
        MwaaError::validation(format!(
            "the query string cannot be read: {}",
            e.body_text()
        ))
    })?;
    let max = match q.max_results.as_deref() {
        None => MAX_RESULTS,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESULTS).contains(n))
            .ok_or_else(|| {
                MwaaError::validation(format!("MaxResults: must be 1 to {MAX_RESULTS}"))
            })?,
    };
    let names = s
        .services
        .list_environments(&call.actor, &call.tenant)
        .await?
        .into_iter()
        .map(|e| e.spec.name.as_str().to_owned())
        .collect();
    let (page, next) = model::page(names, q.next_token.as_deref(), max);
    let mut out = json!({ "Environments": page });
    if let Some(next) = next {
        out["NextToken"] = json!(next);
    }
    Ok(Json(out))
}

async fn update_environment(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> MwaaResult {
    let body = body_json(&call)?;
    let fields = model::fields(&body, &[])?;
    let kept_fields = fields.kept.clone();
    let env = if fields.maps_nothing() {
        // Only fields Hangar keeps without using: nothing of the environment changes.
        s.services
            .get_environment(&call.actor, &call.tenant, &name)
            .await?
    } else {
        s.services
            .update_environment(&call.actor, &call.tenant, &name, fields.update(), None)
            .await?
    };
    keep(&s, env.id, kept_fields).await?;
    Ok(Json(
        json!({ "Arn": model::arn(&call.region, &call.tenant, &name) }),
    ))
}

async fn delete_environment(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> MwaaResult {
    s.services
        .delete_environment(&call.actor, &call.tenant, &name)
        .await?;
    Ok(Json(json!({})))
}

/// The environment an ARN of the caller's tenant names.
fn arn_name<'a>(arn: &'a str, call: &Signed) -> Result<&'a str, MwaaError> {
    model::name_of_arn(arn, &call.tenant)
        .ok_or_else(|| MwaaError::not_found(format!("no environment has the ARN {arn:?}")))
}

async fn list_tags(State(s): State<AppState>, Named(arn): Named, call: Signed) -> MwaaResult {
    let name = arn_name(&arn, &call)?;
    let env = s
        .services
        .get_environment(&call.actor, &call.tenant, name)
        .await?;
    Ok(Json(json!({ "Tags": env.spec.tags })))
}

async fn set_tags(
    s: &AppState,
    call: &Signed,
    name: &str,
    change: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
) -> MwaaResult {
    let env = s
        .services
        .get_environment(&call.actor, &call.tenant, name)
        .await?;
    let mut tags = env.spec.tags.clone();
    change(&mut tags);
    if tags != env.spec.tags {
        let update = hangar_tenants::api::UpdateEnvironment {
            tags: Some(tags),
            ..Default::default()
        };
        s.services
            .update_environment(&call.actor, &call.tenant, name, update, None)
            .await?;
    }
    Ok(Json(json!({})))
}

async fn tag_resource(State(s): State<AppState>, Named(arn): Named, call: Signed) -> MwaaResult {
    let name = arn_name(&arn, &call)?.to_owned();
    let body = body_json(&call)?;
    let add = body
        .get("Tags")
        .and_then(Value::as_object)
        .ok_or_else(|| MwaaError::validation("Tags: is required, an object of strings"))?
        .iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|v| (k.clone(), v.to_owned()))
                .ok_or_else(|| MwaaError::validation(format!("Tags.{k}: must be a string")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    set_tags(&s, &call, &name, |tags| tags.extend(add)).await
}

async fn untag_resource(State(s): State<AppState>, Named(arn): Named, call: Signed) -> MwaaResult {
    let name = arn_name(&arn, &call)?.to_owned();
    let keys: Vec<String> = url::form_urlencoded::parse(call.query.as_bytes())
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.into_owned())
        .collect();
    if keys.is_empty() {
        return Err(MwaaError::validation("tagKeys: is required"));
    }
    set_tags(&s, &call, &name, |tags| {
        for k in &keys {
            tags.remove(k);
        }
    })
    .await
}

/// MWAA's own metrics intake (its workers call it): accepted for an environment of the caller's
/// tenant and dropped, since Hangar measures its environments itself.
async fn publish_metrics(
    State(s): State<AppState>,
    Named(name): Named,
    call: Signed,
) -> MwaaResult {
    let body = body_json(&call)?;
    if !body.get("MetricData").is_some_and(Value::is_array) {
        return Err(MwaaError::validation("MetricData: is required, a list"));
    }
    s.services
        .get_environment(&call.actor, &call.tenant, &name)
        .await?;
    Ok(Json(json!({})))
}

//! The one place where errors become HTTP answers: `application/problem+json` (RFC 9457) with
//! the offending fields named. Internal details are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hangar_tenants::api::Problem;
use hangar_tenants::FieldError;

use crate::service::ServiceError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The request could not be read at all (malformed JSON, a bad header); `field` names
    /// where, when known.
    #[error("{detail}")]
    Malformed {
        detail: String,
        field: Option<String>,
    },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// No route has this path.
    #[error("there is nothing at {path}")]
    NoRoute { path: String },
    /// The path exists, but not for this method.
    #[error("{path} does not take {method}")]
    MethodNotAllowed { method: String, path: String },
}

impl ApiError {
    pub fn malformed(detail: impl Into<String>, field: Option<&str>) -> Self {
        Self::Malformed {
            detail: detail.into(),
            field: field.map(str::to_owned),
        }
    }
}

fn problem(status: StatusCode, code: &str, detail: String, errors: Vec<FieldError>) -> Problem {
    Problem {
        type_: format!("urn:hangar:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        errors,
    }
}

impl ApiError {
    pub fn to_problem(&self) -> Problem {
        match self {
            ApiError::Service(e) => match e {
                ServiceError::Invalid(fields) => problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-input",
                    format!(
                        "invalid {}: {}",
                        if fields.0.len() == 1 {
                            "field"
                        } else {
                            "fields"
                        },
                        fields
                            .0
                            .iter()
                            .map(|f| format!("{} {}", f.field, f.message))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    fields.0.clone(),
                ),
                ServiceError::Unauthenticated => problem(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "send a valid token as `Authorization: Bearer <token>`".to_owned(),
                    vec![],
                ),
                ServiceError::BadCredential { field, message } => problem(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    message.clone(),
                    vec![FieldError::new(*field, message.clone())],
                ),
                ServiceError::Forbidden(m) => {
                    problem(StatusCode::FORBIDDEN, "forbidden", m.clone(), vec![])
                }
                ServiceError::NotFound { .. } => {
                    problem(StatusCode::NOT_FOUND, "not-found", e.to_string(), vec![])
                }
                ServiceError::Conflict { field, message } => problem(
                    StatusCode::CONFLICT,
                    "conflict",
                    message.clone(),
                    field
                        .map(|f| vec![FieldError::new(f, message.clone())])
                        .unwrap_or_default(),
                ),
                ServiceError::Unavailable(m) => problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    m.clone(),
                    vec![],
                ),
                ServiceError::BadGateway(m) => {
                    problem(StatusCode::BAD_GATEWAY, "bad-gateway", m.clone(), vec![])
                }
                ServiceError::StaleRevision { .. } => problem(
                    StatusCode::PRECONDITION_FAILED,
                    "stale-revision",
                    format!("{e}; read it again and retry"),
                    vec![FieldError::new("If-Match", e.to_string())],
                ),
                ServiceError::Store { source, .. } if database_unreachable(source) => problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the platform's database is not answering; try again shortly".to_owned(),
                    vec![],
                ),
                ServiceError::Store { .. }
                | ServiceError::Corrupt { .. }
                | ServiceError::Secrets(_) => problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; it was logged with this request's id".to_owned(),
                    vec![],
                ),
            },
            ApiError::Malformed { detail, field } => problem(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                detail.clone(),
                field
                    .as_ref()
                    .map(|f| vec![FieldError::new(f.clone(), detail.clone())])
                    .unwrap_or_default(),
            ),
            ApiError::TooLarge { .. } => problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                self.to_string(),
                vec![],
            ),
            ApiError::NoRoute { .. } => {
                problem(StatusCode::NOT_FOUND, "not-found", self.to_string(), vec![])
            }
            ApiError::MethodNotAllowed { .. } => problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                self.to_string(),
                vec![],
            ),
            ApiError::UnsupportedMediaType => problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                self.to_string(),
                vec![FieldError::new("Content-Type", "must be application/json")],
            ),
        }
    }
}

/// Whether a database error means the database could not be reached (down, restarting, out
/// of connections): worth asking again, not a fault of the request or of Hangar.
fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions (08…), the server shutting down or starting (57P01–57P03),
        // too many connections (53300).
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || ["57P01", "57P02", "57P03", "53300"].contains(&c.as_ref())
        }),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Service(
            e @ (ServiceError::Store { .. }
            | ServiceError::Corrupt { .. }
            | ServiceError::Secrets(_)),
        ) = &self
        {
            tracing::error!(error = %e, source = ?std::error::Error::source(e), "request failed");
        }
        let p = self.to_problem();
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&p).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // What is unavailable (an environment waking up, starting, or its cell's tunnel) is
        // worth asking again soon.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_database_out_of_reach_is_a_503_and_a_fault_a_500() {
        let store = |source| {
            ApiError::Service(ServiceError::Store {
                action: "read an environment",
                source,
            })
        };
        let down = store(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.headers()[header::RETRY_AFTER], "10");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(store(sqlx::Error::Io(refused)).to_problem().status, 503);
        let fault = store(sqlx::Error::RowNotFound).to_problem();
        assert_eq!(fault.status, 500);
        assert!(!fault.detail.contains("RowNotFound"), "{}", fault.detail);
    }
}

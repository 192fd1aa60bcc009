//! How a portal request fails: to the sign-in page when there is no session, a 403 page for a
//! form without its CSRF token, and otherwise the API's own error (status and message) as a
//! page. Internal details are logged, never shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tera::Context;

use crate::api::error::ApiError;
use crate::service::ServiceError;

#[derive(Debug)]
pub enum PortalError {
    /// No session (or an expired or revoked one): sign in, then come back to `next`.
    SignIn {
        next: String,
    },
    /// A state-changing request without the session's CSRF token.
    Csrf,
    Api(ApiError),
    /// A template failed to render (a bug): logged, shown as a 500.
    Template,
}

impl PortalError {
    pub fn template(name: &str, e: &tera::Error) -> Self {
        tracing::error!(template = name, error = ?e, "failed to render a portal page");
        Self::Template
    }
}

impl From<ServiceError> for PortalError {
    fn from(e: ServiceError) -> Self {
        Self::Api(ApiError::Service(e))
    }
}

impl From<ApiError> for PortalError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

/// Only paths of this origin are followed after signing in (never `//host` or a URL).
pub(crate) fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

pub(crate) fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let mut ctx = Context::new();
    ctx.insert("status", &status.as_u16());
    ctx.insert("title", title);
    ctx.insert("detail", detail);
    ctx.insert("rights", &None::<()>);
    let body = super::templates::render("error.html", &ctx).unwrap_or_else(|_| {
        format!(
            "<!doctype html><title>{}</title><p>{}</p>",
            status.as_u16(),
            title
        )
    });
    let mut resp = super::html(body);
    *resp.status_mut() = status;
    resp
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        match self {
            PortalError::SignIn { next } => {
                let next = safe_next(&next);
                let to = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                crate::api::web_login::see_other(&to, None)
            }
            PortalError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This form was sent without this session's CSRF token (or with another one). \
                 Nothing was changed. Reload the page and send the form again.",
            ),
            PortalError::Template => error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "The page could not be shown; the error was logged.",
            ),
            PortalError::Api(e) => {
                if let ApiError::Service(
                    se @ (ServiceError::Store { .. }
                    | ServiceError::Corrupt { .. }
                    | ServiceError::Secrets(_)),
                ) = &e
                {
                    tracing::error!(error = %se, source = ?std::error::Error::source(se), "portal request failed");
                }
                let p = e.to_problem();
                let status =
                    StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                error_page(status, &p.title, &p.detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("/tenants/acme", "/tenants/acme")]
    #[case("//evil.example.com/x", "/")]
    #[case("/\\evil.example.com", "/")]
    #[case("https://evil.example.com/", "/")]
    #[case("", "/")]
    fn sign_in_returns_only_to_this_origin(#[case] next: &str, #[case] want: &str) {
        assert_eq!(safe_next(next), want);
    }
}

//! Signing in and out of the portal, and the session extractor every signed-in page takes.

use std::ops::Deref;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use rand::distributions::{Alphanumeric, DistString};
use serde::Deserialize;
use tera::Context;

use super::error::{safe_next, PortalError};
use super::form::{errors_by_field, Form};
use super::templates::render;
use crate::api::airflow::cookie;
use crate::api::error::ApiError;
use crate::api::extract::request_id;
use crate::api::web_login::{https, see_other};
use crate::api::AppState;
use crate::auth::Principal;
use crate::service::portal::{
    OpenedSession, PortalSession, PORTAL_SESSION_COOKIE, PORTAL_SESSION_TTL_SECS,
};
use crate::service::ServiceError;

/// A signed-in request: the caller and the session's CSRF token. Without a live session the
/// browser is sent to the sign-in page (and back here afterwards).
#[derive(Debug, Clone)]
pub struct Session(pub PortalSession);

impl Deref for Session {
    type Target = PortalSession;
    fn deref(&self) -> &PortalSession {
        &self.0
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, PortalError> {
        let next = || {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            // Coming back to a form's target would be a GET of a POST-only route.
            let next = if parts.method == axum::http::Method::GET {
                next
            } else {
                "/".to_owned()
            };
            PortalError::SignIn { next }
        };
        let Some(value) = cookie(&parts.headers, PORTAL_SESSION_COOKIE) else {
            return Err(next());
        };
        match s.services.portal_session(value, request_id(parts)).await {
            Ok(session) => Ok(Self(session)),
            Err(ServiceError::Unauthenticated) => Err(next()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The session cookie: host-only, HttpOnly, SameSite=Strict, Secure over https; `None`
/// clears it.
fn session_cookie(value: Option<&str>, secure: bool) -> String {
    let mut c = match value {
        Some(v) => format!(
            "{PORTAL_SESSION_COOKIE}={v}; Path=/; Max-Age={PORTAL_SESSION_TTL_SECS}; HttpOnly; SameSite=Strict"
        ),
        None => format!("{PORTAL_SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
    };
    if secure {
        c.push_str("; Secure");
    }
    c
}

fn secure(s: &AppState, headers: &HeaderMap) -> bool {
    https(
        headers,
        s.services.ui_domain.as_ref().is_some_and(|d| d.https),
    )
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `/`: the signed-in viewer's start page.
pub async fn home(session: Result<Session, PortalError>) -> Result<Response, PortalError> {
    let session = session?;
    let to = match &session.actor.principal {
        Principal::Tenant { tenant, .. } => format!("/tenants/{tenant}"),
        _ => "/admin".to_owned(),
    };
    Ok(see_other(&to, None))
}

/// The cookie that pairs the sign-in form with the browser it was shown to (a double-submit
/// CSRF token: there is no session yet to hold one), so another site cannot sign a browser
/// in with its own token.
const LOGIN_CSRF_COOKIE: &str = "hangar_portal_login";

fn login_form(
    next: &str,
    token_error: Option<&str>,
    secure: bool,
) -> Result<Response, PortalError> {
    let csrf = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    let mut ctx = Context::new();
    ctx.insert("csrf_token", &csrf);
    ctx.insert("title", "Sign in");
    ctx.insert("next", safe_next(next));
    ctx.insert("rights", &None::<()>);
    ctx.insert("values", &serde_json::json!({}));
    let errors: Vec<&str> = token_error.into_iter().collect();
    ctx.insert("errors", &serde_json::json!({ "token": errors }));
    let mut resp = super::html(render("login.html", &ctx)?);
    let mut c =
        format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/login; Max-Age=3600; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    if token_error.is_some() {
        *resp.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    }
    Ok(resp)
}

/// `GET /login`: the sign-in form.
pub async fn login_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, PortalError> {
    login_form(q.next.as_deref().unwrap_or("/"), None, secure(&s, &headers))
}

fn signed_in(s: &AppState, headers: &HeaderMap, opened: &OpenedSession, next: &str) -> Response {
    let to = match safe_next(next) {
        "/" => opened.landing.as_str(),
        n => n,
    };
    see_other(
        to,
        Some(session_cookie(Some(&opened.cookie), secure(s, headers))),
    )
}

/// `POST /login` (`token`, `next`, `csrf_token`): opens a session for a valid token. The
/// form's CSRF token must match the cookie the form was shown with.
pub async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Form,
) -> Result<Response, PortalError> {
    let paired = match (cookie(&headers, LOGIN_CSRF_COOKIE), form.get("csrf_token")) {
        (Some(c), Some(f)) => !c.is_empty() && crate::auth::same_hash(c.as_bytes(), f.as_bytes()),
        _ => false,
    };
    if !paired {
        return Err(PortalError::Csrf);
    }
    let next = form.get("next").unwrap_or("/").to_owned();
    let rid = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match s
        .services
        .portal_sign_in(form.get("token").unwrap_or_default(), rid)
        .await
    {
        Ok(opened) => Ok(signed_in(&s, &headers, &opened, &next)),
        Err(e @ (ServiceError::Invalid(_) | ServiceError::BadCredential { .. })) => {
            let p = ApiError::Service(e).to_problem();
            let by = errors_by_field(&p.errors);
            let msg = by.get("token").and_then(|m| m.first()).cloned();
            login_form(
                &next,
                Some(msg.as_deref().unwrap_or(&p.detail)),
                secure(&s, &headers),
            )
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    token: Option<String>,
}

/// The answer to a redeemed link: a page that sets the session cookie and moves on to the
/// landing page by itself. Not a redirect: a link followed from another site (a chat, a mail)
/// is a cross-site navigation, and the browser would not send a `SameSite=Strict` cookie on a
/// redirect that continues it; the page's own navigation is same-site. It sends no referrer,
/// which would carry the (spent) link.
fn signed_in_by_link(
    s: &AppState,
    headers: &HeaderMap,
    opened: &OpenedSession,
) -> Result<Response, PortalError> {
    let mut ctx = Context::new();
    ctx.insert("to", &opened.landing);
    let mut resp = super::html(render("continue.html", &ctx)?);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(Some(&opened.cookie), secure(s, headers)))
    {
        h.append(header::SET_COOKIE, v);
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /login/link?token=…`: a one-time sign-in link from `hangar portal-login`.
pub async fn login_link(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Result<Response, PortalError> {
    let rid = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match s
        .services
        .redeem_portal_link(q.token.as_deref().unwrap_or_default(), rid)
        .await
    {
        Ok(opened) => signed_in_by_link(&s, &headers, &opened),
        Err(ServiceError::BadCredential { message, .. }) => {
            login_form("/", Some(&message), secure(&s, &headers))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /logout`: ends the session (server-side, so the cookie is of no use afterwards).
pub async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    session: Session,
    form: Form,
) -> Result<Response, PortalError> {
    form.check_csrf(&session)?;
    if let Some(value) = cookie(&headers, PORTAL_SESSION_COOKIE) {
        s.services.portal_sign_out(value).await?;
    }
    Ok(see_other(
        "/login",
        Some(session_cookie(None, secure(&s, &headers))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_strict_http_only_and_secure_over_https() {
        let c = session_cookie(Some("abc"), true);
        for part in [
            "hangar_portal=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Domain"), "host-only: {c}");
        assert!(!session_cookie(Some("abc"), false).contains("Secure"));
        assert!(session_cookie(None, false).contains("Max-Age=0"));
    }
}

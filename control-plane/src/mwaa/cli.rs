//! What MWAA's clients call on the web server's host: `POST /aws_mwaa/cli` with a CLI token
//! (`CreateCliToken`) and the command line as the body, answered as MWAA does
//! (`{"stdout", "stderr"}`, base64), through Hangar's allow-listed Airflow CLI; and the
//! console's login page (`/aws_mwaa/aws-console-sso?login=true#{WebToken}`), which hands the
//! web login token (`CreateWebLoginToken`) to the environment's web login.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hangar_tenants::api::RunAirflowCli;
use serde_json::json;

use super::MwaaError;
use crate::api::AppState;
use crate::service::web_login::web_login_path;

/// A command line as words: whitespace separates them, single or double quotes keep a word
/// together (as MWAA's examples quote a DAG's JSON configuration); no other shell syntax.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    out.push(w);
                }
            }
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err("an unclosed quote".to_owned());
    }
    out.extend(word);
    Ok(out)
}

/// `POST /aws_mwaa/cli`: `Authorization: Bearer {CliToken}`, the command line as the body.
pub async fn run(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match run_inner(&s, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run_inner(s: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, MwaaError> {
    let token = crate::api::extract::bearer(headers).ok_or_else(|| {
        MwaaError::new(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "send the CLI token as Authorization: Bearer {CliToken}",
        )
    })?;
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (actor, tenant, env) = s
        .services
        .cli_token_actor(token, request_id)
        .await
        .map_err(|e| {
            MwaaError::new(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                e.to_string(),
            )
        })?;
    let line = std::str::from_utf8(body)
        .map_err(|_| MwaaError::validation("the command line must be UTF-8 text"))?;
    let args =
        words(line).map_err(|e| MwaaError::validation(format!("the command line has {e}")))?;
    let result = s
        .services
        .run_airflow_cli(
            &actor,
            &tenant,
            &env,
            RunAirflowCli {
                args,
                timeout_seconds: None,
            },
        )
        .await?;
    Ok(Json(json!({
        "stdout": STANDARD.encode(result.stdout),
        "stderr": STANDARD.encode(result.stderr),
    }))
    .into_response())
}

/// The console's login page: the token is in the URL's fragment, which only the browser sees,
/// so the page passes it on to [`web_login`].
pub async fn console_sso() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(
            "<!doctype html><meta charset=utf-8><title>Signing in</title>\
             <script>location.replace('/aws_mwaa/web-login?token='+\
             encodeURIComponent(location.hash.slice(1)))</script>\
             <noscript>Signing in needs JavaScript.</noscript>",
        ),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Sends a web login token to its environment's web login, which opens the session.
pub async fn web_login(
    State(s): State<AppState>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Redirect, MwaaError> {
    let token = query
        .ok()
        .and_then(|Query(q)| q.token)
        .ok_or_else(|| MwaaError::validation("token: is required (the web login token)"))?;
    let (tenant, env) = s.services.web_login_target(&token).map_err(|e| {
        MwaaError::new(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            e.to_string(),
        )
    })?;
    let to = format!(
        "{}{}?token={}",
        s.services.ui_origin(&tenant, &env).unwrap_or_default(),
        web_login_path(&tenant, &env),
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    Ok(Redirect::to(&to))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("dags list", &["dags", "list"])]
    #[case("  dags   list-runs -d etl ", &["dags", "list-runs", "-d", "etl"])]
    #[case(r#"dags trigger etl --conf '{"a": 1}'"#, &["dags", "trigger", "etl", "--conf", r#"{"a": 1}"#])]
    #[case(r#"variables set k "two words""#, &["variables", "set", "k", "two words"])]
    #[case("x ''", &["x", ""])]
    fn command_lines_split_into_words(#[case] line: &str, #[case] expected: &[&str]) {
        assert_eq!(words(line).unwrap(), expected);
    }

    #[test]
    fn an_unclosed_quote_is_refused() {
        assert!(words("dags trigger 'etl").is_err());
    }
}

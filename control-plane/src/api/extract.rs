//! Request extractors that fail with problem+json naming the field: JSON bodies (with path
//! tracking, so a type error says `min_workers`), query strings, the bearer token and the
//! request's id.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::auth::{Actor, Credential, TokenKind};
use crate::service::ServiceError;
use hangar_tenants::{FieldError, FieldErrors};

/// A JSON body, refused with 400 when malformed, 413 when too large, 415 when not JSON and 422
/// naming the field when a field is unknown, missing or of the wrong type.
pub struct ApiJson<T>(pub T);

/// A JSON body as [`ApiJson`], with the raw bytes it was parsed from (for idempotency hashing).
pub struct ApiJsonRaw<T>(pub T, pub Bytes);

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Why a JSON document is refused: not JSON at all, or a field of the wrong kind (named).
#[derive(Debug, thiserror::Error)]
pub enum JsonRefusal {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error(transparent)]
    Field(FieldErrors),
}

/// Turns a serde error into the field it is about and a message.
fn refusal(err: serde_path_to_error::Error<serde_json::Error>) -> JsonRefusal {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if !inner.is_data() {
        return JsonRefusal::Malformed(inner.to_string());
    }
    let msg = inner.to_string();
    let msg = msg
        .rsplit_once(" at line ")
        .map_or(msg.as_str(), |(m, _)| m)
        .to_owned();
    // serde_path_to_error's path ends at the unknown field itself, but at the parent of a
    // missing one.
    let named = |marker: &str| {
        msg.split_once(marker)
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name.to_owned())
    };
    let field = match (named("missing field `"), path.as_str()) {
        (Some(name), ".") => name,
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, ".") => named("unknown field `").unwrap_or_else(|| "body".to_owned()),
        (None, _) => path,
    };
    JsonRefusal::Field(FieldErrors::from(FieldError::new(field, msg)))
}

/// A JSON document as the API reads a request body (the CLI reads request files with it too).
pub fn parse_json_fields<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRefusal> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(refusal)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json_fields(bytes).map_err(|r| match r {
        JsonRefusal::Malformed(m) => ApiError::malformed(format!("malformed JSON: {m}"), None),
        JsonRefusal::Field(errors) => ApiError::Service(errors.into()),
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJsonRaw<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    limit: super::BODY_LIMIT,
                }
            } else {
                ApiError::malformed(format!("failed to read the request body: {r}"), None)
            }
        })?;
        Ok(ApiJsonRaw(parse_json(&bytes)?, bytes))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiJsonRaw(value, _) = ApiJsonRaw::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// A query string, refused with 400 naming the parameter when it does not parse.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(v) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|r| {
                ApiError::malformed(
                    format!("invalid query string: {}", r.body_text()),
                    Some("query"),
                )
            })?;
        Ok(ApiQuery(v))
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or(ServiceError::Unauthenticated)?;
        let credential = Credential {
            kind: TokenKind::of(token),
            hash: crate::auth::hash(token),
        };
        let principal = state
            .services
            .principal_of(credential.kind, &credential.hash)
            .await?;
        Ok(Actor {
            principal,
            request_id: request_id(parts),
            credential,
        })
    }
}

/// The bearer token of `Authorization`, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The request's id (`x-request-id`, set by the middleware when the caller sent none).
pub fn request_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `If-Match: "<revision>"` (also bare or weak `W/"<revision>"`), if sent.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::malformed(
            "If-Match must be an environment's ETag, such as \"3\"",
            Some("If-Match"),
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    let s = s.trim_matches('"');
    s.parse::<i64>().map(Some).map_err(|_| bad())
}

/// `Idempotency-Key`, if sent: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::Service(
            FieldErrors::from(FieldError::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ))
            .into(),
        ));
    }
    Ok(Some(s.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hangar_tenants::api::CreateEnvironment;

    fn field_of(body: &str) -> (u16, Vec<String>) {
        let e = parse_json::<CreateEnvironment>(body.as_bytes())
            .err()
            .unwrap();
        let p = e.to_problem();
        (p.status, p.errors.into_iter().map(|f| f.field).collect())
    }

    #[test]
    fn serde_errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"name":"a","bogus":1}"#),
            (422, vec!["bogus".into()])
        );
        assert_eq!(field_of(r#"{}"#), (422, vec!["name".into()]));
        assert_eq!(
            field_of(r#"{"name":"a","min_workers":"x"}"#),
            (422, vec!["min_workers".into()])
        );
        assert_eq!(
            field_of(r#"{"name":"a","executor":"local"}"#),
            (422, vec!["executor".into()])
        );
        assert_eq!(
            field_of(r#"{"name":"a","tags":{"k":1}}"#),
            (422, vec!["tags.k".into()])
        );
        assert_eq!(field_of(r#"{"name": "#).0, 400);
        assert_eq!(field_of(r#"{"name" "a"}"#).0, 400);
        assert_eq!(field_of(r#""text""#), (422, vec!["body".into()]));
    }

    #[test]
    fn if_match_accepts_etag_forms() {
        for v in ["\"3\"", "3", "W/\"3\""] {
            let mut h = HeaderMap::new();
            h.insert(header::IF_MATCH, v.parse().unwrap());
            assert_eq!(if_match(&h).unwrap(), Some(3));
        }
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, "\"x\"".parse().unwrap());
        assert!(if_match(&h).is_err());
    }
}

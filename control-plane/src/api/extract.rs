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
/// A number with a zero fraction (`2.0`) is an integer, as JSON Schema says: a field typed as
/// an integer takes it.
pub fn parse_json_fields<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRefusal> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Err(e) if e.inner().is_data() && e.inner().to_string().contains("floating point") => {
            let mut value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| JsonRefusal::Malformed(e.to_string()))?;
            integral_floats_as_integers(&mut value);
            serde_path_to_error::deserialize(value).map_err(refusal)
        }
        read => read.map_err(refusal),
    }
}

/// Integers beyond this are not all exact as floats.
const EXACT_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

fn integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() <= EXACT_FLOAT_INTEGER {
                    // Exact: |f| is at most 2^53, whole.
                    #[allow(clippy::cast_possible_truncation)]
                    let i = f as i64;
                    *n = serde_json::Number::from(i);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(integral_floats_as_integers)
        }
        _ => {}
    }
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

/// The path's parameters, refused with 400 as a problem when one does not parse (an id that
/// is no UUID, bytes that are no UTF-8).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::malformed(r.body_text(), Some("path")))?;
        Ok(ApiPath(v))
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
    let s = v.to_str().map_err(|_| bad())?;
    let s = s.strip_prefix("W/").unwrap_or(s);
    let s = s
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<i64>().map(Some).map_err(|_| bad())
}

/// `If-Match` as [`if_match`] reads it, for the OpenAPI document.
pub const IF_MATCH_PATTERN: &str = r#"^(W/)?("[0-9]{1,18}"|[0-9]{1,18})$"#;

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
        let pattern = regex::Regex::new(IF_MATCH_PATTERN).unwrap();
        for v in [
            "\"x\"",
            "-3",
            "\"3",
            "W/3x",
            "",
            "1234567890123456789",
            " 3",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::IF_MATCH, v.parse().unwrap());
            assert!(if_match(&h).is_err(), "{v:?}");
            assert!(!pattern.is_match(v), "{v:?}");
        }
        for v in ["\"3\"", "3", "W/\"3\"", "W/7", "123456789012345678"] {
            assert!(pattern.is_match(v), "{v:?}");
        }
    }

    #[test]
    fn integral_floats_are_integers_and_other_floats_are_refused() {
        let env: CreateEnvironment =
            parse_json(br#"{"name":"a","min_workers":2.0,"max_workers":1e1}"#).unwrap();
        assert_eq!((env.min_workers, env.max_workers), (Some(2), Some(10)));
        assert_eq!(
            field_of(r#"{"name":"a","min_workers":2.5}"#),
            (422, vec!["min_workers".into()])
        );
        assert_eq!(
            field_of(r#"{"name":"a","min_workers":-1.0}"#),
            (422, vec!["min_workers".into()])
        );
        assert_eq!(
            field_of(r#"{"name":"a","min_workers":1e300}"#),
            (422, vec!["min_workers".into()])
        );
    }
}

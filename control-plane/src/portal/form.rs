//! Reading the portal's HTML forms: `application/x-www-form-urlencoded` bodies, the CSRF check
//! every state-changing form passes first, and the environment form turned into the API's own
//! request types (fields named as in the API), with errors that name the field.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use hangar_tenants::{FieldError, FieldErrors};
use serde_json::{Map, Value};

use super::error::PortalError;
use super::session::Session;
use crate::api::error::ApiError;
use crate::api::extract::{parse_json_fields, JsonRefusal};

/// An HTML form's fields, in the order sent.
#[derive(Debug, Clone, Default)]
pub struct Form(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = PortalError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let urlencoded = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !urlencoded {
            return Err(ApiError::malformed(
                "a form must be sent as application/x-www-form-urlencoded",
                Some("Content-Type"),
            )
            .into());
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            PortalError::Api(ApiError::malformed(
                format!("failed to read the form: {e}"),
                None,
            ))
        })?;
        Ok(Self::parse(&body))
    }
}

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field's value, trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Refuses the form unless it carries the session's CSRF token.
    pub fn check_csrf(&self, session: &Session) -> Result<(), PortalError> {
        match self.get("csrf_token") {
            Some(t) if session.csrf_matches(t) => Ok(()),
            _ => Err(PortalError::Csrf),
        }
    }

    /// The fields as typed, to fill the form again after an error.
    pub fn values(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter(|(k, _)| k != "csrf_token")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Whole-number fields of the environment form.
const NUMBERS: [&str; 5] = [
    "min_workers",
    "max_workers",
    "worker_weight",
    "hibernate_after_idle_minutes",
    "schedulers",
];
/// Fields holding `KEY=VALUE` lines (the API's maps).
const MAPS: [&str; 3] = ["airflow_config_overrides", "env_vars", "tags"];
/// Fields passed as text.
const TEXTS: [&str; 5] = [
    "name",
    "airflow_version",
    "executor",
    "environment_class",
    "requirements",
];

/// `KEY=VALUE` lines as a map; blank lines and `#` comments are skipped.
fn lines_map(field: &str, text: &str, errors: &mut FieldErrors) -> Map<String, Value> {
    let mut map = Map::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                map.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
            }
            _ => errors.push(field, format!("line {} is not KEY=VALUE: {line:?}", n + 1)),
        }
    }
    map
}

/// The environment form as the API's JSON request: blank fields are left out (so they keep
/// their default on create, their value on update); `requirements` is kept even when blank on
/// update (clearing it is a change). `fields` limits which are read (`name` only on create).
fn request_json(form: &Form, fields: &[&str]) -> Result<Value, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut obj = Map::new();
    for &f in TEXTS.iter().filter(|f| fields.contains(f)) {
        let value = if f == "requirements" {
            form.get(f).map(|v| v.replace("\r\n", "\n"))
        } else {
            form.text(f).map(str::to_owned)
        };
        if let Some(v) = value {
            obj.insert(f.to_owned(), Value::String(v));
        }
    }
    for &f in NUMBERS.iter().filter(|f| fields.contains(f)) {
        if let Some(v) = form.text(f) {
            match v.parse::<u32>() {
                Ok(n) => {
                    obj.insert(f.to_owned(), Value::from(n));
                }
                Err(_) => errors.push(f, format!("must be a whole number ≥ 0, not {v:?}")),
            }
        }
    }
    for &f in MAPS.iter().filter(|f| fields.contains(f)) {
        if let Some(v) = form.get(f) {
            let map = lines_map(f, v, &mut errors);
            obj.insert(f.to_owned(), Value::Object(map));
        }
    }
    if errors.0.is_empty() {
        Ok(Value::Object(obj))
    } else {
        Err(errors)
    }
}

/// Every field of the environment form.
pub const ENVIRONMENT_FIELDS: [&str; 13] = [
    "name",
    "airflow_version",
    "executor",
    "environment_class",
    "min_workers",
    "max_workers",
    "worker_weight",
    "hibernate_after_idle_minutes",
    "schedulers",
    "airflow_config_overrides",
    "env_vars",
    "requirements",
    "tags",
];

/// Parses the form into an API request type, naming the field of every error.
pub fn environment_request<T: serde::de::DeserializeOwned>(
    form: &Form,
    fields: &[&str],
) -> Result<T, FieldErrors> {
    let json = request_json(form, fields)?;
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    parse_json_fields(&bytes).map_err(|r| match r {
        JsonRefusal::Field(f) => f,
        JsonRefusal::Malformed(m) => FieldErrors::from(FieldError::new("form", m)),
    })
}

/// A map as `KEY=VALUE` lines, to fill the form from a spec.
pub fn map_lines(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Errors by the form field they belong to (a nested API field such as
/// `airflow_config_overrides.core.x` belongs to `airflow_config_overrides`); the rest under
/// `form`.
pub fn errors_by_field(errors: &[FieldError]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in errors {
        let field = ENVIRONMENT_FIELDS
            .iter()
            .chain(["token", "path", "args", "role", "confirm", "revision"].iter())
            .find(|f| {
                e.field == **f
                    || e.field.starts_with(&format!("{f}."))
                    || e.field.starts_with(&format!("{f}["))
            })
            .map_or("form", |f| f);
        out.entry(field.to_owned())
            .or_default()
            .push(e.message.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hangar_tenants::api::{CreateEnvironment, UpdateEnvironment};

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_filled_form_becomes_the_apis_create_request() {
        let f = form(&[
            ("name", " etl "),
            ("environment_class", "medium"),
            ("min_workers", "1"),
            ("max_workers", ""),
            ("hibernate_after_idle_minutes", "0"),
            ("env_vars", "A=1\r\n\r\n# note\r\nB = two\r\n"),
            ("requirements", "pyjokes==0.8.3\r\n"),
        ]);
        let req: CreateEnvironment = environment_request(&f, &ENVIRONMENT_FIELDS).unwrap();
        assert_eq!(req.name, "etl");
        assert_eq!(req.min_workers, Some(1));
        assert_eq!(req.max_workers, None, "blank keeps the default");
        assert_eq!(
            req.hibernate_after_idle_minutes,
            Some(0),
            "0 is never, not blank"
        );
        assert_eq!(
            req.env_vars.unwrap(),
            [("A".into(), "1".into()), ("B".into(), "two".into())].into()
        );
        assert_eq!(req.requirements.as_deref(), Some("pyjokes==0.8.3\n"));
    }

    #[test]
    fn errors_name_the_field_they_are_about() {
        let f = form(&[("name", "etl"), ("min_workers", "two"), ("tags", "team")]);
        let e = environment_request::<CreateEnvironment>(&f, &ENVIRONMENT_FIELDS).unwrap_err();
        let by = errors_by_field(&e.0);
        assert!(by["min_workers"][0].contains("whole number"), "{by:?}");
        assert!(by["tags"][0].contains("line 1"), "{by:?}");

        let f = form(&[("name", "etl"), ("environment_class", "huge")]);
        let e = environment_request::<CreateEnvironment>(&f, &ENVIRONMENT_FIELDS).unwrap_err();
        assert_eq!(e.0[0].field, "environment_class", "{e:?}");
    }

    #[test]
    fn an_update_leaves_out_the_name_and_keeps_a_cleared_requirements_file() {
        let f = form(&[
            ("name", "other"),
            ("requirements", ""),
            ("max_workers", "3"),
        ]);
        let fields: Vec<&str> = ENVIRONMENT_FIELDS[1..].to_vec();
        let req: UpdateEnvironment = environment_request(&f, &fields).unwrap();
        assert_eq!(req.requirements.as_deref(), Some(""));
        assert_eq!(req.max_workers, Some(3));
    }

    #[test]
    fn nested_api_fields_belong_to_their_form_field() {
        let by = errors_by_field(&[
            FieldError::new("airflow_config_overrides.core.executor", "platform-owned"),
            FieldError::new("name", "too long"),
            FieldError::new("If-Match", "stale"),
        ]);
        assert_eq!(by["airflow_config_overrides"], ["platform-owned"]);
        assert_eq!(by["name"], ["too long"]);
        assert_eq!(by["form"], ["stale"]);
    }
}

//! MWAA's shapes (botocore's `mwaa` 2020-07-01 model, REST-JSON, PascalCase) and how they map
//! to Hangar's: pure, tested with tables. What MWAA has and Hangar has no use for
//! (`ExecutionRoleArn`, `NetworkConfiguration`, `SourceBucketArn`, …) is kept verbatim as the
//! environment's MWAA fields and given back, never dropped; a field MWAA does not know is
//! refused by name.

use std::collections::BTreeMap;

use hangar_tenants::api::{CreateEnvironment, Environment, UpdateEnvironment};
use hangar_tenants::spec::EnvironmentClass;
use hangar_tenants::{FieldError, FieldErrors, Phase};
use serde_json::{json, Map, Value};

/// The fields of `CreateEnvironment` / `UpdateEnvironment` that map to Hangar's spec.
const MAPPED: [&str; 8] = [
    "Name",
    "AirflowVersion",
    "EnvironmentClass",
    "MinWorkers",
    "MaxWorkers",
    "Schedulers",
    "AirflowConfigurationOptions",
    "Tags",
];

/// What a field Hangar keeps must be, as botocore's `mwaa` model has it: checked, so a value
/// of the wrong shape is refused by name instead of being kept; the OpenAPI document
/// (`super::document`) states the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string of at most this many characters.
    Text(usize),
    /// A whole number of at least this.
    Whole(u64),
    /// An object (a structure or a map of MWAA's), kept as given.
    Object,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

impl Kind {
    /// Whether `v` has this shape (and no NUL character anywhere, which the platform's
    /// database cannot keep).
    pub fn admits(self, v: &Value) -> bool {
        !has_nul(v) && self.shape_of(v)
    }

    fn shape_of(self, v: &Value) -> bool {
        match self {
            Kind::Text(max) => v.as_str().is_some_and(|s| s.chars().count() <= max),
            Kind::Whole(min) => v
                .as_u64()
                .is_some_and(|n| n >= min && n <= u64::from(u32::MAX)),
            Kind::Object => v.is_object(),
            Kind::OneOf(choices) => v.as_str().is_some_and(|s| choices.contains(&s)),
        }
    }

    /// What a value of this kind must be, for a refusal's message.
    pub fn expected(self) -> String {
        match self {
            Kind::Text(max) => {
                format!("must be a string of at most {max} characters, without NUL")
            }
            Kind::Whole(min) => format!("must be a whole number of at least {min}"),
            Kind::Object => "must be an object without NUL characters".to_owned(),
            Kind::OneOf(choices) => format!("must be one of {}", choices.join(", ")),
        }
    }
}

/// Whether a NUL character is in a string of `v` or in a key of its objects.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The fields MWAA's create and update take that mean nothing here: stored, given back.
pub const KEPT: [(&str, Kind); 22] = [
    ("ExecutionRoleArn", Kind::Text(1224)),
    ("SourceBucketArn", Kind::Text(1224)),
    ("DagS3Path", Kind::Text(1024)),
    ("NetworkConfiguration", Kind::Object),
    ("PluginsS3Path", Kind::Text(1024)),
    ("PluginsS3ObjectVersion", Kind::Text(1024)),
    ("RequirementsS3Path", Kind::Text(1024)),
    ("RequirementsS3ObjectVersion", Kind::Text(1024)),
    ("StartupScriptS3Path", Kind::Text(1024)),
    ("StartupScriptS3ObjectVersion", Kind::Text(1024)),
    ("KmsKey", Kind::Text(1224)),
    ("LoggingConfiguration", Kind::Object),
    ("WeeklyMaintenanceWindowStart", Kind::Text(9)),
    (
        "WebserverAccessMode",
        Kind::OneOf(&["PRIVATE_ONLY", "PUBLIC_ONLY", "PUBLIC_AND_PRIVATE"]),
    ),
    ("EndpointManagement", Kind::OneOf(&["CUSTOMER", "SERVICE"])),
    ("MinWebservers", Kind::Whole(1)),
    ("MaxWebservers", Kind::Whole(1)),
    ("IdentityCenterConfiguration", Kind::Object),
    ("Teams", Kind::Object),
    ("WorkerReplacementStrategy", Kind::Text(1024)),
    ("CeleryExecutorQueue", Kind::Text(1024)),
    ("ServiceRoleArn", Kind::Text(1224)),
];

/// The bounds of the counts Hangar's spec checks (`hangar_tenants::spec`): (field, least,
/// most).
pub const COUNTS: [(&str, u32, u32); 3] = [
    ("MinWorkers", 0, 100),
    ("MaxWorkers", 1, 100),
    ("Schedulers", 1, 5),
];

/// MWAA's environment classes and Hangar's.
pub const CLASSES: [(&str, EnvironmentClass); 5] = [
    ("mw1.micro", EnvironmentClass::Micro),
    ("mw1.small", EnvironmentClass::Small),
    ("mw1.medium", EnvironmentClass::Medium),
    ("mw1.large", EnvironmentClass::Large),
    ("mw1.xlarge", EnvironmentClass::Xlarge),
];

pub fn class_from_mwaa(s: &str) -> Result<EnvironmentClass, FieldError> {
    CLASSES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let offered: Vec<&str> = CLASSES.iter().map(|(n, _)| *n).collect();
            FieldError::new(
                "EnvironmentClass",
                format!("{s:?} is not offered; use one of {}", offered.join(", ")),
            )
        })
}

pub fn class_to_mwaa(c: EnvironmentClass) -> &'static str {
    CLASSES
        .iter()
        .find(|(_, k)| *k == c)
        .map_or("mw1.small", |(n, _)| *n)
}

/// MWAA's status of a phase: hibernation is Hangar's own and reads as available, since a
/// request wakes the environment.
pub fn status(phase: Phase) -> &'static str {
    match phase {
        Phase::Creating => "CREATING",
        Phase::CreateFailed => "CREATE_FAILED",
        Phase::Available | Phase::Hibernating | Phase::Hibernated => "AVAILABLE",
        Phase::Updating => "UPDATING",
        Phase::UpdateFailed => "UPDATE_FAILED",
        Phase::Unavailable => "UNAVAILABLE",
        Phase::Deleting => "DELETING",
        Phase::Deleted => "DELETED",
    }
}

/// An environment's ARN: the tenant stands where AWS has the account.
pub fn arn(region: &str, tenant: &str, name: &str) -> String {
    format!("arn:aws:airflow:{region}:{tenant}:environment/{name}")
}

/// The environment name an ARN names, if it is one of `tenant`'s (another tenant's ARN names
/// nothing: it is not found, as any name the caller cannot see).
pub fn name_of_arn<'a>(arn: &'a str, tenant: &str) -> Option<&'a str> {
    let rest = arn.strip_prefix("arn:aws:airflow:")?;
    let (_region, rest) = rest.split_once(':')?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("environment/")?;
    (account == tenant && !name.is_empty() && !name.contains('/')).then_some(name)
}

/// Hangar's field names as MWAA calls them, for validation messages.
pub fn mwaa_field(hangar: &str) -> String {
    let top = hangar.split(['.', '[']).next().unwrap_or(hangar);
    let mapped = match top {
        "name" => "Name",
        "airflow_version" => "AirflowVersion",
        "environment_class" => "EnvironmentClass",
        "min_workers" => "MinWorkers",
        "max_workers" => "MaxWorkers",
        "schedulers" => "Schedulers",
        "airflow_config_overrides" => "AirflowConfigurationOptions",
        "tags" => "Tags",
        other => other,
    };
    format!("{mapped}{}", &hangar[top.len()..])
}

fn object(body: &Value) -> Result<&Map<String, Value>, FieldErrors> {
    body.as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object").into())
}

fn string_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, FieldError> {
    let bad = || FieldError::new(field, "must be an object of strings");
    v.as_object()
        .ok_or_else(bad)?
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(bad)?.to_owned())))
        .collect()
}

fn count(v: &Value, field: &str) -> Result<u32, FieldError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| FieldError::new(field, "must be a whole number"))
}

/// The mapped fields of a create or update request, and the kept ones (verbatim).
#[derive(Debug, Default, PartialEq)]
pub struct Fields {
    pub airflow_version: Option<String>,
    pub environment_class: Option<EnvironmentClass>,
    pub min_workers: Option<u32>,
    pub max_workers: Option<u32>,
    pub schedulers: Option<u32>,
    pub airflow_config_overrides: Option<BTreeMap<String, String>>,
    pub tags: Option<BTreeMap<String, String>>,
    pub kept: Map<String, Value>,
}

/// Reads a create or update body: every field MWAA knows, nothing else (an unknown one is
/// refused by name); `required` must be there (create's).
pub fn fields(body: &Value, required: &[&str]) -> Result<Fields, FieldErrors> {
    let body = object(body)?;
    let mut errors = FieldErrors::default();
    let mut out = Fields::default();
    for name in required {
        if !body.contains_key(*name) {
            errors.push(*name, "is required");
        }
    }
    for (k, v) in body {
        let mut take = |r: Result<(), FieldError>| {
            if let Err(e) = r {
                errors.push(e.field, e.message);
            }
        };
        match k.as_str() {
            // The name is the path's; a body may repeat it.
            "Name" => take(
                v.as_str()
                    .map(|_| ())
                    .ok_or_else(|| FieldError::new(k, "must be a string")),
            ),
            "AirflowVersion" => take(
                v.as_str()
                    .map(|s| out.airflow_version = Some(s.to_owned()))
                    .ok_or_else(|| FieldError::new(k, "must be a string")),
            ),
            "EnvironmentClass" => take(match v.as_str() {
                Some(s) => class_from_mwaa(s).map(|c| out.environment_class = Some(c)),
                None => Err(FieldError::new(k, "must be a string")),
            }),
            "MinWorkers" => take(count(v, k).map(|n| out.min_workers = Some(n))),
            "MaxWorkers" => take(count(v, k).map(|n| out.max_workers = Some(n))),
            "Schedulers" => take(count(v, k).map(|n| out.schedulers = Some(n))),
            "AirflowConfigurationOptions" => {
                take(string_map(v, k).map(|m| out.airflow_config_overrides = Some(m)))
            }
            "Tags" => take(string_map(v, k).map(|m| out.tags = Some(m))),
            other => match KEPT.iter().find(|(name, _)| *name == other) {
                Some((_, kind)) if kind.admits(v) => {
                    out.kept.insert(other.to_owned(), v.clone());
                }
                Some((_, kind)) => errors.push(other, kind.expected()),
                None => errors.push(other, "is not a field of this operation"),
            },
        }
    }
    debug_assert!(MAPPED.iter().all(|m| KEPT.iter().all(|(k, _)| k != m)));
    errors.into_result(out)
}

impl Fields {
    /// Whether none of Hangar's own settings is given (only fields it keeps without using).
    pub fn maps_nothing(&self) -> bool {
        self.airflow_version.is_none()
            && self.environment_class.is_none()
            && self.min_workers.is_none()
            && self.max_workers.is_none()
            && self.schedulers.is_none()
            && self.airflow_config_overrides.is_none()
            && self.tags.is_none()
    }

    pub fn create(self, name: &str) -> CreateEnvironment {
        CreateEnvironment {
            name: name.to_owned(),
            airflow_version: self.airflow_version,
            environment_class: self.environment_class,
            min_workers: self.min_workers,
            max_workers: self.max_workers,
            schedulers: self.schedulers,
            airflow_config_overrides: self.airflow_config_overrides,
            tags: self.tags,
            ..CreateEnvironment::default()
        }
    }

    pub fn update(self) -> UpdateEnvironment {
        UpdateEnvironment {
            airflow_version: self.airflow_version,
            environment_class: self.environment_class,
            min_workers: self.min_workers,
            max_workers: self.max_workers,
            schedulers: self.schedulers,
            airflow_config_overrides: self.airflow_config_overrides,
            tags: self.tags,
            ..UpdateEnvironment::default()
        }
    }
}

fn epoch(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// A webserver URL as MWAA gives it, without a scheme: the environment's own UI host, or the
/// control plane's host (`host`, as the caller reached it) and the environment's path on it,
/// so that `https://{WebserverUrl}` opens the UI either way.
fn webserver_url(url: &str, host: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => rest.trim_end_matches('/').to_owned(),
        None => format!("{host}{}", url.trim_end_matches('/')),
    }
}

/// MWAA's `Environment` of a Hangar environment, with its kept MWAA fields; `host` is the
/// control plane's as the caller reached it.
pub fn environment(
    env: &Environment,
    region: &str,
    host: &str,
    kept: &Map<String, Value>,
) -> Value {
    let spec = &env.spec;
    let mut out = kept.clone();
    let last_update_status = match env.phase {
        Phase::UpdateFailed | Phase::CreateFailed => "FAILED",
        Phase::Creating | Phase::Updating => "PENDING",
        _ => "SUCCESS",
    };
    let mut last = json!({
        "Status": last_update_status,
        "CreatedAt": epoch(env.updated_at),
        "Source": "Hangar",
    });
    if last_update_status == "FAILED" {
        last["Error"] = json!({
            "ErrorCode": "UPDATE_FAILED",
            "ErrorMessage": env.status_message.clone().unwrap_or_default(),
        });
    }
    let mapped = json!({
        "Name": spec.name.as_str(),
        "Status": status(env.phase),
        "Arn": arn(region, &env.tenant, spec.name.as_str()),
        "CreatedAt": epoch(env.created_at),
        "AirflowVersion": spec.airflow_version.as_str(),
        "EnvironmentClass": class_to_mwaa(spec.environment_class),
        "MinWorkers": spec.min_workers,
        "MaxWorkers": spec.max_workers,
        "Schedulers": spec.schedulers,
        "AirflowConfigurationOptions": spec.airflow_config_overrides,
        "Tags": spec.tags,
        "LastUpdate": last,
    });
    if let Value::Object(m) = mapped {
        out.extend(m);
    }
    if let Some(url) = &env.webserver_url {
        out.insert("WebserverUrl".to_owned(), json!(webserver_url(url, host)));
    }
    Value::Object(out)
}

/// One page of names after `next_token` (the last name of the previous page), at most
/// `max_results`, with the token of the next page.
pub fn page(
    mut names: Vec<String>,
    next_token: Option<&str>,
    max_results: usize,
) -> (Vec<String>, Option<String>) {
    names.sort();
    let start = next_token.map_or(0, |t| names.partition_point(|n| n.as_str() <= t));
    let page: Vec<String> = names
        .iter()
        .skip(start)
        .take(max_results)
        .cloned()
        .collect();
    let more = start + page.len() < names.len();
    let next = if more { page.last().cloned() } else { None };
    (page, next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("mw1.micro", Some(EnvironmentClass::Micro))]
    #[case("mw1.small", Some(EnvironmentClass::Small))]
    #[case("mw1.xlarge", Some(EnvironmentClass::Xlarge))]
    #[case("mw1.2xlarge", None)]
    #[case("small", None)]
    fn classes_map_both_ways(#[case] mwaa: &str, #[case] hangar: Option<EnvironmentClass>) {
        match hangar {
            Some(c) => {
                assert_eq!(class_from_mwaa(mwaa).unwrap(), c);
                assert_eq!(class_to_mwaa(c), mwaa);
            }
            None => {
                let e = class_from_mwaa(mwaa).unwrap_err();
                assert_eq!(e.field, "EnvironmentClass");
                assert!(e.message.contains("mw1.micro"), "{}", e.message);
            }
        }
    }

    #[test]
    fn every_phase_has_an_mwaa_status_and_hibernation_reads_as_available() {
        for p in Phase::ALL {
            assert!(!status(p).is_empty());
        }
        assert_eq!(status(Phase::Hibernated), "AVAILABLE");
        assert_eq!(status(Phase::UpdateFailed), "UPDATE_FAILED");
    }

    #[rstest]
    #[case("arn:aws:airflow:eu-west-1:acme:environment/etl", "acme", Some("etl"))]
    #[case("arn:aws:airflow:eu-west-1:other:environment/etl", "acme", None)]
    #[case("arn:aws:airflow:eu-west-1:acme:environment/", "acme", None)]
    #[case("arn:aws:airflow:eu-west-1:acme:environment/a/b", "acme", None)]
    #[case("arn:aws:s3:::bucket", "acme", None)]
    #[case("etl", "acme", None)]
    fn arns_resolve_within_the_callers_tenant(
        #[case] arn_: &str,
        #[case] tenant: &str,
        #[case] name: Option<&str>,
    ) {
        assert_eq!(name_of_arn(arn_, tenant), name);
        if let Some(n) = name {
            assert_eq!(arn("eu-west-1", tenant, n), arn_);
        }
    }

    #[test]
    fn create_fields_map_and_keep_the_rest_verbatim() {
        let body = json!({
            "ExecutionRoleArn": "arn:aws:iam::1:role/x",
            "SourceBucketArn": "arn:aws:s3:::b",
            "DagS3Path": "dags",
            "NetworkConfiguration": {"SubnetIds": ["a", "b"]},
            "EnvironmentClass": "mw1.medium",
            "MaxWorkers": 5,
            "MinWorkers": 1,
            "AirflowConfigurationOptions": {"core.default_timezone": "utc"},
            "Tags": {"team": "data"},
        });
        let f = fields(&body, &["ExecutionRoleArn", "SourceBucketArn", "DagS3Path"]).unwrap();
        assert_eq!(f.environment_class, Some(EnvironmentClass::Medium));
        assert_eq!(f.max_workers, Some(5));
        assert_eq!(f.kept.len(), 4);
        assert_eq!(f.kept["NetworkConfiguration"]["SubnetIds"][1], "b");
        let create = f.create("etl");
        assert_eq!(create.name, "etl");
        assert_eq!(create.tags.unwrap()["team"], "data");
    }

    #[rstest]
    #[case(json!({"KmsKey": "a\0b"}), "KmsKey")]
    #[case(json!({"NetworkConfiguration": {"SubnetIds": ["a\0"]}}), "NetworkConfiguration")]
    #[case(json!({"WebserverAccessMode": "SOMETIMES"}), "WebserverAccessMode")]
    #[case(json!({"MinWebservers": 0}), "MinWebservers")]
    #[case(json!({"MaxWorkers": "five"}), "MaxWorkers")]
    #[case(json!({"EnvironmentClass": "mw1.2xlarge"}), "EnvironmentClass")]
    #[case(json!({"Tags": {"a": 1}}), "Tags")]
    #[case(json!({"Bogus": 1}), "Bogus")]
    #[case(json!({}), "ExecutionRoleArn")]
    fn bad_fields_are_refused_by_their_mwaa_name(#[case] body: Value, #[case] field: &str) {
        let errors = fields(&body, &["ExecutionRoleArn"]).unwrap_err();
        assert!(
            errors.0.iter().any(|e| e.field == field),
            "{field}: {errors:?}"
        );
    }

    #[rstest]
    #[case("max_workers", "MaxWorkers")]
    #[case(
        "airflow_config_overrides.core.x",
        "AirflowConfigurationOptions.core.x"
    )]
    #[case("tags[k]", "Tags[k]")]
    #[case("body", "body")]
    fn hangar_fields_are_named_as_mwaa_names_them(#[case] hangar: &str, #[case] mwaa: &str) {
        assert_eq!(mwaa_field(hangar), mwaa);
    }

    #[rstest]
    #[case(
        "/v1/tenants/t/environments/e/airflow/",
        "h:8080",
        "h:8080/v1/tenants/t/environments/e/airflow"
    )]
    #[case("https://e--t.ui.example.com/", "h:8080", "e--t.ui.example.com")]
    fn webserver_urls_have_no_scheme(#[case] url: &str, #[case] host: &str, #[case] want: &str) {
        assert_eq!(webserver_url(url, host), want);
    }

    #[test]
    fn pages_follow_the_last_name_given() {
        let names: Vec<String> = ["c", "a", "e", "b", "d"].map(String::from).to_vec();
        let (p1, t1) = page(names.clone(), None, 2);
        assert_eq!(p1, ["a", "b"]);
        let (p2, t2) = page(names.clone(), t1.as_deref(), 2);
        assert_eq!(p2, ["c", "d"]);
        let (p3, t3) = page(names.clone(), t2.as_deref(), 2);
        assert_eq!(p3, ["e"]);
        assert_eq!(t3, None);
        let (all, none) = page(names, None, 25);
        assert_eq!(all.len(), 5);
        assert_eq!(none, None);
    }
}

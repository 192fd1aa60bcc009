//! What every operation of the OpenAPI document answers besides its own outcomes, added in one
//! place so the document says what the API does: the problems any authenticated route, any
//! route naming an object and any route reading a JSON body can answer, and the constraints
//! of the names in paths.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr};

use super::error::PROBLEM_JSON;
use hangar_tenants::names::MAX_NAME_LEN;

/// The pattern of a tenant, environment or cell name (an RFC 1123 label of at most 40
/// characters), as `hangar_tenants::names` validates it.
pub const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$";

/// The constraints of parameters by name and place: (where, name, pattern, max length). The
/// patterns are what the handlers check (names, DAG and task ids as Airflow's, DAG file paths
/// as `hangar_tenants::dag_path`, the headers as `super::extract`).
const CONSTRAINED: [(ParameterIn, &str, &str, usize); 9] = [
    (ParameterIn::Path, "tenant", NAME_PATTERN, MAX_NAME_LEN),
    (ParameterIn::Path, "env", NAME_PATTERN, MAX_NAME_LEN),
    (ParameterIn::Path, "cell", NAME_PATTERN, MAX_NAME_LEN),
    (ParameterIn::Path, "dag", "^[A-Za-z0-9_.-]+$", 250),
    (ParameterIn::Path, "task", "^[A-Za-z0-9_.-]+$", 250),
    (ParameterIn::Path, "run", r"^[^/\x00-\x1f\x7f-\x9f]+$", 250),
    (
        ParameterIn::Path,
        "path",
        hangar_tenants::dag_path::PATTERN,
        1024,
    ),
    (ParameterIn::Header, "Idempotency-Key", "^[!-~]+$", 255),
    (
        ParameterIn::Header,
        "If-Match",
        super::extract::IF_MATCH_PATTERN,
        24,
    ),
];

/// The shared answers, by name in `components.responses`: (name, status, description).
const ANSWERS: [(&str, &str, &str); 9] = [
    (
        "Malformed",
        "400",
        "The request could not be read: malformed JSON, a bad header or query string (named in `errors[0].field` when known)",
    ),
    (
        "Unauthenticated",
        "401",
        "No token, or one that is unknown, expired or revoked",
    ),
    (
        "Forbidden",
        "403",
        "The token's role or scope does not allow this",
    ),
    (
        "NotFound",
        "404",
        "No such object, or one the token may not see",
    ),
    (
        "NotRunning",
        "409",
        "The environment is not running (creating, failed or being deleted); the detail names its phase",
    ),
    (
        "TooLarge",
        "413",
        "The request body is larger than the limit",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "The request body is not JSON (`Content-Type: application/json`)",
    ),
    (
        "Unavailable",
        "503",
        "Not now: the environment is waking or starting, its cell is unreachable, the platform's database is not answering, or the platform lacks what this needs (a bucket); `Retry-After` says when to ask again",
    ),
    (
        "Invalid",
        "422",
        "A field is missing, unknown, of the wrong type or out of range; `errors` names each",
    ),
];

fn problem_answer(status: &str, description: &str) -> Response {
    let mut answer = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if status == "503" {
        answer = answer.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("Seconds"))
                .build(),
        );
    }
    if status == "401" {
        answer = answer.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("`Bearer`"))
                .build(),
        );
    }
    answer.build()
}

/// Operations that need what may be missing for a while (an awake environment, its cell's
/// tunnel, the platform bucket), so they can answer 503.
const MAY_BE_UNAVAILABLE: [&str; 9] = [
    "run_airflow_cli",
    "import_errors",
    "environment_logs",
    "task_log",
    "list_dags",
    "put_dag",
    "get_dag",
    "delete_dag",
    "dag_upload_url",
];

/// Operations that reach the environment's Airflow, so it must be running.
const NEEDS_RUNNING: [&str; 2] = ["run_airflow_cli", "import_errors"];

/// How what one operation creates is addressed by others (OpenAPI links): (operation, status,
/// [(linked operation, [(parameter, runtime expression)])]). Objects are addressed by name, so
/// a client (or a fuzzer) follows `name`, never `id`, except where the path takes the id.
type Links = [(&'static str, &'static [(&'static str, &'static str)])];
const TENANT_LINKS: &Links = &[
    ("get_tenant", &[("tenant", "$response.body#/name")]),
    ("delete_tenant", &[("tenant", "$response.body#/name")]),
    ("list_environments", &[("tenant", "$response.body#/name")]),
    ("create_environment", &[("tenant", "$response.body#/name")]),
    ("list_tokens", &[("tenant", "$response.body#/name")]),
    ("create_token", &[("tenant", "$response.body#/name")]),
    ("list_access_keys", &[("tenant", "$response.body#/name")]),
    ("create_access_key", &[("tenant", "$response.body#/name")]),
    ("audit_log", &[("tenant", "$response.body#/name")]),
];
const ENVIRONMENT: &[(&str, &str)] = &[
    ("tenant", "$request.path.tenant"),
    ("env", "$response.body#/name"),
];
const ENVIRONMENT_LINKS: &Links = &[
    ("get_environment", ENVIRONMENT),
    ("update_environment", ENVIRONMENT),
    ("delete_environment", ENVIRONMENT),
    ("hibernate_environment", ENVIRONMENT),
    ("wake_environment", ENVIRONMENT),
    ("environment_logs", ENVIRONMENT),
    ("import_errors", ENVIRONMENT),
    ("list_dags", ENVIRONMENT),
];
const DAG_FILE: &[(&str, &str)] = &[
    ("tenant", "$request.path.tenant"),
    ("env", "$request.path.env"),
    ("path", "$response.body#/path"),
];
const LINKS: [(&str, &str, &Links); 6] = [
    ("create_tenant", "201", TENANT_LINKS),
    ("create_environment", "201", ENVIRONMENT_LINKS),
    (
        "create_token",
        "201",
        &[(
            "revoke_token",
            &[
                ("tenant", "$request.path.tenant"),
                ("token_id", "$response.body#/id"),
            ],
        )],
    ),
    (
        "create_access_key",
        "201",
        &[(
            "revoke_access_key",
            &[
                ("tenant", "$request.path.tenant"),
                ("key", "$response.body#/id"),
            ],
        )],
    ),
    (
        "create_cell",
        "201",
        &[("register_cell", &[("cell", "$response.body#/cell/name")])],
    ),
    (
        "put_dag",
        "201",
        &[("get_dag", DAG_FILE), ("delete_dag", DAG_FILE)],
    ),
];

/// Adds the shared answers to `components.responses` and refers to them from each operation
/// they apply to (never replacing an answer an operation describes itself); states the
/// constraints of the names in paths.
pub fn complete(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, status, description) in ANSWERS {
        components.responses.insert(
            name.to_owned(),
            RefOr::T(problem_answer(status, description)),
        );
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        let methods = operations.iter().filter(|(_, op)| op.is_some()).count();
        for (method, op) in operations {
            let Some(op) = op else { continue };
            // One handler for several methods (the Airflow proxy) gives each the handler's
            // name; an operation id must be unique.
            if methods > 1 && PER_METHOD.contains(&op.operation_id.as_deref().unwrap_or_default()) {
                op.operation_id = op.operation_id.take().map(|id| format!("{id}_{method}"));
            }
            complete_operation(op);
            link(op);
            // A DAG file may be empty (`__init__.py`): its body is optional.
            if op.operation_id.as_deref() == Some("put_dag") {
                if let Some(body) = op.request_body.as_mut() {
                    body.required = Some(utoipa::openapi::Required::False);
                }
            }
        }
    }
}

/// Handlers that take several methods, whose operations are named `<handler>_<method>`.
const PER_METHOD: [&str; 4] = ["proxy_root", "proxy", "proxy_by_id_root", "proxy_by_id"];

fn complete_operation(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let parameters = op.parameters.as_deref().unwrap_or_default();
    let names_object = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let reads_parameters = parameters
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Header));
    let reads_body = op.request_body.is_some();

    let mut answers = Vec::new();
    if secured {
        answers.extend(["Unauthenticated", "Forbidden"]);
    }
    if names_object {
        answers.push("NotFound");
    }
    if reads_parameters || reads_body {
        answers.extend(["Malformed", "Invalid"]);
    }
    if reads_body {
        answers.extend(["TooLarge", "UnsupportedMediaType"]);
    }
    // An authenticated request reads its token from the platform's database, which may not
    // answer for a while (restarting).
    if secured
        || op
            .operation_id
            .as_deref()
            .is_some_and(|id| MAY_BE_UNAVAILABLE.contains(&id))
    {
        answers.push("Unavailable");
    }
    if op
        .operation_id
        .as_deref()
        .is_some_and(|id| NEEDS_RUNNING.contains(&id))
    {
        answers.push("NotRunning");
    }
    for name in answers {
        let Some((_, status, _)) = ANSWERS.iter().find(|(n, _, _)| *n == name) else {
            continue;
        };
        op.responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }

    for p in op.parameters.iter_mut().flatten() {
        let Some((_, _, pattern, max)) = CONSTRAINED
            .iter()
            .find(|(place, name, _, _)| *place == p.parameter_in && *name == p.name)
        else {
            continue;
        };
        p.schema = Some(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(*pattern))
                .min_length(Some(1))
                .max_length(Some(*max))
                .build(),
        )));
    }
}

/// The links of what `op` creates, on its success answer.
fn link(op: &mut Operation) {
    let id = op.operation_id.clone().unwrap_or_default();
    for (from, status, links) in LINKS {
        if from != id {
            continue;
        }
        let Some(RefOr::T(answer)) = op.responses.responses.get_mut(status) else {
            continue;
        };
        for (to, parameters) in links {
            let mut l = LinkBuilder::new().operation_id(*to);
            for (name, expression) in *parameters {
                l = l.parameter(*name, *expression);
            }
            answer.links.insert((*to).to_owned(), RefOr::T(l.build()));
        }
    }
}

/// utoipa 5 writes a link's fields as `operation_id` and `request_body`; OpenAPI spells them
/// `operationId` and `requestBody`.
pub fn spell_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let answers = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut());
    for answer in answers {
        let Some(links) = answer.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(from) {
                    link.insert(to.to_owned(), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(&super::super::openapi_json()).unwrap()
    }

    #[test]
    fn every_authenticated_operation_declares_401_and_403_and_every_body_415() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let answers = op["responses"].as_object().unwrap();
                if op.get("security").is_some() {
                    for status in ["401", "403"] {
                        assert!(answers.contains_key(status), "{method} {path}: {status}");
                    }
                }
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415", "422"] {
                        assert!(answers.contains_key(status), "{method} {path}: {status}");
                    }
                }
                if path.contains('{') {
                    assert!(answers.contains_key("404"), "{method} {path}: 404");
                }
            }
        }
    }

    #[test]
    fn links_name_their_operation_as_openapi_spells_it() {
        let doc = doc();
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let links = &doc["paths"]["/v1/tenants"]["post"]["responses"]["201"]["links"];
        assert_eq!(
            links["get_tenant"]["parameters"]["tenant"],
            "$response.body#/name"
        );
        for (from, _, to) in super::LINKS {
            assert!(ids.contains(&from), "{from}");
            for (id, _) in to {
                assert!(ids.contains(id), "{from} links to unknown {id}");
            }
        }
        let text = doc.to_string();
        assert!(text.contains("\"operationId\":\"get_tenant\""));
        assert!(!text.contains("operation_id"));
    }

    #[test]
    fn a_dag_file_path_has_one_pattern_in_body_and_path() {
        let doc = doc();
        let body = &doc["components"]["schemas"]["CreateUploadUrl"]["properties"]["path"];
        assert_eq!(body["pattern"], hangar_tenants::dag_path::PATTERN);
        let param = doc["paths"]["/v1/tenants/{tenant}/environments/{env}/dags/{path}"]["put"]
            ["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "path")
            .unwrap()
            .clone();
        assert_eq!(
            param["schema"]["pattern"],
            hangar_tenants::dag_path::PATTERN
        );
    }
}

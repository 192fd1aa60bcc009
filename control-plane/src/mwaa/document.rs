//! The OpenAPI document of the MWAA-compatible API, served at `/mwaa/openapi.json`: the
//! operations of botocore's `mwaa` model that Hangar answers, with MWAA's field names, the
//! constraints the handlers and Hangar's spec enforce, every status an operation can answer
//! and MWAA's error shape (`x-amzn-ErrorType` and `{"message"}`); and the web server's routes
//! at the root (`/aws_mwaa/…`). Built from the same tables the handlers read
//! ([`super::model`], through [`super::shapes`]), so the document follows the code.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, ParameterStyle,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder,
    PathItem, Paths, Ref, RefOr, Required,
};

use super::shapes::{
    any, any_object, empty_object, environment_input, environment_output, error_schema, object_of,
    rest_api_input, schema_ref, string_map, text, whole,
};
use crate::api::document::NAME_PATTERN;
use hangar_tenants::names::MAX_NAME_LEN;

/// The routes of the MWAA-compatible API under `/mwaa`, as mounted by [`super::routes`].
pub const ENVIRONMENTS: &str = "/environments";
pub const ENVIRONMENT: &str = "/environments/{name}";
pub const TAGS: &str = "/tags/{arn}";
pub const METRICS: &str = "/metrics/environments/{name}";
pub const CLI_TOKEN: &str = "/clitoken/{name}";
pub const WEB_TOKEN: &str = "/webtoken/{name}";
pub const REST_API: &str = "/restapi/{name}";
pub const DOCUMENT: &str = "/openapi.json";
/// Where [`super::routes`] is mounted.
pub const PREFIX: &str = "/mwaa";
/// The web server's routes, at the control plane's root ([`super::web_server_routes`]).
pub const WEB_CLI: &str = "/aws_mwaa/cli";
pub const CONSOLE_SSO: &str = "/aws_mwaa/aws-console-sso";
pub const WEB_LOGIN: &str = "/aws_mwaa/web-login";

/// Every path the document has, as mounted (for the test that they are the routes).
pub fn mounted_paths() -> Vec<String> {
    let under = [
        ENVIRONMENTS,
        ENVIRONMENT,
        TAGS,
        METRICS,
        CLI_TOKEN,
        WEB_TOKEN,
        REST_API,
        DOCUMENT,
    ];
    under
        .iter()
        .map(|p| format!("{PREFIX}{p}"))
        .chain([WEB_CLI, CONSOLE_SSO, WEB_LOGIN].map(str::to_owned))
        .collect()
}

/// MWAA's error codes (`x-amzn-ErrorType`) by status, as `super::MwaaError` and
/// `super::auth` answer them.
const ERROR_CODES: [(&str, &[&str]); 5] = [
    (
        "400",
        &[
            "ValidationException",
            "RestApiClientException",
            "RestApiServerException",
        ],
    ),
    (
        "403",
        &[
            "MissingAuthenticationTokenException",
            "IncompleteSignatureException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "AccessDeniedException",
        ],
    ),
    ("404", &["ResourceNotFoundException"]),
    ("503", &["ServiceUnavailableException"]),
    ("500", &["InternalServerException"]),
];

/// The shared error answers, by name in `components.responses`: (name, status, description).
const ANSWERS: [(&str, &str, &str); 4] = [
    (
        "ValidationException",
        "400",
        "The request is not valid: a field is missing, unknown, of the wrong type or out of range \
         (named in the message), or the body is not JSON or too large",
    ),
    (
        "AccessDeniedException",
        "403",
        "The request is unsigned (`MissingAuthenticationTokenException`), its signature cannot be \
         read (`IncompleteSignatureException`), it is signed with an unknown or revoked key \
         (`UnrecognizedClientException`) or wrongly (`InvalidSignatureException`), or the key's role does not allow this (`AccessDeniedException`)",
    ),
    (
        "ResourceNotFoundException",
        "404",
        "No such environment, or one of another tenant",
    ),
    (
        "ServiceUnavailableException",
        "503",
        "Not now: the environment is not running or its cell is unreachable, or the platform's \
         database is not answering",
    ),
];

fn json_answer(description: &str, schema: impl Into<RefOr<Schema>>) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(schema)).build(),
    )
}

fn error_answer(status: &str, description: &str) -> Response {
    let codes = ERROR_CODES
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, c)| c.to_vec())
        .unwrap_or_default();
    let header = HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes)),
        )
        .description(Some("MWAA's error code"))
        .build();
    json_answer(description, schema_ref("Error"))
        .header("x-amzn-ErrorType", header)
        .build()
}

/// One operation of the API under `/mwaa`: signed, naming an environment (or an ARN) when it
/// has a path parameter, answering `ok` or MWAA's errors.
struct Op {
    id: &'static str,
    /// Whether the body may be left out (read as `{}`).
    optional_body: bool,
    summary: &'static str,
    path_parameter: Option<&'static str>,
    query: Vec<utoipa::openapi::path::Parameter>,
    body: Option<Schema>,
    ok: Schema,
}

fn signed(op: Op) -> Operation {
    let mut b = OperationBuilder::new()
        .operation_id(Some(op.id))
        .summary(Some(op.summary))
        .tag("mwaa")
        .security(SecurityRequirement::new::<_, [&str; 0], &str>("sigv4", []));
    let mut statuses = vec!["400", "403", "503"];
    if let Some(p) = op.path_parameter {
        let schema = if p == "arn" {
            text(None)
                .min_length(Some(1))
                .description(Some(
                    "An environment's ARN, `arn:aws:airflow:{region}:{tenant}:environment/{name}`",
                ))
                .build()
        } else {
            text(Some(MAX_NAME_LEN))
                .min_length(Some(1))
                .pattern(Some(NAME_PATTERN))
                .build()
        };
        b = b.parameter(
            ParameterBuilder::new()
                .name(p)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema)),
        );
        statuses.push("404");
    }
    for q in op.query {
        b = b.parameter(q);
    }
    if let Some(body) = op.body {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(if op.optional_body {
                    Required::False
                } else {
                    Required::True
                }))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(body)).build(),
                )
                .build(),
        ));
    }
    b = b.response("200", json_answer("Done", op.ok).build());
    for status in statuses {
        if let Some((name, _, _)) = ANSWERS.iter().find(|(_, s, _)| *s == status) {
            b = b.response(status, RefOr::Ref(Ref::from_response_name(*name)));
        }
    }
    b.build()
}

/// What `CreateEnvironment` makes is addressed by the others (OpenAPI links): by the path's
/// name, or by the ARN it answers.
const CREATED_LINKS: [(&str, &str, &str); 10] = [
    ("GetEnvironment", "name", "$request.path.name"),
    ("UpdateEnvironment", "name", "$request.path.name"),
    ("DeleteEnvironment", "name", "$request.path.name"),
    ("PublishMetrics", "name", "$request.path.name"),
    ("CreateCliToken", "name", "$request.path.name"),
    ("CreateWebLoginToken", "name", "$request.path.name"),
    ("InvokeRestApi", "name", "$request.path.name"),
    ("ListTagsForResource", "arn", "$response.body#/Arn"),
    ("TagResource", "arn", "$response.body#/Arn"),
    ("UntagResource", "arn", "$response.body#/Arn"),
];

fn link_created(op: &mut Operation) {
    if op.operation_id.as_deref() != Some("CreateEnvironment") {
        return;
    }
    let Some(RefOr::T(answer)) = op.responses.responses.get_mut("200") else {
        return;
    };
    for (to, parameter, expression) in CREATED_LINKS {
        let link = LinkBuilder::new()
            .operation_id(to)
            .parameter(parameter, expression)
            .build();
        answer.links.insert(to.to_owned(), RefOr::T(link));
    }
}

fn operations(versions: Option<&[String]>) -> Vec<(String, HttpMethod, Operation)> {
    let name = Some("name");
    let arn = Some("arn");
    let env_class = |required: &[&str]| environment_input(required, versions);
    let arn_answer = || object_of(&[("Arn", text(None).build().into())]);
    let list = vec![
        (
            ENVIRONMENTS,
            HttpMethod::Get,
            Op {
                optional_body: false,
                id: "ListEnvironments",
                summary: "The names of the tenant's environments, a page at a time",
                path_parameter: None,
                query: vec![
                    ParameterBuilder::new()
                        .name("MaxResults")
                        .parameter_in(ParameterIn::Query)
                        .schema(Some(whole(1, 25)))
                        .build(),
                    ParameterBuilder::new()
                        .name("NextToken")
                        .parameter_in(ParameterIn::Query)
                        .schema(Some(text(None).build()))
                        .build(),
                ],
                body: None,
                ok: ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "Environments",
                        ArrayBuilder::new().items(text(None)).build(),
                    )
                    .property("NextToken", text(None))
                    .required("Environments")
                    .build()
                    .into(),
            },
        ),
        (
            ENVIRONMENT,
            HttpMethod::Put,
            Op {
                optional_body: false,
                id: "CreateEnvironment",
                summary: "Creates an environment",
                path_parameter: name,
                query: vec![],
                body: Some(env_class(&super::CREATE_REQUIRED)),
                ok: arn_answer(),
            },
        ),
        (
            ENVIRONMENT,
            HttpMethod::Get,
            Op {
                optional_body: false,
                id: "GetEnvironment",
                summary: "An environment",
                path_parameter: name,
                query: vec![],
                body: None,
                ok: object_of(&[("Environment", environment_output())]),
            },
        ),
        (
            ENVIRONMENT,
            HttpMethod::Patch,
            Op {
                optional_body: true,
                id: "UpdateEnvironment",
                summary: "Changes an environment's settings",
                path_parameter: name,
                query: vec![],
                body: Some(env_class(&[])),
                ok: arn_answer(),
            },
        ),
        (
            ENVIRONMENT,
            HttpMethod::Delete,
            Op {
                optional_body: false,
                id: "DeleteEnvironment",
                summary: "Deletes an environment",
                path_parameter: name,
                query: vec![],
                body: None,
                ok: empty_object(),
            },
        ),
        (
            TAGS,
            HttpMethod::Get,
            Op {
                optional_body: false,
                id: "ListTagsForResource",
                summary: "An environment's tags",
                path_parameter: arn,
                query: vec![],
                body: None,
                ok: object_of(&[("Tags", string_map(text(None).build().into(), None, None))]),
            },
        ),
        (
            TAGS,
            HttpMethod::Post,
            Op {
                optional_body: false,
                id: "TagResource",
                summary: "Adds or changes tags",
                path_parameter: arn,
                query: vec![],
                body: Some(object_of(&[(
                    "Tags",
                    string_map(text(None).build().into(), None, None),
                )])),
                ok: empty_object(),
            },
        ),
        (
            TAGS,
            HttpMethod::Delete,
            Op {
                optional_body: false,
                id: "UntagResource",
                summary: "Removes tags",
                path_parameter: arn,
                query: vec![ParameterBuilder::new()
                    .name("tagKeys")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::True)
                    .style(Some(ParameterStyle::Form))
                    .explode(Some(true))
                    .schema(Some(
                        ArrayBuilder::new()
                            .items(text(None))
                            .min_items(Some(1))
                            .build(),
                    ))
                    .build()],
                body: None,
                ok: empty_object(),
            },
        ),
        (
            METRICS,
            HttpMethod::Post,
            Op {
                optional_body: false,
                id: "PublishMetrics",
                summary: "MWAA's metrics intake: accepted and dropped (Hangar measures its environments itself)",
                path_parameter: name,
                query: vec![],
                body: Some(object_of(&[(
                    "MetricData",
                    ArrayBuilder::new()
                        .items(RefOr::T(any()))
                        .build()
                        .into(),
                )])),
                ok: empty_object(),
            },
        ),
        (
            CLI_TOKEN,
            HttpMethod::Post,
            Op {
                optional_body: false,
                id: "CreateCliToken",
                summary: "A short-lived token for the web server's CLI endpoint",
                path_parameter: name,
                query: vec![],
                body: None,
                ok: object_of(&[
                    ("CliToken", text(None).build().into()),
                    ("WebServerHostname", text(None).build().into()),
                ]),
            },
        ),
        (
            WEB_TOKEN,
            HttpMethod::Post,
            Op {
                optional_body: false,
                id: "CreateWebLoginToken",
                summary: "A short-lived token that opens a session on the environment's Airflow UI",
                path_parameter: name,
                query: vec![],
                body: None,
                ok: object_of(&[
                    ("WebToken", text(None).build().into()),
                    ("WebServerHostname", text(None).build().into()),
                    ("IamIdentity", text(None).build().into()),
                    ("AirflowIdentity", text(None).build().into()),
                ]),
            },
        ),
        (
            REST_API,
            HttpMethod::Post,
            Op {
                optional_body: false,
                id: "InvokeRestApi",
                summary: "A call to the environment's Airflow REST API; its client and server errors answer 400 (`RestApiClientException`, `RestApiServerException`)",
                path_parameter: name,
                query: vec![],
                body: Some(rest_api_input()),
                ok: object_of(&[
                    ("RestApiStatusCode", whole(100, 599)),
                    ("RestApiResponse", any()),
                ]),
            },
        ),
    ];
    list.into_iter()
        .map(|(path, method, op)| {
            let mut op = signed(op);
            link_created(&mut op);
            (format!("{PREFIX}{path}"), method, op)
        })
        .collect()
}

/// The web server's routes at the root: the CLI (a CLI token, the command line as text) and
/// the console's sign-in pages.
fn web_server_operations() -> Vec<(String, HttpMethod, Operation)> {
    let cli = OperationBuilder::new()
        .operation_id(Some("RunCli"))
        .summary(Some(
            "Runs an allow-listed Airflow CLI command with a CLI token (`CreateCliToken`)",
        ))
        .tag("web server")
        .security(SecurityRequirement::new::<_, [&str; 0], &str>(
            "cli_token",
            [],
        ))
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "text/plain",
                    ContentBuilder::new()
                        .schema(Some(text(None).build()))
                        .build(),
                )
                .build(),
        ))
        .response(
            "200",
            json_answer(
                "The command's output, base64",
                object_of(&[
                    ("stdout", text(None).build().into()),
                    ("stderr", text(None).build().into()),
                ]),
            )
            .build(),
        )
        .response(
            "400",
            RefOr::Ref(Ref::from_response_name("ValidationException")),
        )
        .response(
            "403",
            RefOr::Ref(Ref::from_response_name("AccessDeniedException")),
        )
        .response(
            "404",
            RefOr::Ref(Ref::from_response_name("ResourceNotFoundException")),
        )
        .response(
            "503",
            RefOr::Ref(Ref::from_response_name("ServiceUnavailableException")),
        )
        .build();
    let sso = OperationBuilder::new()
        .operation_id(Some("ConsoleSignIn"))
        .summary(Some(
            "The console's sign-in page: passes the web login token in its fragment on to the web login",
        ))
        .tag("web server")
        .response(
            "200",
            ResponseBuilder::new()
                .description("A page that moves on by itself")
                .content(
                    "text/html; charset=utf-8",
                    ContentBuilder::new()
                        .schema(Some(text(None).build()))
                        .build(),
                )
                .build(),
        )
        .build();
    let login = OperationBuilder::new()
        .operation_id(Some("WebLogin"))
        .summary(Some(
            "Sends a web login token (`CreateWebLoginToken`) on to its environment's web login",
        ))
        .tag("web server")
        .parameter(
            ParameterBuilder::new()
                .name("token")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .schema(Some(text(None).build())),
        )
        .response(
            "303",
            ResponseBuilder::new()
                .description("To the environment's web login")
                .header(
                    "Location",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String))
                        .build(),
                )
                .build(),
        )
        .response(
            "400",
            RefOr::Ref(Ref::from_response_name("ValidationException")),
        )
        .response(
            "403",
            RefOr::Ref(Ref::from_response_name("AccessDeniedException")),
        )
        .build();
    let document = OperationBuilder::new()
        .operation_id(Some("OpenApiDocument"))
        .summary(Some("This document"))
        .tag("mwaa")
        .response(
            "200",
            json_answer("The OpenAPI document", any_object()).build(),
        )
        .build();
    vec![
        (WEB_CLI.to_owned(), HttpMethod::Post, cli),
        (CONSOLE_SSO.to_owned(), HttpMethod::Get, sso),
        (WEB_LOGIN.to_owned(), HttpMethod::Get, login),
        (format!("{PREFIX}{DOCUMENT}"), HttpMethod::Get, document),
    ]
}

/// The document; `versions`, when known, are the Airflow versions the platform offers (the
/// served document lists its own).
pub fn openapi(versions: Option<&[String]>) -> OpenApi {
    let mut paths = Paths::new();
    for (path, method, op) in operations(versions)
        .into_iter()
        .chain(web_server_operations())
    {
        match paths.paths.get_mut(&path) {
            Some(item) => item.merge_operations(PathItem::new(method, op)),
            None => {
                paths.paths.insert(path, PathItem::new(method, op));
            }
        }
    }
    let mut components = ComponentsBuilder::new()
        .schema("Error", error_schema())
        .security_scheme(
            "sigv4",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "AWS Signature Version 4 (`AWS4-HMAC-SHA256`) with a tenant's access key, \
                 service `airflow`, any region",
            ))),
        )
        .security_scheme(
            "cli_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A CLI token from `CreateCliToken`"))
                    .build(),
            ),
        );
    for (name, status, description) in ANSWERS {
        components = components.response(name, error_answer(status, description));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Hangar MWAA-compatible API")
                .description(Some(
                    "Amazon MWAA's REST-JSON API (botocore's `mwaa` 2020-07-01 model) as Hangar answers it, under `/mwaa`, and the web server's routes MWAA's clients call",
                ))
                .version("2020-07-01")
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// The document as JSON, as served: the headers every answer of theirs has are marked
/// required (utoipa 5's headers have no `required`).
pub fn openapi_json(versions: Option<&[String]>) -> String {
    let mut doc = serde_json::to_value(openapi(versions)).unwrap_or_default();
    require_headers(&mut doc, &["x-amzn-ErrorType", "Location"]);
    crate::api::document::spell_links(&mut doc);
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// Marks the answers' headers named in `names` as required, wherever they are declared.
pub fn require_headers(doc: &mut serde_json::Value, names: &[&str]) {
    match doc {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(headers)) = map.get_mut("headers") {
                for (name, header) in headers.iter_mut() {
                    if names.contains(&name.as_str()) {
                        if let Some(h) = header.as_object_mut() {
                            h.insert("required".to_owned(), serde_json::Value::Bool(true));
                        }
                    }
                }
            }
            for v in map.values_mut() {
                require_headers(v, names);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                require_headers(v, names);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    #[test]
    fn the_documents_paths_are_the_mounted_routes() {
        let doc: Value = serde_json::from_str(&super::openapi_json(None)).unwrap();
        let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
        paths.sort();
        let mut mounted = super::mounted_paths();
        mounted.sort();
        assert_eq!(paths, mounted);
    }

    #[test]
    fn every_signed_operation_answers_mwaas_errors_with_their_code() {
        let doc: Value = serde_json::from_str(&super::openapi_json(None)).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op.get("security").is_none() || path.starts_with("/aws_mwaa") {
                    continue;
                }
                for status in ["400", "403", "503"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
        let header =
            &doc["components"]["responses"]["ValidationException"]["headers"]["x-amzn-ErrorType"];
        assert_eq!(header["required"], true);
        assert!(header["schema"]["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::from("ValidationException")));
    }
}

//! The portal's OpenAPI document: every route of [`super::routes`], its form fields (named as
//! the handlers read them, `csrf_token` in every state-changing form), its `text/html` pages,
//! its `303 See Other` redirects with their `Location`, and every status it answers. It exists
//! to fuzz the portal (tests/tests/api/fuzz.rs) and to review its surface.
//!
//! Printed by `hangar openapi --portal` rather than served: the portal's clients are
//! browsers, which read no API document, so a route for it would only add to the portal's
//! origin; the binary that serves the portal prints the document of exactly what it serves.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, KnownFormat, OpenApi,
    OpenApiBuilder, PathItem, Paths, Ref, RefOr, Required,
};

use super::form::ENVIRONMENT_FIELDS;
use crate::api::document::NAME_PATTERN;
use crate::service::portal::PORTAL_SESSION_COOKIE;
use hangar_tenants::names::MAX_NAME_LEN;

/// Where an environment's pages are.
const ENV: &str = "/tenants/{tenant}/environments/{env}";

/// What a route takes and gives.
#[derive(Clone, Copy)]
enum Kind {
    /// A page (`text/html`).
    Page,
    /// Server-sent events (`text/event-stream`), the live parts of a page.
    Events,
    /// A form (`application/x-www-form-urlencoded`) with these fields besides `csrf_token`.
    Form(&'static [&'static str]),
    /// The DAG upload form (`multipart/form-data`: `csrf_token` first, then `files`).
    Upload,
    /// The stylesheet or the script.
    Asset,
}

/// One route: (path, method, operation id, summary, what it takes, query parameters,
/// statuses besides the success one and the signed-out redirect).
struct Route {
    path: String,
    method: HttpMethod,
    id: &'static str,
    summary: &'static str,
    kind: Kind,
    query: &'static [&'static str],
    /// Answers a signed-in page or a redirect (`303`) on success.
    ok: &'static [&'static str],
    errors: &'static [&'static str],
    signed_in: bool,
}

fn route(
    path: &str,
    method: HttpMethod,
    id: &'static str,
    summary: &'static str,
    kind: Kind,
) -> Route {
    let (ok, errors): (&[&str], &[&str]) = match kind {
        Kind::Page => (&["200"], &["400", "403", "404", "503"]),
        Kind::Events => (&["200"], &["400", "403", "404", "503"]),
        Kind::Form(_) | Kind::Upload => (&["303"], &["400", "403", "404", "409", "422", "503"]),
        Kind::Asset => (&["200"], &["404"]),
    };
    Route {
        path: path.to_owned(),
        method,
        id,
        summary,
        kind,
        query: &[],
        ok,
        errors,
        signed_in: true,
    }
}

fn routes() -> Vec<Route> {
    use HttpMethod::{Get, Post};
    use Kind::{Asset, Events, Form, Page, Upload};
    let env = |tail: &str| format!("{ENV}{tail}");
    vec![
        Route {
            ok: &["303"],
            errors: &["503"],
            ..route(
                "/",
                Get,
                "home",
                "The start page of the signed-in viewer",
                Page,
            )
        },
        Route {
            query: &["next"],
            errors: &["400"],
            signed_in: false,
            ..route("/login", Get, "login_page", "The sign-in form", Page)
        },
        Route {
            ok: &["303"],
            errors: &["400", "401", "403", "422", "503"],
            signed_in: false,
            ..route(
                "/login",
                Post,
                "login",
                "Signs in with a token (the form's CSRF token must match its cookie)",
                Form(&["token", "next"]),
            )
        },
        Route {
            query: &["token"],
            errors: &["400", "401", "422", "503"],
            signed_in: false,
            ..route(
                "/login/link",
                Get,
                "login_link",
                "Signs in with a one-time link",
                Page,
            )
        },
        Route {
            errors: &["400", "403", "503"],
            ..route("/logout", Post, "logout", "Signs out", Form(&[]))
        },
        Route {
            signed_in: false,
            ..route(
                "/assets/{file}",
                Get,
                "asset",
                "The stylesheet or the script",
                Asset,
            )
        },
        Route {
            query: &["q", "page"],
            ..route(
                "/tenants/{tenant}",
                Get,
                "environments",
                "The tenant's environments",
                Page,
            )
        },
        Route {
            query: &["q", "page"],
            ..route(
                "/tenants/{tenant}/events",
                Get,
                "environments_events",
                "The environments' phases, live",
                Events,
            )
        },
        route(
            "/tenants/{tenant}/environments",
            Post,
            "create_environment",
            "Creates an environment",
            Form(&ENVIRONMENT_FIELDS),
        ),
        route(
            "/tenants/{tenant}/environments/new",
            Get,
            "new_environment",
            "The form for a new environment",
            Page,
        ),
        route(ENV, Get, "environment", "An environment", Page),
        route(
            ENV,
            Post,
            "update_environment",
            "Changes an environment at the revision the form was opened at",
            Form(&UPDATE_FIELDS),
        ),
        route(
            &env("/events"),
            Get,
            "environment_events",
            "An environment's phase, components and workers, live",
            Events,
        ),
        route(
            &env("/delete"),
            Get,
            "delete_environment_page",
            "Asks to confirm a deletion",
            Page,
        ),
        route(
            &env("/delete"),
            Post,
            "delete_environment",
            "Deletes an environment (`confirm` is its name)",
            Form(&["confirm"]),
        ),
        route(
            &env("/open-airflow"),
            Post,
            "open_airflow",
            "Signs in to the environment's Airflow UI",
            Form(&[]),
        ),
        route(
            &env("/dags"),
            Get,
            "dags",
            "The environment's DAG files",
            Page,
        ),
        Route {
            errors: &["400", "403", "404", "413", "422", "503"],
            ..route(
                &env("/dags"),
                Post,
                "upload_dags",
                "Uploads DAG files",
                Upload,
            )
        },
        route(
            &env("/dags/delete"),
            Post,
            "delete_dag",
            "Deletes a DAG file",
            Form(&["path"]),
        ),
        route(
            &env("/hibernate"),
            Post,
            "hibernate_environment",
            "Hibernates an environment",
            Form(&[]),
        ),
        route(
            &env("/wake"),
            Post,
            "wake_environment",
            "Wakes an environment",
            Form(&[]),
        ),
        Route {
            query: &LOG_QUERY,
            errors: &["400", "403", "404", "409", "422", "503"],
            ..route(&env("/logs"), Get, "logs", "The environment's logs", Page)
        },
        Route {
            query: &LOG_QUERY,
            errors: &["400", "403", "404", "409", "422", "503"],
            ..route(
                &env("/logs/events"),
                Get,
                "logs_events",
                "The environment's component logs, live",
                Events,
            )
        },
        route(&env("/cli"), Get, "cli", "The Airflow CLI form", Page),
        Route {
            ok: &["200"],
            ..route(
                &env("/cli"),
                Post,
                "run_cli",
                "Runs an allow-listed Airflow CLI command; the page shows its output",
                Form(&["args"]),
            )
        },
        route(
            "/tenants/{tenant}/tokens",
            Get,
            "tokens",
            "The tenant's tokens",
            Page,
        ),
        Route {
            ok: &["200"],
            ..route(
                "/tenants/{tenant}/tokens",
                Post,
                "create_token",
                "Creates a token, shown once on the page",
                Form(&["name", "role"]),
            )
        },
        route(
            "/tenants/{tenant}/tokens/{id}/revoke",
            Post,
            "revoke_token",
            "Revokes a token",
            Form(&[]),
        ),
        Route {
            query: &["before"],
            ..route(
                "/tenants/{tenant}/audit",
                Get,
                "audit",
                "The tenant's audit log",
                Page,
            )
        },
        Route {
            errors: &["400", "403", "503"],
            ..route("/admin", Get, "admin", "Tenants and cells", Page)
        },
        Route {
            errors: &["400", "403", "409", "422", "503"],
            ..route(
                "/admin/tenants",
                Post,
                "create_tenant",
                "Creates a tenant",
                Form(&["name", "display_name"]),
            )
        },
    ]
}

/// The update form: the environment form without `name`, with the revision it was opened at.
const UPDATE_FIELDS: [&str; 13] = [
    "revision",
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

/// The log page's filters and the task log it shows.
const LOG_QUERY: [&str; 8] = [
    "component",
    "level",
    "q",
    "since",
    "dag",
    "run",
    "task",
    "try",
];

fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn html(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "text/html; charset=utf-8",
            ContentBuilder::new().schema(Some(text().build())).build(),
        )
        .build()
}

fn redirect(description: &str) -> Response {
    let location = HeaderBuilder::new()
        .schema(text())
        .description(Some("Where to go next, on this origin"))
        .build();
    ResponseBuilder::new()
        .description(description)
        .header("Location", location)
        .header(
            "Set-Cookie",
            HeaderBuilder::new()
                .schema(text())
                .description(Some("The session cookie, when signing in or out"))
                .build(),
        )
        .build()
}

/// What each error status means, on the HTML error page it answers.
const ERRORS: [(&str, &str); 8] = [
    ("400", "The request could not be read: a form not `application/x-www-form-urlencoded`, a broken upload, a query string or path that is not what the page takes"),
    ("401", "The token is unknown, revoked or mistyped: the sign-in form again, with the reason"),
    ("403", "No CSRF token of this session in the form (nothing was changed), or the role does not allow this"),
    ("404", "No such tenant, environment, token or asset, or one the viewer may not see"),
    ("409", "The environment changed meanwhile, or is not in a phase that allows this"),
    ("413", "The upload is larger than the limit"),
    ("422", "A field is not valid: the form again, with the reason next to the field"),
    ("503", "Not now: the platform's database or the environment is not answering"),
];

fn path_parameter(name: &str) -> ParameterBuilder {
    let schema = match name {
        "tenant" | "env" => text()
            .pattern(Some(NAME_PATTERN))
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_LEN)),
        "file" => text().enum_values(Some(["portal.css", "portal.js"])),
        _ => text().min_length(Some(1)),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(schema.build()))
}

fn query_parameter(name: &str) -> ParameterBuilder {
    let schema = match name {
        "before" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        _ => text(),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .schema(Some(schema.build()))
}

/// A form's body: every field a string, as a browser sends it; `csrf_token` required.
fn form_body(fields: &[&str]) -> Schema {
    let mut o = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("csrf_token", text())
        .required("csrf_token");
    for f in fields {
        let s = match *f {
            "role" => text().enum_values(Some(["viewer", "editor", "admin"])),
            _ => text(),
        };
        o = o.property(*f, s);
    }
    o.build().into()
}

/// The upload form: its CSRF token and files, nothing else (a part that cannot be read, such
/// as one with a name that is not text, fails the whole form).
fn upload_body() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .property("csrf_token", text())
        .property(
            "files",
            ArrayBuilder::new()
                .items(text().format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))),
        )
        .required("csrf_token")
        .build()
        .into()
}

/// The environment a create form makes is addressed by the environment's pages and forms
/// (OpenAPI links, so the fuzzer reaches them).
fn link_created(answer: &mut Response, environment_ops: &[&'static str]) {
    for to in environment_ops {
        let link = LinkBuilder::new()
            .operation_id(*to)
            .parameter("tenant", "$request.path.tenant")
            .parameter("env", "$request.body#/name")
            .build();
        answer.links.insert((*to).to_owned(), RefOr::T(link));
    }
}

fn operation(r: &Route, environment_ops: &[&'static str]) -> utoipa::openapi::path::Operation {
    let mut b = OperationBuilder::new()
        .operation_id(Some(r.id))
        .summary(Some(r.summary))
        .tag("portal");
    if r.signed_in {
        b = b.security(SecurityRequirement::new::<_, [&str; 0], &str>(
            "session",
            [],
        ));
    }
    for name in r
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    {
        b = b.parameter(path_parameter(name));
    }
    for q in r.query {
        b = b.parameter(query_parameter(q));
    }
    let body = match r.kind {
        Kind::Form(fields) => Some(("application/x-www-form-urlencoded", form_body(fields))),
        Kind::Upload => Some(("multipart/form-data", upload_body())),
        _ => None,
    };
    if let Some((media, schema)) = body {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(media, ContentBuilder::new().schema(Some(schema)).build())
                .build(),
        ));
    }
    for status in r.ok {
        let answer = match (*status, r.kind) {
            ("303", _) => {
                let mut answer = redirect("Done: on to the page that shows it");
                if r.id == "create_environment" {
                    link_created(&mut answer, environment_ops);
                }
                answer
            }
            (_, Kind::Events) => ResponseBuilder::new()
                .description(
                    "Server-sent events while the page is open: each a named event with JSON data",
                )
                .content(
                    "text/event-stream",
                    ContentBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::Object)
                                .property("event", text())
                                .property("data", text())
                                .build(),
                        ))
                        .build(),
                )
                .build(),
            (_, Kind::Asset) => ResponseBuilder::new()
                .description("The file")
                .content(
                    "text/css; charset=utf-8",
                    ContentBuilder::new().schema(Some(text().build())).build(),
                )
                .content(
                    "text/javascript; charset=utf-8",
                    ContentBuilder::new().schema(Some(text().build())).build(),
                )
                .build(),
            _ => html("The page"),
        };
        b = b.response(*status, answer);
    }
    // Done or not, a form's answer without a session is a redirect too: to the sign-in page.
    if r.signed_in && !r.ok.contains(&"303") {
        b = b.response("303", RefOr::Ref(Ref::from_response_name("SignIn")));
    }
    for status in r.errors {
        if matches!(r.kind, Kind::Asset) {
            b = b.response(
                "404",
                ResponseBuilder::new().description("No such file").build(),
            );
            continue;
        }
        b = b.response(*status, RefOr::Ref(Ref::from_response_name(*status)));
    }
    b.build()
}

/// The document.
pub fn openapi() -> OpenApi {
    let mut paths = Paths::new();
    let routes = routes();
    let environment_ops: Vec<&'static str> = routes
        .iter()
        .filter(|r| r.path.contains("{env}"))
        .map(|r| r.id)
        .collect();
    for r in routes {
        let op = operation(&r, &environment_ops);
        match paths.paths.get_mut(&r.path) {
            Some(item) => item.merge_operations(PathItem::new(r.method.clone(), op)),
            None => {
                paths
                    .paths
                    .insert(r.path.clone(), PathItem::new(r.method.clone(), op));
            }
        }
    }
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                PORTAL_SESSION_COOKIE,
                "The portal's session, opened by signing in",
            ))),
        )
        .response(
            "SignIn",
            redirect("No session (or an expired one): to the sign-in page, and back afterwards"),
        );
    for (status, description) in ERRORS {
        components = components.response(status, html(description));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Hangar portal")
                .description(Some(
                    "The tenant self-service portal: server-rendered pages and plain HTML forms",
                ))
                .version("1")
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// The document as pretty JSON with a trailing newline; a redirect's `Location` is required.
pub fn openapi_json() -> String {
    let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
    crate::mwaa::document::require_headers(&mut doc, &["Location"]);
    crate::api::document::spell_links(&mut doc);
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

//! Schemathesis, the property-based API fuzzer, against each surface's OpenAPI document: the
//! JSON API's (`/v1/openapi.json`) as the platform admin, a tenant admin, a tenant viewer, a
//! cell's agent and without a token; the MWAA-compatible API's (`/mwaa/openapi.json`) signed
//! with a tenant admin's and a tenant viewer's access key and unsigned; the portal's
//! (`hangar openapi --portal`) signed in and signed out. Every check it has must pass: no 5xx, every answer declared by the
//! document (status, content type, headers, body schema), schema-valid requests accepted and
//! invalid ones refused, no route that ignores authentication. The number of examples per
//! operation is bounded so the run fits CI; the seed is fixed so a failure reproduces.

use std::process::Stdio;

use serde_json::Value;

use hangar_tenants::api::{CellCapacity, CreateAccessKey, CreateCell, RegisterCell, Role, Runtime};
use hangar_tests::emulators::tool;
use hangar_tests::{create_env, spawn_app, spawn_app_with, TestApp, ADMIN_TOKEN};

/// Examples generated per operation and phase. 25 runs about 1,500 requests per role.
const EXAMPLES: &str = "25";
const SEED: &str = "20261207";

/// One Schemathesis run: the document (a URL, or a file with `base_url`), its settings file
/// under `tests/`, headers to send and hooks (a module in `tests/fuzz/`, its settings as
/// environment variables).
struct Run<'a> {
    who: &'a str,
    document: String,
    base_url: Option<&'a str>,
    config: &'a str,
    examples: &'a str,
    headers: Vec<String>,
    hooks: Option<&'a str>,
    env: Vec<(&'a str, String)>,
    /// Checks left out of `--checks all`, each for a reason its settings file gives.
    exclude_checks: &'a [&'a str],
}

impl<'a> Run<'a> {
    fn new(who: &'a str, document: String, config: &'a str) -> Self {
        Self {
            who,
            document,
            base_url: None,
            config,
            examples: EXAMPLES,
            headers: vec![],
            hooks: None,
            env: vec![],
            exclude_checks: &[],
        }
    }
}

/// Runs Schemathesis with every check; whether it passed, and its report.
async fn schemathesis_run(run: Run<'_>) -> (bool, String) {
    let work = tempfile::tempdir().unwrap();
    let tests = env!("CARGO_MANIFEST_DIR");
    let mut cmd = tokio::process::Command::new(tool("schemathesis").unwrap());
    cmd.current_dir(work.path())
        .args(["--config-file", &format!("{tests}/{}", run.config)])
        .args(["--no-color", "run", &run.document])
        .args([
            "--checks",
            "all",
            "--max-examples",
            run.examples,
            "--seed",
            SEED,
        ])
        .args(["--workers", "1", "--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for check in run.exclude_checks {
        cmd.args(["--exclude-checks", check]);
    }
    if let Some(url) = run.base_url {
        cmd.args(["--url", url]);
    }
    for h in &run.headers {
        cmd.args(["--header", h]);
    }
    if let Some(module) = run.hooks {
        cmd.env("SCHEMATHESIS_HOOKS", module)
            .env("PYTHONPATH", format!("{tests}/fuzz"));
    }
    for (k, v) in &run.env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let text = format!(
        "schemathesis as {}:\n{}{}",
        run.who,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs each role's Schemathesis run in turn, prints the reports and fails naming the roles
/// that failed.
async fn all_pass(runs: Vec<Run<'_>>) {
    let mut failed = Vec::new();
    for run in runs {
        let who = run.who;
        let (ok, report) = schemathesis_run(run).await;
        println!("{report}");
        if !ok {
            failed.push(who);
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis failed as {failed:?} (reports above)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_as_any_role() {
    // A short cell TTL bounds the agent's long polls (half of it), so the fuzzer's waits are
    // a second each; a local-filesystem bucket takes the DAG files and task logs.
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let app = spawn_app_with(move |s| {
        s.cell_ttl_secs = 2;
        s.bucket = Some(url);
    })
    .await;
    // Real objects for the fuzzer to meet: a tenant with an environment, a registered cell.
    let tenant_admin = app.token_with_role("data", Role::Admin).await.unwrap();
    let viewer = app.token_with_role("data", Role::Viewer).await.unwrap();
    create_env(&app.admin.with_token(tenant_admin.clone()), "data", "etl")
        .await
        .unwrap();
    let cell = app
        .admin
        .create_cell(&CreateCell {
            name: "local".into(),
            runtime: Runtime::Process,
        })
        .await
        .unwrap();
    app.admin
        .with_token(cell.token.clone())
        .register_cell(
            "local",
            &RegisterCell {
                capacity: CellCapacity {
                    max_environments: 4,
                    worker_slots: 8,
                },
                agent_version: "fuzz/1".into(),
                isolation: None,
                warm_pool: 0,
                agent_panics: 0,
            },
        )
        .await
        .unwrap();

    let mut runs = Vec::new();
    for (who, token) in [
        ("the platform admin", Some(ADMIN_TOKEN)),
        ("a tenant admin", Some(tenant_admin.as_str())),
        ("a tenant viewer", Some(viewer.as_str())),
        ("a cell's agent", Some(cell.token.as_str())),
        ("nobody", None),
    ] {
        let mut run = Run::new(
            who,
            format!("{}/v1/openapi.json", app.address),
            "schemathesis.toml",
        );
        if let Some(t) = token {
            run.headers.push(format!("Authorization: Bearer {t}"));
        }
        runs.push(run);
    }
    all_pass(runs).await;
}

/// An access key of `tenant` with `role`: (id, secret).
async fn access_key(app: &TestApp, tenant: &str, role: Role) -> (String, String) {
    let admin = app.tenant_with_role(tenant, Role::Admin).await.unwrap();
    let k = admin
        .create_access_key(
            tenant,
            &CreateAccessKey {
                name: format!("fuzz-{}", role.as_str()),
                role,
            },
        )
        .await
        .unwrap();
    (k.access_key_id, k.secret_access_key)
}

/// Left out for the MWAA-compatible API (`tests/fuzz/mwaa.toml` says why): it answers a
/// missing signature 403, as AWS does, where the check wants 401.
const MWAA_EXCLUDED: &[&str] = &["missing_required_header"];

/// The MWAA-compatible API against its own document (`/mwaa/openapi.json`), every request
/// signed by botocore's SigV4 signer (`tests/fuzz/mwaa_sigv4.py`) with a tenant admin's and a
/// tenant viewer's access key, and unsigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_in_the_mwaa_api_signed_or_not() {
    let app = spawn_app().await;
    let admin = app.tenant_with_role("data", Role::Admin).await.unwrap();
    create_env(&admin, "data", "etl").await.unwrap();
    let document = format!("{}/mwaa/openapi.json", app.address);
    let mut runs = Vec::new();
    for (who, role) in [
        ("a tenant admin's key", Role::Admin),
        ("a tenant viewer's key", Role::Viewer),
    ] {
        let (id, secret) = access_key(&app, "data", role).await;
        let mut run = Run::new(who, document.clone(), "fuzz/mwaa.toml");
        run.exclude_checks = MWAA_EXCLUDED;
        run.hooks = Some("mwaa_sigv4");
        run.env = vec![
            ("HANGAR_FUZZ_ACCESS_KEY_ID", id),
            ("HANGAR_FUZZ_SECRET_ACCESS_KEY", secret),
        ];
        runs.push(run);
    }
    let mut unsigned = Run::new("nobody", document.clone(), "fuzz/mwaa.toml");
    unsigned.exclude_checks = MWAA_EXCLUDED;
    runs.push(unsigned);
    all_pass(runs).await;
}

/// The portal against its own document (`hangar openapi --portal`), signed in as a tenant admin
/// the way a browser signs in (`tests/fuzz/portal_session.py`: the sign-in form, the session
/// cookie, the CSRF token in every form, and a check that a form without it is refused and
/// changes nothing in the tenant's audit log), and signed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_in_the_portal_signed_in_or_out() {
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let app = spawn_app_with(move |s| s.bucket = Some(url)).await;
    let token = app.token_with_role("data", Role::Admin).await.unwrap();
    create_env(&app.admin.with_token(token.clone()), "data", "etl")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let document = dir.path().join("portal.json");
    std::fs::write(
        &document,
        hangar_control_plane::portal::document::openapi_json(),
    )
    .unwrap();
    let document = document.display().to_string();
    let mut signed_in = Run::new(
        "a tenant admin, signed in",
        document.clone(),
        "fuzz/portal.toml",
    );
    signed_in.base_url = Some(&app.address);
    signed_in.hooks = Some("portal_session");
    signed_in.env = vec![
        ("HANGAR_FUZZ_BASE_URL", app.address.clone()),
        ("HANGAR_FUZZ_TOKEN", token.clone()),
        ("HANGAR_FUZZ_TENANT", "data".to_owned()),
    ];
    let mut signed_out = Run::new("nobody, signed out", document, "fuzz/portal.toml");
    signed_out.base_url = Some(&app.address);
    all_pass(vec![signed_in, signed_out]).await;
}

/// Every path and method of `document` answers from a route of its own (not the "no route"
/// problem, not 405), and every other method of its paths answers 405: the document's paths
/// are the routes mounted, method by method.
async fn documented_routes_are_mounted(address: &str, document: &Value) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let arn = "arn%3Aaws%3Aairflow%3Aeu-west-1%3Adata%3Aenvironment%2Fetl";
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{tenant}", "data")
            .replace("{env}", "etl")
            .replace("{name}", "etl")
            .replace("{arn}", arn)
            .replace("{file}", "portal.css")
            .replace("{id}", "x");
        for method in ["get", "put", "post", "patch", "delete"] {
            let r = client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{address}{concrete}"),
                )
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let problem = r
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
            if item.get(method).is_some() {
                assert!(
                    status != 405 && !(status == 404 && problem),
                    "{method} {path}: documented, but no route answers ({status})"
                );
            } else {
                assert_eq!(status, 405, "{method} {path}: not documented, yet answered");
            }
        }
    }
}

#[tokio::test]
async fn the_mwaa_and_portal_documents_name_exactly_the_routes_mounted() {
    let app = spawn_app().await;
    let mwaa: Value = reqwest::get(format!("{}/mwaa/openapi.json", app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mwaa["info"]["title"], "Hangar MWAA-compatible API");
    documented_routes_are_mounted(&app.address, &mwaa).await;
    let portal: Value =
        serde_json::from_str(&hangar_control_plane::portal::document::openapi_json()).unwrap();
    documented_routes_are_mounted(&app.address, &portal).await;
}

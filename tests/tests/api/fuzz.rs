//! Schemathesis, the property-based API fuzzer, against the document the control plane serves
//! at `/v1/openapi.json`: as the platform admin, a tenant admin, a tenant viewer, a cell's agent
//! and without a token. Every check it has must pass: no 5xx, every answer declared by the
//! document (status, content type, headers, body schema), schema-valid requests accepted and
//! invalid ones refused, no route that ignores authentication. The number of examples per
//! operation is bounded so the run fits CI; the seed is fixed so a failure reproduces.

use std::process::Stdio;

use hangar_tenants::api::{CellCapacity, CreateCell, RegisterCell, Role, Runtime};
use hangar_tests::emulators::tool;
use hangar_tests::{create_env, spawn_app_with, ADMIN_TOKEN};

/// Examples generated per operation and phase. 25 runs about 1,500 requests per role.
const EXAMPLES: &str = "25";
const SEED: &str = "20261207";

async fn schemathesis(address: &str, who: &str, token: Option<&str>) -> (bool, String) {
    let work = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml");
    let mut cmd = tokio::process::Command::new(tool("schemathesis").unwrap());
    cmd.current_dir(work.path())
        .args(["--config-file", config, "--no-color", "run"])
        .arg(format!("{address}/v1/openapi.json"))
        .args([
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
        ])
        .args(["--workers", "1", "--request-timeout", "30"])
        .args(["--generation-database", "none"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output().await.unwrap();
    let text = format!(
        "schemathesis as {who}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
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

    let mut failed = Vec::new();
    for (who, token) in [
        ("the platform admin", Some(ADMIN_TOKEN)),
        ("a tenant admin", Some(tenant_admin.as_str())),
        ("a tenant viewer", Some(viewer.as_str())),
        ("a cell's agent", Some(cell.token.as_str())),
        ("nobody", None),
    ] {
        let (ok, report) = schemathesis(&app.address, who, token).await;
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

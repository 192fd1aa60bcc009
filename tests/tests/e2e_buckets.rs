//! End to end on every object store: the platform bucket on S3 (moto), Google Cloud Storage
//! (fake-gcs-server) and Azure Blob Storage (Azurite); a DAG written to the environment's
//! `dags/` prefix, with the cloud's own tool where there is one (`aws s3 cp`), appears in the
//! environment's real Airflow 3.3.2 and runs. On S3 also: `requirements.txt` in the bucket
//! becomes an update (a real package from PyPI importable in tasks; a conflicting one
//! `UPDATE_FAILED` while the environment keeps running).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_data_plane::bucket::Bucket;
use hangar_tenants::api::{CreateEnvironment, Role};
use hangar_tenants::Phase;
use hangar_tests::emulators::{Azurite, FakeGcs, Moto};
use hangar_tests::spawn_stack_on;
use reqwest::Method;
use serde_json::{json, Value};

const DAG: &str = r#"
from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def from_bucket():
    @task
    def probe():
        from importlib.metadata import PackageNotFoundError, version

        try:
            import pyjokes  # noqa: F401

            return "pyjokes " + version("pyjokes")
        except (ImportError, PackageNotFoundError):
            return "no pyjokes"

    probe()


from_bucket()
"#;

async fn wait_phase(c: &Client, want: Phase, within: Duration) -> hangar_tenants::api::Environment {
    let start = Instant::now();
    loop {
        let e = c.get_environment("acme", "etl").await.unwrap();
        if e.phase == want {
            return e;
        }
        assert!(
            start.elapsed() < within,
            "acme/etl is {} ({:?}), not {want}",
            e.phase,
            e.status_message
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn airflow(c: &Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = c.request(
        method,
        &format!("v1/tenants/acme/environments/etl/airflow/api/v2/{path}"),
    );
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits for `from_bucket` to be listed, runs it and returns its task's XCom.
async fn run(c: &Client) -> String {
    let start = Instant::now();
    while airflow(c, Method::GET, "dags/from_bucket", None).await.0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(60), "DAG not listed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    airflow(
        c,
        Method::PATCH,
        "dags/from_bucket",
        Some(json!({"is_paused": false})),
    )
    .await;
    let (s, r) = airflow(
        c,
        Method::POST,
        "dags/from_bucket/dagRuns",
        Some(json!({"logical_date": null})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let id = r["dag_run_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (_, r) = airflow(
            c,
            Method::GET,
            &format!("dags/from_bucket/dagRuns/{id}"),
            None,
        )
        .await;
        match r["state"].as_str() {
            Some("success") => break,
            Some("failed") => {
                let (_, log) = airflow(
                    c,
                    Method::GET,
                    &format!("dags/from_bucket/dagRuns/{id}/taskInstances/probe/logs/1"),
                    None,
                )
                .await;
                panic!("the run failed: {r}\ntask log: {log}")
            }
            _ => assert!(
                start.elapsed() < Duration::from_secs(120),
                "run not done: {r}"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (_, x) = airflow(
        c,
        Method::GET,
        &format!("dags/from_bucket/dagRuns/{id}/taskInstances/probe/xcomEntries/return_value"),
        None,
    )
    .await;
    x["value"].as_str().unwrap_or_default().to_owned()
}

async fn e_plugins(c: &Client) -> String {
    c.get_environment("acme", "etl")
        .await
        .unwrap()
        .bucket
        .unwrap()
        .plugins
}

/// `aws s3 cp` of `text` to `s3_url`, as a tenant would.
fn aws_cp(moto: &Moto, text: &str, s3_url: &str) {
    let file = std::env::temp_dir().join(format!("hangar-cp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, text).unwrap();
    let aws = hangar_tests::emulators::tool("aws").unwrap();
    let out = std::process::Command::new(aws)
        .args(["s3", "cp", "--only-show-errors"])
        .arg(&file)
        .arg(s3_url)
        .envs(moto.aws_env())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "aws s3 cp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An environment on the bucket `url`; `upload` writes the DAG into its `dags/` prefix.
async fn dag_from_bucket_runs(
    url: String,
    upload: impl AsyncFnOnce(&str),
) -> (hangar_tests::Stack, Client) {
    let stack = spawn_stack_on(true, Some(url)).await.unwrap();
    let c = stack
        .app
        .tenant_with_role("acme", Role::Editor)
        .await
        .unwrap();
    c.create_environment(
        "acme",
        &CreateEnvironment {
            name: "etl".into(),
            min_workers: Some(1),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let e = wait_phase(&c, Phase::Available, Duration::from_secs(300)).await;
    let dags = e.bucket.expect("bucket URLs").dags;
    upload(&format!("{dags}from_bucket.py")).await;
    assert_eq!(run(&c).await, "no pyjokes");
    (stack, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dags_from_s3_run_and_its_requirements_txt_updates_the_environment() {
    let moto = Moto::start().await.unwrap();
    let url = moto.bucket_url("platform", "hangar").await.unwrap();
    let (stack, c) = dag_from_bucket_runs(url, async |dags_url: &str| {
        assert!(
            dags_url.starts_with("s3://platform/hangar/tenants/acme/"),
            "{dags_url}"
        );
        aws_cp(&moto, DAG, dags_url);
    })
    .await;
    let e = c.get_environment("acme", "etl").await.unwrap();
    let requirements = e.bucket.unwrap().requirements;

    // requirements.txt in the bucket: an update, and the package is importable in tasks.
    aws_cp(&moto, "pyjokes==0.8.3\n", &requirements);
    let start = Instant::now();
    loop {
        let e = c.get_environment("acme", "etl").await.unwrap();
        if e.revision == 2 && e.phase == Phase::Available {
            assert_eq!(e.spec.requirements, "pyjokes==0.8.3\n");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "requirements.txt not applied: {} {:?}",
            e.phase,
            e.status_message
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(run(&c).await, "pyjokes 0.8.3");

    // A plugin in the bucket's plugins/ prefix: synced, and the components restart to load it.
    let id = c.get_environment("acme", "etl").await.unwrap().id;
    let pid_file = stack.env_home(id).join("run/api-server.pid");
    let pid = || std::fs::read_to_string(&pid_file).unwrap_or_default();
    let before = pid();
    let plugins = e_plugins(&c).await;
    aws_cp(
        &moto,
        "VALUE = 'from the plugins prefix'\n",
        &format!("{plugins}hangar_probe.py"),
    );
    let start = Instant::now();
    while pid() == before || pid().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not restarted for the plugin"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The phase read before the restart ended may still be AVAILABLE: wait for the first report
    // made after it (the restart counted), then for every component to be healthy again.
    let start = Instant::now();
    loop {
        let e = c.get_environment("acme", "etl").await.unwrap();
        let restarts = e
            .observed
            .as_ref()
            .and_then(|o| o.reconcile.as_ref())
            .map_or(0, |r| r.plugin_restarts);
        if restarts >= 1 && e.phase == Phase::Available {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not available again after the plugin restart: {} ({:?}), {restarts} restarts",
            e.phase,
            e.status_message
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let home = stack.env_home(id);
    assert_eq!(
        std::fs::read_to_string(home.join("plugins/hangar_probe.py")).unwrap(),
        "VALUE = 'from the plugins prefix'\n"
    );
    assert_eq!(run(&c).await, "pyjokes 0.8.3");

    // A conflicting one: UPDATE_FAILED with uv's reason, and the environment keeps running.
    aws_cp(&moto, "pyjokes==0.8.3\nSQLAlchemy==1.3.24\n", &requirements);
    let failed = wait_phase(&c, Phase::UpdateFailed, Duration::from_secs(120)).await;
    assert!(
        failed
            .status_message
            .as_deref()
            .unwrap_or_default()
            .to_lowercase()
            .contains("sqlalchemy"),
        "{:?}",
        failed.status_message
    );
    assert_eq!(failed.observed.unwrap().revision, Some(2));
    assert_eq!(run(&c).await, "pyjokes 0.8.3");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dags_from_google_cloud_storage_and_azure_run() {
    let gcs = FakeGcs::start().await.unwrap();
    let url = gcs.bucket_url("platform", "").await.unwrap();
    let writer = Bucket::from_url(&url).unwrap();
    let (stack, _) = dag_from_bucket_runs(url, async |dags_url: &str| {
        assert!(
            dags_url.starts_with("gs://platform/tenants/acme/"),
            "{dags_url}"
        );
        let p = Bucket::child(&writer.dags_prefix("acme", "etl"), "from_bucket.py");
        writer.put(&p, DAG.into()).await.unwrap();
    })
    .await;
    stack.shutdown().await;

    let azurite = Azurite::start().await.unwrap();
    let url = azurite.bucket_url("platform", "hangar").await.unwrap();
    let writer = Bucket::from_url(&url).unwrap();
    let (stack, _) = dag_from_bucket_runs(url, async |dags_url: &str| {
        assert!(dags_url.starts_with("az://platform/hangar/"), "{dags_url}");
        let p = Bucket::child(&writer.dags_prefix("acme", "etl"), "from_bucket.py");
        writer.put(&p, DAG.into()).await.unwrap();
    })
    .await;
    stack.shutdown().await;
}

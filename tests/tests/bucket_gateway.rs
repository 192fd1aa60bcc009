//! The agent's bucket gateway with the clients that use it on a Kubernetes cell, in front of a
//! real S3 (moto) as the platform bucket: each environment's credentials as the renderer puts
//! them in its `bucket-access` Secret, the DAG sync engine (`object_store`), boto3 and the AWS
//! CLI, and Airflow's own S3 remote logging (the amazon provider, configured by the rendered
//! variables) writing and reading a task log where the control plane reads task logs. Another
//! environment's prefix, a write outside the archive and task-log prefixes, a wrong secret and
//! an unsigned request are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;

use hangar_data_plane::bucket::Bucket;
use hangar_data_plane::bucket_gateway::{Gateway, GatewayKey, Grant};
use hangar_data_plane::dag_sync::DagSync;
use hangar_data_plane::runtime::python::RuntimeCache;
use hangar_tenants::blueprint::kubernetes::samples::samples;
use hangar_tenants::blueprint::kubernetes::{pod_template, render, KubeInput, BUCKET_SECRET};
use hangar_tenants::bucket_layout::{self as layout, TaskTry};
use hangar_tenants::names::EnvName;
use hangar_tests::emulators::{tool, tools_dir, Moto};
use hangar_tests::{succeeded, test_runtime_dir, KUBERNETES_PROVIDERS};
use tokio_util::sync::CancellationToken;

/// A gateway over a moto bucket (`platform`, prefix `cell-a`).
struct Fixture {
    _moto: Moto,
    platform: Bucket,
    addr: SocketAddr,
    key: GatewayKey,
    shutdown: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn fixture() -> Fixture {
    let moto = Moto::start().await.unwrap();
    let platform = Bucket::from_url(&moto.bucket_url("platform", "cell-a").await.unwrap()).unwrap();
    let key = GatewayKey::derive(b"the cell's token");
    let shutdown = CancellationToken::new();
    let addr = Gateway::new(platform.clone(), key.clone())
        .spawn("127.0.0.1:0".parse().unwrap(), shutdown.clone())
        .await
        .unwrap();
    Fixture {
        _moto: moto,
        platform,
        addr,
        key,
        shutdown,
    }
}

impl Fixture {
    /// A sample environment rendered for this gateway, with its credentials.
    fn input(&self, sample: &str) -> KubeInput {
        let mut input = samples()
            .unwrap()
            .into_iter()
            .find(|s| s.name == sample)
            .unwrap()
            .input;
        input.cell.bucket_gateway_url = format!("http://{}", self.addr);
        let grant = grant(&input);
        input.bucket_access = Some(self.key.credentials(&grant));
        input
    }

    async fn put(&self, key: &str, body: &str) {
        let key = layout::Key::parse(key).unwrap();
        self.platform
            .put(&self.platform.path(&key), body.to_owned().into())
            .await
            .unwrap();
    }
}

fn grant(input: &KubeInput) -> Grant {
    Grant {
        tenant: input.tenant.clone(),
        environment: input.spec.name.clone(),
        id: input.environment_id,
    }
}

/// The files of the environment's `bucket-access` Secret, as its pods read them.
fn bucket_files(input: &KubeInput) -> (String, String) {
    let objects = render(input).unwrap().objects;
    let secret = objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == BUCKET_SECRET)
        .unwrap();
    let file = |name: &str| {
        use base64::Engine;
        let b64 = secret["data"][name].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    (file("url"), file("credentials"))
}

fn prefix(input: &KubeInput) -> String {
    format!(
        "{}/",
        layout::env_prefix(input.tenant.as_str(), input.spec.name.as_str())
    )
}

/// An environment of the same tenant, named `other`.
fn other(input: &KubeInput) -> KubeInput {
    let mut other = input.clone();
    other.spec.name = EnvName::parse("other").unwrap();
    other.environment_id = uuid::Uuid::from_u128(7);
    other
}

#[tokio::test]
async fn the_dag_sync_engine_reads_its_own_environment_through_the_gateway_and_no_other() {
    let f = fixture().await;
    let input = f.input("celery_micro");
    let (tenant, env) = (input.tenant.as_str(), input.spec.name.as_str());
    let own = prefix(&input);
    let theirs = prefix(&other(&input));
    f.put(&format!("{own}dags/etl.py"), "# etl\n").await;
    f.put(&format!("{own}dags/team/load.py"), "# load\n").await;
    f.put(&format!("{theirs}dags/secret.py"), "# theirs\n")
        .await;

    let (url, _) = bucket_files(&input);
    let url_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(url_file.path(), &url).unwrap();
    // As the sidecar finds it: in the Secret's file.
    let through = hangar_control_plane::bucket_source::BucketSource {
        url: None,
        url_file: Some(url_file.path().to_owned()),
    }
    .open()
    .unwrap();

    // One sync round, as the sidecar runs it.
    let home = tempfile::tempdir().unwrap();
    let mut sync = DagSync::new(through.clone(), tenant, env, home.path(), true);
    sync.sync().await.unwrap();
    let dags = home.path().join("dags");
    assert_eq!(
        std::fs::read_to_string(dags.join("etl.py")).unwrap(),
        "# etl\n"
    );
    assert_eq!(
        std::fs::read_to_string(dags.join("team/load.py")).unwrap(),
        "# load\n"
    );

    // The requirements archive goes up; DAGs and other environments stay out of reach.
    let archive = layout::requirements_archive(tenant, env, "abc123");
    through
        .put(&through.path(&archive), "archive".into())
        .await
        .unwrap();
    assert_eq!(
        f.platform.get(&f.platform.path(&archive)).await.unwrap(),
        "archive"
    );
    let dag = layout::Key::parse(&format!("{own}dags/evil.py")).unwrap();
    assert!(through.put(&through.path(&dag), "x".into()).await.is_err());
    let secret = layout::Key::parse(&format!("{theirs}dags/secret.py")).unwrap();
    assert!(through.get(&through.path(&secret)).await.is_err());
    let their_dags = layout::Key::parse(&format!("{theirs}dags")).unwrap();
    assert!(through.list(&through.path(&their_dags)).await.is_err());

    // A secret that is not the environment's, and no signature at all.
    let forged = url.replace("secret_access_key=", "secret_access_key=x");
    let forged = Bucket::from_url(&forged).unwrap();
    assert!(forged
        .get(&forged.path(&layout::Key::parse(&format!("{own}dags/etl.py")).unwrap()))
        .await
        .is_err());
    let anonymous = reqwest::get(format!("http://{}/hangar/{own}dags/etl.py", f.addr))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 403);
}

/// boto3 as tenants' code and Airflow's providers use it, against the gateway.
const BOTO3: &str = r#"
import json, sys
import boto3, botocore
from botocore.config import Config

endpoint, access_key, secret_key, own, theirs, their_key, log_key = sys.argv[1:8]

def client(ak, sk):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )

def code(call):
    try:
        call()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]

s3 = client(access_key, secret_key)
out = {}
s3.put_object(Bucket="hangar", Key=log_key, Body=b"line one\nline two\n")
out["get"] = s3.get_object(Bucket="hangar", Key=log_key)["Body"].read().decode()
out["head"] = s3.head_object(Bucket="hangar", Key=log_key)["ContentLength"]
out["range"] = s3.get_object(Bucket="hangar", Key=log_key, Range="bytes=5-7")["Body"].read().decode()
pages = s3.get_paginator("list_objects_v2").paginate(
    Bucket="hangar", Prefix=own + "dags/", PaginationConfig={"PageSize": 1})
out["pages"] = [[o["Key"] for o in p.get("Contents", [])] for p in pages]
top = s3.list_objects_v2(Bucket="hangar", Prefix=own, Delimiter="/")
out["folders"] = sorted(p["Prefix"] for p in top.get("CommonPrefixes", []))
out["files"] = sorted(o["Key"] for o in top.get("Contents", []))
big = b"x" * (6 << 20)
s3.put_object(Bucket="hangar", Key=own + "python/big.tar.gz", Body=big)
out["big"] = s3.head_object(Bucket="hangar", Key=own + "python/big.tar.gz")["ContentLength"]
out["missing"] = code(lambda: s3.get_object(Bucket="hangar", Key=own + "dags/none.py"))
out["write_dags"] = code(lambda: s3.put_object(Bucket="hangar", Key=own + "dags/evil.py", Body=b"x"))
out["write_requirements"] = code(
    lambda: s3.put_object(Bucket="hangar", Key=own + "requirements.txt", Body=b"x"))
out["read_theirs"] = code(lambda: s3.get_object(Bucket="hangar", Key=theirs + "dags/secret.py"))
out["list_theirs"] = code(lambda: s3.list_objects_v2(Bucket="hangar", Prefix=theirs))
out["list_all"] = code(lambda: s3.list_objects_v2(Bucket="hangar"))
out["dot_dot"] = code(
    lambda: s3.get_object(Bucket="hangar", Key=own + "dags/../../other/dags/secret.py"))
out["other_bucket"] = code(lambda: s3.get_object(Bucket="platform", Key=own + "dags/a.py"))
out["wrong_secret"] = code(lambda: client(access_key, "wrong").list_objects_v2(Bucket="hangar", Prefix=own))
out["their_key_my_secret"] = code(
    lambda: client(their_key, secret_key).list_objects_v2(Bucket="hangar", Prefix=theirs))
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_and_the_aws_cli_are_served_within_the_environments_prefix() {
    let f = fixture().await;
    let input = f.input("celery_micro");
    let own = prefix(&input);
    let them = other(&input);
    let theirs = prefix(&them);
    f.put(&format!("{own}dags/a.py"), "a").await;
    f.put(&format!("{own}dags/b.py"), "b").await;
    f.put(&format!("{own}dags/c/d.py"), "d").await;
    f.put(&format!("{own}requirements.txt"), "pandas\n").await;
    f.put(&format!("{theirs}dags/secret.py"), "theirs").await;
    let access = f.key.credentials(&grant(&input));
    let their_key = grant(&them).access_key();
    let tasks = layout::tasks_prefix(
        input.tenant.as_str(),
        input.spec.name.as_str(),
        input.environment_id,
    );
    let log_key = format!("{tasks}/dag_id=etl/run_id=r/task_id=t/attempt=1.log");

    let python = tools_dir().join("py/bin/python");
    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(BOTO3)
        .args([
            &format!("http://{}", f.addr),
            &access.access_key,
            &access.secret_key,
            &own,
            &theirs,
            &their_key,
            &log_key,
        ])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .await
        .unwrap();
    let got: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();
    assert_eq!(got["get"], "line one\nline two\n");
    assert_eq!(got["head"], 18);
    assert_eq!(got["range"], "one");
    assert_eq!(
        got["pages"],
        serde_json::json!([
            [format!("{own}dags/a.py")],
            [format!("{own}dags/b.py")],
            [format!("{own}dags/c/d.py")]
        ])
    );
    assert_eq!(
        got["folders"],
        serde_json::json!([format!("{own}dags/"), format!("{own}logs/")])
    );
    assert_eq!(
        got["files"],
        serde_json::json!([format!("{own}requirements.txt")])
    );
    assert_eq!(got["big"], 6 << 20);
    assert_eq!(got["missing"], "NoSuchKey");
    for refused in [
        "write_dags",
        "write_requirements",
        "read_theirs",
        "list_theirs",
        "list_all",
    ] {
        assert_eq!(got[refused], "AccessDenied", "{refused}: {got}");
    }
    assert_eq!(got["dot_dot"], "InvalidArgument");
    assert_eq!(got["other_bucket"], "NoSuchBucket");
    assert_eq!(got["wrong_secret"], "SignatureDoesNotMatch");
    assert_eq!(got["their_key_my_secret"], "SignatureDoesNotMatch");
    // What was written is in the platform bucket, where the control plane reads task logs.
    let stored = f
        .platform
        .get(&f.platform.path(&layout::Key::parse(&log_key).unwrap()))
        .await
        .unwrap();
    assert_eq!(stored, "line one\nline two\n");

    // The AWS CLI, with the environment's keys (run without blocking the gateway's runtime).
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "packed").unwrap();
    let endpoint = format!("http://{}", f.addr);
    let aws = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(tool("aws").unwrap());
        cmd.args(args)
            .args(["--endpoint-url", &endpoint])
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_ACCESS_KEY_ID", &access.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &access.secret_key)
            .env("AWS_DEFAULT_REGION", "us-east-1");
        async move { cmd.output().await.unwrap() }
    };
    let local = file.path().to_str().unwrap().to_owned();
    let cp = |to: String| vec!["s3".to_owned(), "cp".to_owned(), local.clone(), to];
    let done = aws(cp(format!("s3://hangar/{own}python/cli.tar.gz"))).await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let ls = aws(vec![
        "s3".to_owned(),
        "ls".to_owned(),
        format!("s3://hangar/{own}python/"),
    ])
    .await;
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(String::from_utf8_lossy(&ls.stdout).contains("cli.tar.gz"));
    let denied = aws(cp(format!("s3://hangar/{theirs}python/x.tar.gz"))).await;
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("AccessDenied"));
}

/// Airflow's remote task logging as configured by the rendered variables: the S3 remote log
/// IO Airflow builds from them uploads a task's log (twice, the second appending, as a task
/// that ran on and a retry of the upload do) and reads it back.
const REMOTE_LOG: &str = r#"
import json, os, pathlib, sys
from airflow.config_templates import airflow_local_settings as settings

io = settings.REMOTE_TASK_LOG
relative = sys.argv[1]
path = pathlib.Path(os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]) / relative
path.parent.mkdir(parents=True)
path.write_text('{"event": "started"}\n')
io.upload(path)
path.write_text('{"event": "finished"}\n')
io.upload(path)
sources, logs = io.read(relative, None)
print("RESULT " + json.dumps({"io": type(io).__name__, "sources": sources, "logs": logs}))
"#;

#[tokio::test]
async fn airflow_writes_task_logs_to_the_bucket_through_the_gateway() {
    let f = fixture().await;
    let cache = RuntimeCache::new(&test_runtime_dir(), Path::new("uv"));
    let runtime = cache.ensure("3.3.2", KUBERNETES_PROVIDERS).await.unwrap();
    let input = f.input("kubernetes_executor");
    let (_, credentials) = bucket_files(&input);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("credentials"), credentials).unwrap();

    // The task pod's own variables, with the pod's paths moved into this test's folder.
    let template = pod_template(&input).unwrap();
    let env = template["spec"]["containers"][0]["env"].as_array().unwrap();
    let mut cmd = tokio::process::Command::new(runtime.bin("python"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap());
    for var in env {
        cmd.env(
            var["name"].as_str().unwrap(),
            var["value"].as_str().unwrap(),
        );
    }
    let home = dir.path();
    cmd.env("AIRFLOW_HOME", home)
        .env("AIRFLOW_CONFIG", home.join("airflow.cfg"))
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("AIRFLOW__LOGGING__BASE_LOG_FOLDER", home.join("logs"))
        .env("AIRFLOW__CORE__DAGS_FOLDER", home.join("dags"))
        .env("AIRFLOW__CORE__PLUGINS_FOLDER", home.join("plugins"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"));
    let run = "manual__2026-12-01T20:00:00+00:00";
    let relative = format!("dag_id=etl/run_id={run}/task_id=extract/attempt=1.log");
    let out = cmd
        .arg("-c")
        .arg(REMOTE_LOG)
        .arg(&relative)
        .output()
        .await
        .unwrap();
    let stdout = succeeded(&out);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let got: serde_json::Value = serde_json::from_str(result).unwrap();
    let both = "{\"event\": \"started\"}\n{\"event\": \"finished\"}\n";
    assert_eq!(got["io"], "S3RemoteLogIO");
    assert_eq!(got["logs"], serde_json::json!([both]), "{got}");

    // Where the control plane reads the task's log from.
    let tasks = layout::tasks_prefix(
        input.tenant.as_str(),
        input.spec.name.as_str(),
        input.environment_id,
    );
    let key = layout::task_log_key(
        &tasks,
        TaskTry {
            dag: "etl",
            run,
            task: "extract",
            map_index: None,
            attempt: 1,
        },
    );
    assert_eq!(
        got["sources"],
        serde_json::json!([format!("s3://hangar/{key}")])
    );
    assert_eq!(f.platform.get(&f.platform.path(&key)).await.unwrap(), both);
}

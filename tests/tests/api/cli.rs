//! The `hangar` binary's client subcommands against a running control plane.

use std::path::PathBuf;
use std::process::{Command, Output};

use hangar_tests::{spawn_app, ADMIN_TOKEN};

/// target/<profile>/hangar, next to this test's own executable in target/<profile>/deps.
fn hangar_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("hangar");
    assert!(
        bin.exists(),
        "build the binary first: cargo build -p hangar-control-plane ({})",
        bin.display()
    );
    bin
}

fn hangar(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(hangar_bin())
        .args(args)
        .env("HANGAR_URL", url)
        .env("HANGAR_TOKEN", token)
        .env_remove("HANGAR_TENANT")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_cli_creates_a_tenant_a_token_and_environments() {
    let app = spawn_app().await;
    let url = app.address.clone();
    tokio::task::spawn_blocking(move || {
        ok(hangar(
            &url,
            ADMIN_TOKEN,
            &["tenant", "create", "data", "--display-name", "Data"],
        ));
        let token = ok(hangar(
            &url,
            ADMIN_TOKEN,
            &["token", "create", "--tenant", "data", "--role", "editor"],
        ));
        let token = token.trim();
        assert!(token.starts_with("hgr_"));

        let created: serde_json::Value = serde_json::from_str(&ok(hangar(
            &url,
            token,
            &[
                "env",
                "create",
                "etl",
                "--tenant",
                "data",
                "--class",
                "medium",
                "--max-workers",
                "4",
                "--config",
                "core.parallelism=64",
                "--tag",
                "team=data",
                "--json",
            ],
        )))
        .unwrap();
        assert_eq!(created["phase"], "CREATING");
        assert_eq!(created["spec"]["environment_class"], "medium");
        assert_eq!(
            created["spec"]["airflow_config_overrides"]["core.parallelism"],
            "64"
        );

        let table = ok(hangar(&url, token, &["env", "list", "--tenant", "data"]));
        assert!(table.starts_with("NAME"), "{table}");
        assert!(
            table.contains("etl") && table.contains("CREATING") && table.contains("0-4"),
            "{table}"
        );

        let updated: serde_json::Value = serde_json::from_str(&ok(hangar(
            &url,
            token,
            &[
                "env",
                "update",
                "etl",
                "--tenant",
                "data",
                "--min-workers",
                "1",
                "--if-revision",
                "1",
                "--json",
            ],
        )))
        .unwrap();
        assert_eq!(updated["revision"], 2);

        // A stale revision and a refused field come back as readable errors.
        let stale = hangar(
            &url,
            token,
            &[
                "env",
                "update",
                "etl",
                "--tenant",
                "data",
                "--min-workers",
                "2",
                "--if-revision",
                "1",
            ],
        );
        assert!(!stale.status.success());
        assert!(String::from_utf8_lossy(&stale.stderr).contains("412"));
        let bad = hangar(
            &url,
            token,
            &["env", "create", "Bad_Name", "--tenant", "data"],
        );
        assert!(!bad.status.success());
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains("422") && stderr.contains("name:"),
            "{stderr}"
        );

        let deleted = ok(hangar(
            &url,
            token,
            &["env", "delete", "etl", "--tenant", "data"],
        ));
        assert!(deleted.contains("DELETED"), "{deleted}");
    })
    .await
    .unwrap();
}

/// Starts `hangar dev` on `dir` and waits for its dev.json; returns the child and (url, token).
fn start_dev(dir: &std::path::Path) -> (std::process::Child, String, String) {
    let _ = std::fs::remove_file(dir.join("dev.json"));
    let mut child = Command::new(hangar_bin())
        .args([
            "dev",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..120 {
        if let Ok(text) = std::fs::read_to_string(dir.join("dev.json")) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            return (
                child,
                v["url"].as_str().unwrap().to_owned(),
                v["admin_token"].as_str().unwrap().to_owned(),
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("hangar dev wrote no dev.json in 30 s");
}

/// Ctrl-C, and wait for a clean exit.
fn interrupt(mut child: std::process::Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "hangar dev exited with {status}");
}

#[tokio::test]
async fn hangar_dev_serves_and_brings_its_data_back_after_a_restart() {
    tokio::task::spawn_blocking(|| {
        let tmp =
            std::env::temp_dir().join(format!("hangar-dev-test-{}", uuid::Uuid::new_v4().simple()));
        let (child, url, token) = start_dev(&tmp);
        ok(hangar(&url, &token, &["tenant", "create", "demo"]));
        interrupt(child);
        let postgres_pid = std::fs::read_to_string(tmp.join("postgres/data/postmaster.pid"));
        assert!(postgres_pid.is_err(), "the private Postgres was stopped");

        let (child, url, again) = start_dev(&tmp);
        assert_eq!(again, token, "the admin token is kept");
        let list = ok(hangar(&url, &token, &["tenant", "list", "--json"]));
        assert!(list.contains("\"demo\""), "{list}");
        let said = ok(hangar(&url, &token, &["tenant", "delete", "demo"]));
        assert!(said.contains("tenant demo deleted"), "{said}");
        let list = ok(hangar(&url, &token, &["tenant", "list", "--json"]));
        assert!(!list.contains("\"demo\""), "{list}");
        interrupt(child);
        std::fs::remove_dir_all(&tmp).unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn hangar_migrate_applies_every_migration_to_a_fresh_database() {
    let url = hangar_tests::fresh_database().await.unwrap();
    let bin_url = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(hangar_bin())
            .args(["migrate"])
            .env("HANGAR_DATABASE_URL", bin_url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    ok(out);
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(
        applied,
        hangar_control_plane::persistence::MIGRATOR.iter().count() as i64
    );
    let envs: i64 = sqlx::query_scalar("SELECT count(*) FROM environments")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(envs, 0);
}

/// An agent that is not root refuses to run environments (it could not give each its own user),
/// saying why and what to set; with `HANGAR_INSECURE_SINGLE_USER=true` it goes on (here to the
/// platform Postgres URL, which lacks a port).
#[test]
fn a_non_root_agent_refuses_to_run_environments_unless_told_they_may_share_its_user() {
    let agent = |insecure: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(hangar_bin())
            .arg("agent")
            .env("HANGAR_CELL", "local")
            .env("HANGAR_CELL_TOKEN", "not-used")
            .env(
                "HANGAR_AGENT_DIR",
                std::env::temp_dir().join("hangar-non-root-agent"),
            )
            // No port: refused at once, after the check of the user.
            .env(
                "HANGAR_PLATFORM_POSTGRES_URL",
                "postgres://hangar:x@nowhere/postgres",
            )
            .env("HANGAR_PLATFORM_REDIS_URL", "redis://admin:x@127.0.0.1:1")
            .env("HANGAR_INSECURE_SINGLE_USER", insecure)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let refused = agent("false");
    assert!(
        refused.contains("needs the agent to run as root")
            && refused.contains("HANGAR_INSECURE_SINGLE_USER=true"),
        "{refused}"
    );
    let insecure = agent("true");
    assert!(
        !insecure.contains("needs the agent to run as root") && insecure.contains("Postgres"),
        "{insecure}"
    );
}

#[test]
fn hangar_serve_without_settings_says_what_to_set() {
    let out = Command::new(hangar_bin())
        .arg("serve")
        .env_remove("HANGAR_DATABASE_URL")
        .env_remove("HANGAR_ADMIN_TOKEN")
        .env_remove("HANGAR_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HANGAR_DATABASE_URL") && stderr.contains("HANGAR_ADMIN_TOKEN"),
        "{stderr}"
    );

    let out = Command::new(hangar_bin())
        .arg("serve")
        .env(
            "HANGAR_DATABASE_URL",
            "postgres://nobody:x@127.0.0.1:1/none",
        )
        .env("HANGAR_ADMIN_TOKEN", "short")
        .env(
            "HANGAR_MASTER_KEY",
            hangar_control_plane::secrets::MasterKey::generate(),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HANGAR_ADMIN_TOKEN must be at least 16 characters"),
        "{stderr}"
    );
}

#[tokio::test]
async fn cell_list_shows_each_cells_isolation_and_env_get_warns_on_a_cell_without_it() {
    let app = spawn_app().await;
    let editor = app
        .tenant_with_role("data", hangar_tenants::api::Role::Editor)
        .await
        .unwrap();
    let isolated = hangar_tenants::api::CellIsolation {
        isolated: true,
        users: true,
        cgroups: Some("v2".into()),
        landlock: Some(4),
        namespaces: false,
        problems: vec![],
    };
    app.registered_agent_reporting("fenced", 1, Some(isolated))
        .await
        .unwrap();
    hangar_tests::create_env(&editor, "data", "safe")
        .await
        .unwrap();
    app.registered_agent("open", 1).await.unwrap();
    hangar_tests::create_env(&editor, "data", "risky")
        .await
        .unwrap();
    let token = app
        .admin
        .create_token(
            "data",
            &hangar_tenants::api::CreateToken {
                name: "cli".into(),
                role: hangar_tenants::api::Role::Viewer,
            },
        )
        .await
        .unwrap()
        .token;
    let url = app.address.clone();
    tokio::task::spawn_blocking(move || {
        let cells = ok(hangar(&url, ADMIN_TOKEN, &["cell", "list"]));
        let rows: Vec<Vec<&str>> = cells
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0][4], "ISOLATED", "{cells}");
        assert_eq!((rows[1][0], rows[1][4]), ("fenced", "yes"), "{cells}");
        assert_eq!((rows[2][0], rows[2][4]), ("open", "unknown"), "{cells}");

        let get = |env: &str| hangar(&url, &token, &["env", "get", env, "--tenant", "data"]);
        let risky = get("risky");
        let warning = String::from_utf8_lossy(&risky.stderr).into_owned();
        assert!(ok(risky).contains("open"));
        assert!(
            warning.contains("warning: cell open does not isolate its environments"),
            "{warning}"
        );
        let safe = get("safe");
        assert!(safe.stderr.is_empty(), "{safe:?}");
        assert!(ok(safe).contains("fenced"));
    })
    .await
    .unwrap();
}

#[test]
fn hangar_serve_refuses_bad_settings_naming_them() {
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let admin = "0123456789abcdefghij";
    for (master_key, metrics, says) in [
        ("too-short", None, "HANGAR_MASTER_KEY must be 32 bytes"),
        (
            key,
            Some("short"),
            "HANGAR_METRICS_TOKEN must be at least 16 characters and differ",
        ),
        (
            key,
            Some(admin),
            "HANGAR_METRICS_TOKEN must be at least 16 characters and differ",
        ),
    ] {
        let mut cmd = Command::new(hangar_bin());
        cmd.arg("serve")
            .env(
                "HANGAR_DATABASE_URL",
                "postgres://nobody:x@127.0.0.1:1/none",
            )
            .env("HANGAR_ADMIN_TOKEN", admin)
            .env("HANGAR_MASTER_KEY", master_key);
        if let Some(m) = metrics {
            cmd.env("HANGAR_METRICS_TOKEN", m);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
}

#[tokio::test]
async fn dags_push_uploads_only_what_changed_and_can_remove_the_rest() {
    let bucket =
        std::env::temp_dir().join(format!("hangar-push-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("file://{}", bucket.display());
    let app = hangar_tests::spawn_app_with(move |s| s.bucket = Some(url)).await;
    app.tenant_with_role("data", hangar_tenants::api::Role::Admin)
        .await
        .unwrap()
        .create_environment(
            "data",
            &hangar_tenants::api::CreateEnvironment {
                name: "etl".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let dir =
        std::env::temp_dir().join(format!("hangar-push-src-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("team/__pycache__")).unwrap();
    std::fs::write(dir.join("a.py"), "a = 1\n").unwrap();
    std::fs::write(dir.join("team/b c.py"), "b = 1\n").unwrap();
    std::fs::write(dir.join(".airflowignore"), "scratch/\n").unwrap();
    std::fs::write(dir.join("team/__pycache__/b.cpython-311.pyc"), "x").unwrap();
    let (url, d) = (app.address.clone(), dir.clone());
    let push = move |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "dags",
            "push",
            "etl",
            d.to_str().unwrap(),
            "--tenant",
            "data",
            "--json",
        ];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(hangar(&url, ADMIN_TOKEN, &args))).unwrap()
    };
    let (push2, dir2, bucket2) = (push.clone(), dir.clone(), bucket.clone());
    let url2 = app.address.clone();
    tokio::task::spawn_blocking(move || {
        let first = push2(&[]);
        assert_eq!(
            first["uploaded"],
            serde_json::json!([".airflowignore", "a.py", "team/b c.py"])
        );
        let stored = bucket2.join("tenants/data/environments/etl/dags/team/b c.py");
        assert_eq!(std::fs::read_to_string(stored).unwrap(), "b = 1\n");

        let again = push2(&[]);
        assert_eq!(again["uploaded"], serde_json::json!([]));
        assert_eq!(again["unchanged"], 3);

        // Same size, different content: found by comparing, uploaded alone.
        std::fs::write(dir2.join("a.py"), "a = 2\n").unwrap();
        std::fs::remove_file(dir2.join(".airflowignore")).unwrap();
        let third = push2(&[]);
        assert_eq!(third["uploaded"], serde_json::json!(["a.py"]));
        assert_eq!(third["removed"], serde_json::json!([]));
        let fourth = push2(&["--delete"]);
        assert_eq!(fourth["removed"], serde_json::json!([".airflowignore"]));
        assert!(!bucket2
            .join("tenants/data/environments/etl/dags/.airflowignore")
            .exists());

        // The earlier form, the environment as a flag, still works and says what to write.
        let (url, d) = (url2.clone(), dir2.to_str().unwrap().to_owned());
        std::fs::write(dir2.join("a.py"), "a = 3\n").unwrap();
        let old = hangar(
            &url,
            ADMIN_TOKEN,
            &[
                "dags", "push", &d, "--env", "etl", "--tenant", "data", "--json",
            ],
        );
        let warning = String::from_utf8_lossy(&old.stderr).into_owned();
        let pushed: serde_json::Value = serde_json::from_str(&ok(old)).unwrap();
        assert_eq!(pushed["uploaded"], serde_json::json!(["a.py"]));
        assert!(
            warning.contains("deprecated")
                && warning.contains(&format!("hangar dags push etl {d}")),
            "{warning}"
        );
        let both = hangar(
            &url,
            ADMIN_TOKEN,
            &[
                "dags", "push", "etl", &d, "--env", "etl", "--tenant", "data",
            ],
        );
        assert!(!both.status.success());
        assert!(String::from_utf8_lossy(&both.stderr).contains("environment once"));

        // `dags list ENV`, the same argument order.
        let listed: serde_json::Value = serde_json::from_str(&ok(hangar(
            &url,
            ADMIN_TOKEN,
            &["dags", "list", "etl", "--tenant", "data", "--json"],
        )))
        .unwrap();
        let paths: Vec<&str> = listed["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["a.py", "team/b c.py"]);
        let table = ok(hangar(
            &url,
            ADMIN_TOKEN,
            &["dags", "list", "etl", "--tenant", "data"],
        ));
        assert!(
            table.starts_with("PATH") && table.contains("team/b c.py  6"),
            "{table}"
        );
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bucket);
}

#[test]
fn dag_sync_mirrors_an_environments_dags_and_plugins_into_a_folder_once() {
    let bucket = tempfile::tempdir().unwrap();
    let env = bucket.path().join("tenants/data/environments/etl");
    std::fs::create_dir_all(env.join("dags/team")).unwrap();
    std::fs::create_dir_all(env.join("plugins")).unwrap();
    std::fs::write(env.join("dags/team/a.py"), "# a DAG\n").unwrap();
    std::fs::write(env.join("plugins/p.py"), "# a plugin\n").unwrap();
    // Another environment's files are not this one's.
    std::fs::create_dir_all(bucket.path().join("tenants/data/environments/other/dags")).unwrap();
    std::fs::write(
        bucket
            .path()
            .join("tenants/data/environments/other/dags/b.py"),
        "# b\n",
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let run = |tenant: &str| {
        Command::new(hangar_bin())
            .args(["dag-sync", "--bucket-url", &url, "--tenant", tenant])
            .args(["--environment", "etl", "--once", "--home"])
            .arg(home.path())
            .env_remove("AIRFLOW_CONFIG")
            .output()
            .unwrap()
    };
    ok(run("data"));
    let dags = home.path().join("dags");
    assert!(std::fs::symlink_metadata(&dags).unwrap().is_symlink());
    assert_eq!(
        std::fs::read_to_string(dags.join("team/a.py")).unwrap(),
        "# a DAG\n"
    );
    assert!(!dags.join("b.py").exists());
    assert_eq!(
        std::fs::read_to_string(home.path().join("plugins/p.py")).unwrap(),
        "# a plugin\n"
    );

    let refused = run("Data_Team");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--tenant"), "{err}");
}

/// The kinds and names of a `hangar env manifests` List, in order.
fn list_items(text: &str) -> (serde_json::Value, Vec<String>) {
    let list: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        (&list["apiVersion"], &list["kind"]),
        (&"v1".into(), &"List".into())
    );
    let names = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    (list, names)
}

#[test]
fn env_manifests_renders_a_create_request_without_a_control_plane() {
    let dir = std::env::temp_dir().join(format!(
        "hangar-manifests-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("etl.json");
    std::fs::write(
        &spec,
        r#"{"name": "etl", "executor": "kubernetes", "environment_class": "large",
            "requirements": "pandas==2.2.3\n"}"#,
    )
    .unwrap();
    let cell = dir.join("cell.json");
    std::fs::write(&cell, r#"{"bucket_url": "gs://platform/cell-b"}"#).unwrap();
    // No control plane at all: the URL leads nowhere.
    let render = |args: &[&str]| {
        Command::new(hangar_bin())
            .args(["env", "manifests"])
            .args(args)
            .env("HANGAR_URL", "http://127.0.0.1:9")
            .env_remove("HANGAR_TENANT")
            .output()
            .unwrap()
    };
    let spec_arg = spec.to_str().unwrap();
    let out = ok(render(&[
        "--spec",
        spec_arg,
        "--tenant",
        "data",
        "--cell",
        cell.to_str().unwrap(),
    ]));
    let (list, names) = list_items(&out);
    assert!(names[0].starts_with("Namespace/hangar-"), "{names:?}");
    for expected in [
        "NetworkPolicy/default-deny",
        "Secret/airflow-config",
        "ConfigMap/pod-template",
        "Role/airflow-scheduler",
        "Deployment/scheduler",
        "Service/api-server",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("Job/requirements-")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n == "Deployment/worker"), "{names:?}");
    let text = list.to_string();
    // Pods reach the bucket through the agent's gateway, never the platform bucket itself.
    assert!(
        text.contains("\"--bucket-url-file\",\"/opt/hangar/bucket/url\""),
        "{text}"
    );
    assert!(!text.contains("gs://platform/cell-b"), "{text}");
    assert!(
        names.iter().any(|n| n == "Secret/bucket-access"),
        "{names:?}"
    );
    assert!(
        text.contains("\"tenants/data/environments/etl/python/"),
        "{text}"
    );
    assert!(text.contains("\"hangar.dev/tenant\":\"data\""));
    // The same file renders the same objects; `--name` renames the environment.
    assert_eq!(
        ok(render(&[
            "--spec",
            spec_arg,
            "--tenant",
            "data",
            "--cell",
            cell.to_str().unwrap()
        ])),
        out
    );
    let renamed = ok(render(&["--spec", spec_arg, "--name", "etl2"]));
    assert!(renamed.contains("/environments/etl2/airflow/"), "{renamed}");
    assert_ne!(list_items(&renamed).1[0], names[0]);

    // A request the API would refuse is refused naming the field, as the API names it.
    for (body, field) in [
        (r#"{"name": "etl", "schedulers": 9}"#, "schedulers:"),
        (r#"{"name": "etl", "max_workers": "ten"}"#, "max_workers"),
        (r#"{"name": "Etl"}"#, "name:"),
        (r#"{"name": "etl", "executer": "celery"}"#, "executer"),
    ] {
        std::fs::write(&spec, body).unwrap();
        let bad = render(&["--spec", spec_arg]);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            !bad.status.success() && stderr.contains(field),
            "{body}: {stderr}"
        );
    }
    std::fs::write(
        &cell,
        r#"{"redis": {"cidrs": ["10.0.0.0/99"], "ports": [6379]}}"#,
    )
    .unwrap();
    std::fs::write(&spec, r#"{"name": "etl"}"#).unwrap();
    let bad = render(&["--spec", spec_arg, "--cell", cell.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("redis"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn env_manifests_reads_the_environment_from_the_control_plane_with_secrets_redacted() {
    let app = spawn_app().await;
    let url = app.address.clone();
    tokio::task::spawn_blocking(move || {
        ok(hangar(&url, ADMIN_TOKEN, &["tenant", "create", "data"]));
        let created: serde_json::Value = serde_json::from_str(&ok(hangar(
            &url,
            ADMIN_TOKEN,
            &[
                "env",
                "create",
                "etl",
                "--tenant",
                "data",
                "--max-workers",
                "3",
                "--json",
            ],
        )))
        .unwrap();
        let id = uuid::Uuid::parse_str(created["id"].as_str().unwrap()).unwrap();
        let out = ok(hangar(
            &url,
            ADMIN_TOKEN,
            &["env", "manifests", "etl", "--tenant", "data"],
        ));
        let (list, names) = list_items(&out);
        let hex = id.simple().to_string();
        assert_eq!(names[0], format!("Namespace/hangar-{}", &hex[..12]));
        assert!(names.iter().any(|n| n == "Deployment/worker"), "{names:?}");
        let secret = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == "Secret")
            .unwrap();
        // "<redacted>", base64.
        for value in secret["data"].as_object().unwrap().values() {
            assert_eq!(value, "PHJlZGFjdGVkPg==");
        }
        let missing = hangar(
            &url,
            ADMIN_TOKEN,
            &["env", "manifests", "nope", "--tenant", "data"],
        );
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    })
    .await
    .unwrap();
}

#[test]
fn requirements_are_packed_into_the_bucket_and_unpacked_by_another_pod() {
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bucket.path().display());
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("tenant_lib")).unwrap();
    std::fs::write(site.path().join("tenant_lib/__init__.py"), "VERSION = 3\n").unwrap();
    let key = "tenants/data/environments/etl/python/0123456789.tar.gz";
    let hangar = |args: &[&str]| {
        Command::new(hangar_bin())
            .arg("requirements")
            .args(args)
            .args(["--bucket-url", &url])
            .output()
            .unwrap()
    };
    ok(hangar(&[
        "pack",
        "--site",
        site.path().to_str().unwrap(),
        "--archive",
        key,
    ]));
    assert!(bucket.path().join(key).is_file());

    let into = tempfile::tempdir().unwrap();
    let python = into.path().join("python");
    ok(hangar(&[
        "unpack",
        "--archive",
        key,
        "--into",
        python.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(python.join("tenant_lib/__init__.py")).unwrap(),
        "VERSION = 3\n"
    );

    // An archive that never comes is an error naming it; a key that escapes is refused.
    let missing = "tenants/data/environments/etl/python/missing.tar.gz";
    let out = hangar(&[
        "unpack",
        "--archive",
        missing,
        "--into",
        python.to_str().unwrap(),
        "--wait-seconds",
        "0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(missing));
    let out = hangar(&["unpack", "--archive", "../x.tar.gz", "--into", "/tmp/x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--archive"));
}

#[test]
fn completions_come_for_bash_zsh_and_fish_and_an_unknown_shell_is_named() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef hangar"),
        ("fish", "complete -c hangar"),
    ] {
        let out = Command::new(hangar_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = ok(out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("portal-login"), "{shell} lacks subcommands");
    }
    let out = Command::new(hangar_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("<SHELL>"), "{err}");
}

//! The Helm chart `charts/hangar`: `helm lint --strict` and `helm template` (helm from
//! `scripts/bootstrap`) over every values file of `charts/hangar/ci/`, every rendered object
//! checked by `kubernetes-validate --strict`, and bad values refused by `values.schema.json`
//! with the field named. No cluster runs here: nothing is installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hangar_tests::emulators::tool;

const VERSIONS: [&str; 2] = ["1.37.0", "1.33.0"];

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/hangar")
}

fn values_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
}

fn helm(args: &[&str]) -> Output {
    Command::new(tool("helm").unwrap())
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("hangar-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("hangar-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("hangar-helm-data"),
        )
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn render(values: &Path, extra: &[&str]) -> Output {
    let chart = chart();
    let mut args = vec![
        "template",
        "hangar",
        chart.to_str().unwrap(),
        "--namespace",
        "hangar-system",
        "-f",
        values.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

fn kubernetes_validate(version: &str, file: &Path) -> Output {
    Command::new(tool("kubernetes-validate").unwrap())
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn the_chart_lints_strictly_with_every_values_file() {
    let chart = chart();
    for values in values_files() {
        let out = helm(&[
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            "-f",
            values.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}: {}", values.display(), text(&out));
    }
}

#[test]
fn every_rendered_object_is_valid_for_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    for values in values_files() {
        let out = render(&values, &[]);
        assert!(out.status.success(), "{}: {}", values.display(), text(&out));
        let rendered = String::from_utf8(out.stdout).unwrap();
        let objects = rendered.matches("\nkind: ").count();
        let file = dir
            .path()
            .join(values.file_name().unwrap())
            .with_extension("rendered.yaml");
        std::fs::write(&file, &rendered).unwrap();
        for version in VERSIONS {
            let out = kubernetes_validate(version, &file);
            let said = text(&out);
            assert!(
                out.status.success(),
                "{} on {version}:\n{said}",
                values.display()
            );
            // Every object passed, but the Prometheus Operator's ServiceMonitor, whose schema
            // (a CRD's) the validator does not have.
            let skipped = said
                .matches("Couldn't find schema for kind ServiceMonitor")
                .count();
            assert_eq!(
                said.matches(" passed for resource ").count() + skipped,
                objects,
                "{}:\n{said}",
                values.display()
            );
        }
        // Restricted pods: no container of the chart runs as root or keeps a capability.
        for pod_spec in rendered
            .split("\n---")
            .filter(|d| d.contains("containers:"))
        {
            assert!(pod_spec.contains("runAsNonRoot: true"), "{pod_spec}");
            assert!(
                pod_spec.contains("drop: [ALL]") || pod_spec.contains("- ALL"),
                "{pod_spec}"
            );
            assert!(
                pod_spec.contains("readOnlyRootFilesystem: true"),
                "{pod_spec}"
            );
        }
    }

    // The check can fail: an object with a field Kubernetes does not have is refused.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n",
    )
    .unwrap();
    assert!(!kubernetes_validate(VERSIONS[0], &broken).status.success());
}

#[test]
fn the_full_values_wire_the_agent_to_this_namespace_and_the_bucket() {
    let out = render(&chart().join("ci/full-values.yaml"), &[]);
    let rendered = String::from_utf8(out.stdout).unwrap();
    // The cell's file names this release's namespace as the system namespace, and the gateway
    // Service the chart renders.
    assert!(
        rendered.contains(r#""system_namespace": "hangar-system""#),
        "{rendered}"
    );
    assert!(
        rendered.contains(r#""bucket_gateway_url": "http://hangar-agent.hangar-system.svc:9470""#),
        "{rendered}"
    );
    assert!(rendered.contains(r#""bucket_url": "s3://hangar-platform?region=eu-west-1""#));
    assert!(rendered.contains("value: \"http://hangar.hangar-system.svc:8080\""));
    assert!(rendered.contains("name: HANGAR_WORKER_SLOTS"));
    // With fixed worker slots the agent needs no right on nodes.
    assert!(!rendered.contains("resources: [nodes]"), "{rendered}");
    // The UI domain's wildcard host is served and covered by the certificate.
    assert!(
        rendered.matches(r#""*.airflow.example.com""#).count() == 2,
        "{rendered}"
    );
    // Secrets come from the existing Secret only.
    assert!(!rendered.contains("kind: Secret"), "{rendered}");
    // The control plane creates the cell the agent connects as, with the Secret's token.
    assert!(
        rendered.contains("value: \"eks-eu-west-1:kubernetes\""),
        "{rendered}"
    );
    assert_eq!(rendered.matches("key: cell-token").count(), 2, "{rendered}");
}

#[test]
fn the_broker_gateway_is_served_and_reachable_from_environments_when_asked_for() {
    let gateway = |rendered: &str| {
        [
            r#""broker_gateway": "hangar-agent.hangar-system.svc:9471""#,
            "- name: HANGAR_BROKER_GATEWAY_ADDR\n              value: \"0.0.0.0:9471\"",
            "containerPort: 9471",
            "port: 9471\n      targetPort: 9471",
            "- port: 9471\n          protocol: TCP",
        ]
        .map(|s| rendered.contains(s))
    };
    let full = String::from_utf8(render(&chart().join("ci/full-values.yaml"), &[]).stdout).unwrap();
    assert_eq!(gateway(&full), [true; 5], "{full}");
    // Only the environments' namespaces may reach it (the agent's one ingress rule).
    let policy = full
        .split("\n---")
        .find(|d| d.contains("kind: NetworkPolicy") && d.contains("- port: 9470"))
        .unwrap_or_else(|| panic!("no agent NetworkPolicy:\n{full}"));
    assert!(
        policy.contains("app.kubernetes.io/managed-by: hangar")
            && policy.contains("- port: 9471")
            && policy.contains("policyTypes: [Ingress]"),
        "{policy}"
    );
    let minimal =
        String::from_utf8(render(&chart().join("ci/minimal-values.yaml"), &[]).stdout).unwrap();
    assert_eq!(gateway(&minimal), [false; 5], "{minimal}");
    assert!(!minimal.contains("9471"), "{minimal}");
}

#[test]
fn the_control_plane_runs_two_replicas_that_relay_to_each_other_only() {
    let out = render(&chart().join("ci/minimal-values.yaml"), &[]);
    let rendered = String::from_utf8(out.stdout).unwrap();
    let deployment = rendered
        .split("\n---")
        .find(|d| d.contains("kind: Deployment") && d.contains("component: control-plane"))
        .unwrap_or_else(|| panic!("no control-plane Deployment:\n{rendered}"));
    assert!(deployment.contains("replicas: 2"), "{deployment}");
    assert!(
        deployment.contains("fieldPath: status.podIP"),
        "{deployment}"
    );
    assert!(
        deployment.contains("- name: HANGAR_RELAY_LISTEN\n              value: \"$(POD_IP):8081\""),
        "{deployment}"
    );
    assert!(deployment.contains("containerPort: 8081"), "{deployment}");
    assert!(
        deployment.contains("topologyKey: kubernetes.io/hostname"),
        "{deployment}"
    );
    // The relay port takes the control plane's own pods only; the Service does not expose it.
    let policy = rendered
        .split("\n---")
        .find(|d| d.contains("kind: NetworkPolicy") && d.contains("-control-plane"))
        .unwrap_or_else(|| panic!("no control-plane NetworkPolicy:\n{rendered}"));
    let relay_rule = policy
        .split("- ports:")
        .find(|r| r.contains("port: relay"))
        .unwrap_or_else(|| panic!("no relay rule:\n{policy}"));
    assert!(relay_rule.contains("from:"), "{relay_rule}");
    assert!(
        relay_rule.contains("app.kubernetes.io/component: control-plane"),
        "{relay_rule}"
    );
    assert!(!relay_rule.contains("component: agent"), "{relay_rule}");
    let service = rendered
        .split("\n---")
        .find(|d| d.contains("kind: Service\n") && d.contains("component: control-plane"))
        .unwrap_or_else(|| panic!("no control-plane Service:\n{rendered}"));
    assert!(
        !service.contains("relay") && !service.contains("8081"),
        "{service}"
    );
}

#[test]
fn without_a_cell_token_the_chart_makes_one_for_the_control_plane_and_the_agent() {
    let out = render(&chart().join("ci/minimal-values.yaml"), &[]);
    let rendered = String::from_utf8(out.stdout).unwrap();
    let token = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("cell-token: "))
        .unwrap_or_else(|| panic!("no cell-token in the Secret:\n{rendered}"))
        .trim_matches('"');
    assert!(token.starts_with("hgc_") && token.len() == 44, "{token}");
    assert!(
        token[4..].chars().all(|c| c.is_ascii_alphanumeric()),
        "{token}"
    );
    assert!(
        rendered.contains("name: HANGAR_BOOTSTRAP_CELL_TOKEN"),
        "{rendered}"
    );
    // One given is used as it is.
    let given = format!("hgc_{}", "x".repeat(32));
    let out = render(
        &chart().join("ci/minimal-values.yaml"),
        &["--set", &format!("secrets.cellToken={given}")],
    );
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains(&format!("cell-token: \"{given}\"")));
}

#[test]
fn bad_values_fail_at_install_with_the_field_named() {
    let minimal = chart().join("ci/minimal-values.yaml");
    for (set, field) in [
        ("agent.maxEnvironments=0", "/agent/maxEnvironments"),
        ("controlPlane.replicas=0", "/controlPlane/replicas"),
        ("secrets.masterKey=short", "/secrets/masterKey"),
        ("controlPlane.replica=2", "replica"),
        ("agent.cell=Bad_Name", "/agent/cell"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("bucketUrl=ftp://x", "/bucketUrl"),
        ("secrets.cellToken=not-a-cell-token", "/secrets/cellToken"),
        ("bundled.postgres.storage=lots", "/bundled/postgres/storage"),
        ("bundled.redis.image=", "/bundled/redis/image"),
        ("agent.brokerGateway=maybe", "/agent/brokerGateway"),
    ] {
        let out = render(&minimal, &["--set", set]);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(text(&out).contains(field), "{set}: {}", text(&out));
    }
    // Without any secret, each required one is named.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = render(empty.path(), &[]);
    assert!(!out.status.success());
    for field in [
        "/secrets/databaseUrl",
        "/secrets/adminToken",
        "/secrets/masterKey",
    ] {
        assert!(text(&out).contains(field), "{}", text(&out));
    }
}

#[test]
fn the_bundled_postgres_and_redis_are_wired_in_and_their_secrets_generated() {
    let bundled = chart().join("ci/bundled-values.yaml");
    let out = render(&bundled, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let value = |key: &str| -> String {
        rendered
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key} in the Secret:\n{rendered}"))
            .trim_matches('"')
            .to_owned()
    };
    let pg = value("bundled-postgres-password");
    let redis = value("bundled-redis-password");
    assert!(
        pg.len() == 32 && redis.len() == 32 && pg != redis,
        "{pg} {redis}"
    );
    assert_eq!(
        value("database-url"),
        format!("postgres://hangar:{pg}@hangar-postgres.hangar-system.svc:5432/hangar")
    );
    assert_eq!(
        value("platform-postgres-url"),
        format!("postgres://hangar:{pg}@hangar-postgres.hangar-system.svc:5432/postgres")
    );
    assert_eq!(
        value("platform-redis-url"),
        format!("redis://hangar:{redis}@hangar-redis.hangar-system.svc:6379")
    );
    assert!(value("admin-token").len() >= 16);
    // The master key is 32 random bytes, base64.
    let key = value("master-key");
    assert!(key.len() == 44 && key.ends_with('='), "{key}");
    // Both run as StatefulSets on volumes of their own, reading their passwords from the Secret;
    // Redis keeps its users (the environments' brokers) in an ACL file on its volume.
    assert_eq!(
        rendered.matches("kind: StatefulSet").count(),
        2,
        "{rendered}"
    );
    assert_eq!(
        rendered.matches("storageClassName: \"standard\"").count(),
        2
    );
    assert!(rendered.contains("key: bundled-postgres-password"));
    assert!(rendered.contains("key: bundled-redis-password"));
    assert!(rendered.contains("--aclfile /data/users.acl"), "{rendered}");
    // No password is written into a pod spec.
    let pods: String = rendered
        .split("\n---")
        .filter(|d| !d.contains("kind: Secret"))
        .collect();
    assert!(!pods.contains(&pg) && !pods.contains(&redis), "{pods}");
    // The pre-install migrations hook would run before the database exists: the control plane
    // migrates when it starts instead.
    assert!(!rendered.contains("helm.sh/hook"), "{rendered}");
    // Only this release's pods and the environments' namespaces reach them.
    assert!(rendered.contains("name: hangar-bundled"), "{rendered}");

    // Given values win over generated ones.
    let out = render(
        &bundled,
        &["--set", "secrets.adminToken=given-admin-token-0123456789"],
    );
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("admin-token: \"given-admin-token-0123456789\""));
    // The bundled services need the chart's own Secret.
    let out = render(&bundled, &["--set", "secrets.existingSecret=mine"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("/secrets/existingSecret"),
        "{}",
        text(&out)
    );
    // Without them the chart bundles no database.
    let out = render(&chart().join("ci/minimal-values.yaml"), &[]);
    let minimal = String::from_utf8(out.stdout).unwrap();
    assert!(!minimal.contains("kind: StatefulSet") && !minimal.contains("bundled-"));
}

/// The bundled Redis' start-up script, run against the machine's Redis 7 (its `/data` a
/// temporary directory): the admin user it writes works, the default user is off, and a user
/// Hangar saves with `ACL SAVE` (an environment's broker) is still there after a restart.
#[tokio::test]
async fn the_bundled_redis_keeps_its_users_across_a_restart() {
    let out = render(&chart().join("ci/bundled-values.yaml"), &[]);
    let rendered = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = rendered.lines().map(str::trim).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("[ -s /data/users.acl ]"))
        .unwrap_or_else(|| panic!("no start-up script:\n{rendered}"));
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "{}\n{} --port {port} --bind 127.0.0.1 --daemonize no",
        lines[start],
        lines[start + 1]
    )
    .replace("/data", data.path().to_str().unwrap());
    assert!(script.contains("exec redis-server"), "{script}");
    let password = "bundledredispassword0123456789ab";
    let spawn = || {
        tokio::process::Command::new("sh")
            .args(["-c", &script])
            .env("REDIS_PASSWORD", password)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let mut last = None;
        for _ in 0..100 {
            match redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await
            {
                Ok(c) => return Ok(c),
                Err(e) if e.is_connection_refusal() => last = Some(e),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(last.unwrap())
    }
    let admin = format!("redis://hangar:{password}@127.0.0.1:{port}");

    let mut server = spawn();
    let mut c = connect(&admin).await.unwrap();
    redis::cmd("ACL")
        .arg(&["SETUSER", "env-1", "on", ">brokerpw", "~env-1:*", "+@all"])
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    redis::cmd("ACL")
        .arg("SAVE")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    // The default user is off: no password, no access.
    let mut anonymous = connect(&format!("redis://127.0.0.1:{port}")).await.unwrap();
    let refused = redis::cmd("PING")
        .query_async::<String>(&mut anonymous)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("NOAUTH"), "{refused}");
    server.kill().await.unwrap();
    server.wait().await.unwrap();

    let mut server = spawn();
    let mut broker = connect(&format!("redis://env-1:brokerpw@127.0.0.1:{port}"))
        .await
        .unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut broker).await.unwrap();
    assert_eq!(pong, "PONG");
    assert!(connect(&admin).await.is_ok());
    server.kill().await.unwrap();
}

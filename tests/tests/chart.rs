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

//! The Kubernetes renderer's objects checked by the real thing, short of a cluster (none runs
//! here): every object of every sample environment, and the Job that migrates a template
//! database, against the Kubernetes API's own schemas with `kubernetes-validate --strict`
//! (1.37, the newest version, and 1.33, the oldest Hangar supports; with the Kubernetes
//! executor's pod template and an Airflow CLI command's pod), and the Kubernetes executor's pod
//! template loaded by Airflow's own code, as the executor loads it, into the pod it would
//! create. (Remote task logging from the rendered settings: `bucket_gateway.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hangar_data_plane::runtime::python::RuntimeCache;
use hangar_tenants::blueprint::kubernetes::samples::{migrate_sample, samples};
use hangar_tenants::blueprint::kubernetes::{cli_pod, migrate_job, pod_template, render};
use hangar_tests::emulators::tool;
use hangar_tests::{succeeded, test_runtime_dir, KUBERNETES_PROVIDERS};

/// The newest Kubernetes version Hangar renders for, and the oldest it supports.
const VERSIONS: [&str; 2] = ["1.37.0", "1.33.0"];

/// A folder of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "hangar-{what}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `kubernetes-validate --strict` on `files` against `version`: its exit status and output.
fn validate(version: &str, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool("kubernetes-validate").unwrap())
        .args(["--strict", "--no-warn", "--kubernetes-version", version])
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &Path, file: &str, object: &serde_json::Value) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_vec_pretty(object).unwrap()).unwrap();
    path
}

#[test]
fn every_rendered_object_is_valid_for_kubernetes_1_37_and_1_33() {
    let dir = TempDir::new("kubernetes-validate");
    let mut files = Vec::new();
    for sample in samples().unwrap() {
        let manifests = render(&sample.input).unwrap();
        for (i, object) in manifests.objects.iter().enumerate() {
            let name = format!(
                "{}-{i:02}-{}-{}.json",
                sample.name,
                object["kind"].as_str().unwrap(),
                object["metadata"]["name"].as_str().unwrap()
            );
            files.push(write(&dir.0, &name, object));
        }
        // The pod template is a Pod of its own (the ConfigMap holds it as text).
        let template = pod_template(&sample.input).unwrap();
        files.push(write(
            &dir.0,
            &format!("{}-pod-template.json", sample.name),
            &template,
        ));
        // So is the pod of an Airflow CLI command.
        let args = ["dags", "list", "--output", "json"].map(str::to_owned);
        let cli = cli_pod(&sample.input, uuid::Uuid::nil(), &args, 60).unwrap();
        files.push(write(
            &dir.0,
            &format!("{}-cli-pod.json", sample.name),
            &cli,
        ));
    }
    // The Job that fills a template database, with its Secret (not an environment's objects).
    let migrate = migrate_job(&migrate_sample()).unwrap();
    files.push(write(&dir.0, "migrate-secret.json", &migrate.secret));
    files.push(write(&dir.0, "migrate-job.json", &migrate.job));
    assert!(files.len() > 100, "{} files", files.len());
    for version in VERSIONS {
        let (ok, output) = validate(version, &files);
        assert!(ok, "kubernetes-validate {version}:\n{output}");
        assert_eq!(
            output.matches(" passed for resource ").count(),
            files.len(),
            "{output}"
        );
    }

    // The validator is strict and knows its versions: a field 1.33 lacks (emptyDir's `mode`,
    // new in 1.37) passes 1.37 only, and an unknown field passes none.
    let object = render(&samples().unwrap()[0].input)
        .unwrap()
        .objects
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    let mut newer = object.clone();
    newer["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["mode"] = 0o750.into();
    let newer = write(&dir.0, "newer.json", &newer);
    assert!(validate("1.37.0", std::slice::from_ref(&newer)).0);
    assert!(!validate("1.33.0", std::slice::from_ref(&newer)).0);
    let mut unknown = object;
    unknown["spec"]["template"]["spec"]["hostNetworking"] = true.into();
    let unknown = write(&dir.0, "unknown.json", &unknown);
    assert!(!validate("1.37.0", &[unknown]).0);
}

/// What the Kubernetes executor does with its `pod_template_file`: Airflow's provider reads it
/// (`PodGenerator.deserialize_model_file`) and builds each task's pod on it
/// (`PodGenerator.construct_pod`); the snippet prints both as the Kubernetes client would send
/// them.
const LOAD_TEMPLATE: &str = r#"
import json, sys
from kubernetes.client import ApiClient
from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

template = PodGenerator.deserialize_model_file(sys.argv[1])
pod = PodGenerator.construct_pod(
    dag_id="etl", task_id="extract", pod_id="etl-extract-1", try_number=1,
    kube_image=None, date=None, args=sys.argv[3:], pod_override_object=None,
    base_worker_pod=template, namespace=sys.argv[2], scheduler_job_id="1", run_id="manual__1",
)
api = ApiClient()
print(json.dumps({
    "template": api.sanitize_for_serialization(template),
    "pod": api.sanitize_for_serialization(pod),
}))
"#;

#[tokio::test]
async fn airflow_builds_task_pods_on_the_rendered_pod_template() {
    let cache = RuntimeCache::new(&test_runtime_dir(), Path::new("uv"));
    let runtime = cache.ensure("3.3.2", KUBERNETES_PROVIDERS).await.unwrap();
    let sample = samples()
        .unwrap()
        .into_iter()
        .find(|s| s.name == "kubernetes_executor")
        .unwrap();
    let namespace = render(&sample.input).unwrap().namespace;
    let dir = TempDir::new("pod-template");
    let template = write(
        &dir.0,
        "pod_template.json",
        &pod_template(&sample.input).unwrap(),
    );
    let task = [
        "python",
        "-m",
        "airflow.sdk.execution_time.execute_workload",
        "--json-string",
        "{}",
    ];
    let out = tokio::process::Command::new(runtime.bin("python"))
        .arg("-c")
        .arg(LOAD_TEMPLATE)
        .arg(&template)
        .arg(&namespace)
        .args(task)
        .env("AIRFLOW_HOME", &dir.0)
        .output()
        .await
        .unwrap();
    let loaded: serde_json::Value = serde_json::from_str(&succeeded(&out)).unwrap();

    // Nothing of the template is lost reading it.
    assert_eq!(loaded["template"]["spec"]["containers"][0]["name"], "base");
    let pod = &loaded["pod"];
    let spec = &pod["spec"];
    let base = &spec["containers"][0];
    assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
    assert_eq!(base["name"], "base");
    assert_eq!(base["image"], "apache/airflow:3.3.2-python3.12");
    assert_eq!(base["args"], serde_json::json!(task));
    assert_eq!(pod["metadata"]["namespace"], namespace.as_str());
    assert_eq!(pod["metadata"]["labels"]["hangar.dev/component"], "task");
    // Still Pod Security `restricted`, without a token, on the worker pool.
    let sc = &spec["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 50000);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for c in spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([base])
    {
        let csc = &c["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(csc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(csc["readOnlyRootFilesystem"], true);
    }
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["nodeSelector"]["hangar.dev/pool"], "workers");
    assert_eq!(spec["tolerations"][0]["effect"], "NoSchedule");
    assert_eq!(spec["initContainers"][0]["name"], "dag-sync");
    let names: Vec<&str> = base["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"AIRFLOW__CORE__EXECUTION_API_SERVER_URL"));
    let config = base["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "AIRFLOW_CONFIG")
        .unwrap();
    assert_eq!(
        config["value"], "/tmp/airflow.cfg",
        "a task pod gets no secret"
    );
    // No secret but the environment's bucket credentials (the task uploads its own log).
    let secrets: Vec<&str> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.get("secret"))
        .map(|s| s["secretName"].as_str().unwrap())
        .collect();
    assert_eq!(secrets, ["bucket-access"]);

    // The pod the executor would create is itself valid for both versions.
    let created = write(&dir.0, "task-pod.json", pod);
    for version in VERSIONS {
        let (ok, output) = validate(version, std::slice::from_ref(&created));
        assert!(ok, "kubernetes-validate {version}:\n{output}");
    }
}

/// The DAG sync containers' arguments are what `hangar dag-sync` accepts (its own parser), in
/// every pod of every sample.
#[test]
fn every_dag_sync_container_runs_hangar_dag_sync_with_arguments_it_takes() {
    use clap::Parser;
    #[derive(Parser)]
    struct DagSync {
        #[command(flatten)]
        args: hangar_control_plane::dag_sync_cmd::DagSyncArgs,
    }
    let mut seen = 0;
    for sample in samples().unwrap() {
        let mut pods: Vec<serde_json::Value> = render(&sample.input)
            .unwrap()
            .objects
            .into_iter()
            .filter(|o| o["kind"] == "Deployment")
            .map(|d| d["spec"]["template"]["spec"].clone())
            .collect();
        pods.push(pod_template(&sample.input).unwrap()["spec"].clone());
        for pod in pods {
            let sync = pod["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "dag-sync")
                .unwrap();
            let args: Vec<&str> = sync["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(args[0], "dag-sync");
            let parsed =
                DagSync::try_parse_from(std::iter::once("hangar").chain(args[1..].iter().copied()))
                    .unwrap_or_else(|e| panic!("{}: {args:?}: {e}", sample.name))
                    .args;
            assert_eq!(parsed.tenant.as_str(), "acme");
            assert_eq!(parsed.environment, sample.input.spec.name);
            assert_eq!(
                parsed.bucket.url_file.as_deref(),
                Some(Path::new("/opt/hangar/bucket/url"))
            );
            assert_eq!(parsed.once, sync.get("restartPolicy").is_none());
            seen += 1;
        }
    }
    assert!(seen > 30, "{seen}");
}

//! The renderer's tests over every sample ([`super::samples`]): whole-output snapshots, then
//! the invariants every environment's objects must keep, checked object by object.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use super::samples::{sample_secrets, samples, Sample, SAMPLE_BUCKET_SECRET};
use super::*;
use crate::airflow_users::AirflowRole;

fn all() -> Vec<(Sample, Manifests)> {
    samples()
        .unwrap()
        .into_iter()
        .map(|s| {
            let m = render(&s.input).unwrap();
            (s, m)
        })
        .collect()
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap()
}

fn of_kind<'a>(m: &'a Manifests, k: &str) -> Vec<&'a Value> {
    m.objects.iter().filter(|o| kind(o) == k).collect()
}

/// Every pod spec the environment can run: its Deployments' and Jobs' templates, and the
/// Kubernetes executor's pod template (read back from its ConfigMap), with a name for each.
fn pod_specs(m: &Manifests) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for o in &m.objects {
        match kind(o) {
            "Deployment" | "Job" => {
                out.push((name(o).to_owned(), o["spec"]["template"]["spec"].clone()));
            }
            "ConfigMap" if name(o) == "pod-template" => {
                let text = o["data"]["pod_template.json"].as_str().unwrap();
                let pod: Value = serde_json::from_str(text).unwrap();
                out.push(("pod-template".to_owned(), pod["spec"].clone()));
            }
            _ => {}
        }
    }
    out
}

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod[k].as_array())
        .flatten()
        .collect()
}

#[test]
fn every_sample_renders_as_its_snapshot() {
    for (sample, m) in all() {
        insta::assert_json_snapshot!(sample.name, m);
    }
}

#[test]
fn the_pod_template_is_a_pod_whose_container_is_base() {
    for (sample, _) in all() {
        let template = pod_template(&sample.input).unwrap();
        assert_eq!(template["kind"], "Pod");
        assert_eq!(template["spec"]["containers"][0]["name"], "base");
        if sample.name == "kubernetes_executor" {
            insta::assert_json_snapshot!("pod_template", template);
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    for sample in samples().unwrap() {
        assert_eq!(
            render(&sample.input).unwrap(),
            render(&sample.input).unwrap()
        );
    }
}

#[test]
fn the_namespace_comes_first_and_every_other_object_is_in_it() {
    for (sample, m) in all() {
        let first = &m.objects[0];
        assert_eq!(
            (kind(first), name(first)),
            ("Namespace", m.namespace.as_str())
        );
        assert_eq!(m.namespace, "hangar-1c0ffee00000");
        assert!(first["metadata"].get("namespace").is_none());
        for o in &m.objects[1..] {
            assert_ne!(kind(o), "Namespace", "{}", sample.name);
            assert_eq!(
                o["metadata"]["namespace"],
                m.namespace,
                "{} {}",
                kind(o),
                name(o)
            );
        }
        let labels = &first["metadata"]["labels"];
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(
                labels[format!("pod-security.kubernetes.io/{mode}")],
                "restricted"
            );
        }
    }
}

#[test]
fn every_object_is_complete_and_labelled() {
    for (sample, m) in all() {
        for o in &m.objects {
            let what = format!("{} {} {}", sample.name, kind(o), name(o));
            assert!(o["apiVersion"].is_string(), "{what}");
            let labels = &o["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/managed-by"], "hangar", "{what}");
            assert_eq!(labels["app.kubernetes.io/part-of"], "hangar", "{what}");
            assert_eq!(
                labels["hangar.dev/environment"], "1c0ffee0000040008000000000000042",
                "{what}"
            );
            assert_eq!(labels["hangar.dev/tenant"], "acme", "{what}");
            if matches!(kind(o), "Deployment" | "Service" | "Job") {
                assert!(labels["hangar.dev/component"].is_string(), "{what}");
                if kind(o) != "Service" {
                    let pod_labels = &o["spec"]["template"]["metadata"]["labels"];
                    assert_eq!(
                        pod_labels["hangar.dev/component"],
                        labels["hangar.dev/component"]
                    );
                }
            }
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    super::cell::is_dns_label(s)
}

#[test]
fn every_name_is_an_rfc1123_label() {
    for (_, m) in all() {
        for o in &m.objects {
            assert!(is_dns_label(name(o)), "{}", name(o));
        }
        for (pod, spec) in pod_specs(&m) {
            for c in containers(&spec) {
                assert!(is_dns_label(c["name"].as_str().unwrap()), "{pod}");
            }
            for v in spec["volumes"].as_array().unwrap() {
                assert!(is_dns_label(v["name"].as_str().unwrap()), "{pod}");
            }
        }
    }
}

#[test]
fn every_pod_is_restricted() {
    for (sample, m) in all() {
        for (pod, spec) in pod_specs(&m) {
            assert_restricted(&format!("{} {pod}", sample.name), &spec);
        }
    }
}

/// Pod Security `restricted`, and cpu and memory requests and limits on every container, for
/// the pod spec `spec` (named `what`); every pod Hangar renders keeps these.
pub(super) fn assert_restricted(what: &str, spec: &Value) {
    let ctx = &spec["securityContext"];
    assert_eq!(ctx["runAsNonRoot"], true, "{what}");
    assert_ne!(ctx["runAsUser"], 0, "{what}");
    assert_eq!(ctx["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(spec[host], true, "{what} {host}");
    }
    for v in spec["volumes"].as_array().unwrap() {
        let allowed = ["emptyDir", "secret", "configMap"];
        let source: Vec<&String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .collect();
        assert!(
            source.len() == 1 && allowed.contains(&source[0].as_str()),
            "{what}: volume {v}"
        );
    }
    for c in containers(spec) {
        let what = format!("{what} {}", c["name"]);
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{what}"
        );
        assert!(sc["capabilities"].get("add").is_none(), "{what}");
        assert_ne!(sc["runAsNonRoot"], false, "{what}");
        assert_ne!(sc["privileged"], true, "{what}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        for key in ["cpu", "memory"] {
            assert!(c["resources"]["requests"][key].is_string(), "{what} {key}");
            assert!(c["resources"]["limits"][key].is_string(), "{what} {key}");
        }
        let ports = c["ports"].as_array().into_iter().flatten();
        assert!(
            ports.into_iter().all(|p| p.get("hostPort").is_none()),
            "{what}"
        );
    }
}

#[test]
fn only_the_kubernetes_executors_scheduler_gets_a_token() {
    for (sample, m) in all() {
        for (pod, spec) in pod_specs(&m) {
            let token = spec["automountServiceAccountToken"].as_bool().unwrap();
            let expected = pod == "scheduler" && runs_task_pods(sample.input.spec.executor);
            assert_eq!(token, expected, "{} {pod}", sample.name);
            let account = if expected {
                "airflow-scheduler"
            } else {
                "airflow"
            };
            assert_eq!(spec["serviceAccountName"], account, "{} {pod}", sample.name);
        }
        for sa in of_kind(&m, "ServiceAccount") {
            assert_eq!(sa["automountServiceAccountToken"], false);
        }
        assert!(
            of_kind(&m, "ClusterRole").is_empty() && of_kind(&m, "ClusterRoleBinding").is_empty()
        );
        let roles = of_kind(&m, "Role");
        if runs_task_pods(sample.input.spec.executor) {
            assert_eq!(roles.len(), 1);
            let resources: Vec<&Value> = roles[0]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r["resources"].as_array().unwrap())
                .collect();
            assert_eq!(resources, ["pods", "pods/log"]);
            let binding = of_kind(&m, "RoleBinding")[0];
            assert_eq!(binding["subjects"][0]["namespace"], m.namespace);
        } else {
            assert!(roles.is_empty() && of_kind(&m, "RoleBinding").is_empty());
        }
    }
}

#[test]
fn every_namespace_denies_all_traffic_by_default() {
    for (sample, m) in all() {
        let deny = of_kind(&m, "NetworkPolicy").into_iter().find(|p| {
            let spec = &p["spec"];
            spec["podSelector"] == serde_json::json!({})
                && spec["policyTypes"] == serde_json::json!(["Ingress", "Egress"])
                && spec["ingress"] == serde_json::json!([])
                && spec["egress"] == serde_json::json!([])
        });
        assert!(deny.is_some(), "{}", sample.name);
        // Nothing allows ingress from anywhere but the namespace's own pods and the agent's
        // namespace.
        for p in of_kind(&m, "NetworkPolicy") {
            for rule in p["spec"]["ingress"].as_array().into_iter().flatten() {
                for peer in rule["from"].as_array().unwrap() {
                    assert!(peer.get("ipBlock").is_none(), "{}", name(p));
                    if let Some(ns) = peer.get("namespaceSelector") {
                        assert_eq!(
                            ns["matchLabels"]["kubernetes.io/metadata.name"],
                            "hangar-system"
                        );
                    }
                }
            }
        }
    }
}

/// Every secret value the samples have: the environment's own and those derived from them.
fn secret_values() -> Vec<String> {
    let s = sample_secrets();
    let mut values = vec![
        s.fernet_key.clone(),
        s.jwt_secret.clone(),
        s.api_secret_key.clone(),
        s.db_password.clone(),
        s.broker_password.clone(),
        s.admin_password.clone(),
    ];
    values.extend(AirflowRole::ALL.iter().map(|r| r.password(&s)));
    values
}

#[test]
fn no_secret_value_is_outside_the_secret() {
    for (sample, m) in all() {
        for o in &m.objects {
            let text = serde_json::to_string(o).unwrap();
            if kind(o) == "Secret" {
                let secret: k8s_openapi::api::core::v1::Secret =
                    serde_json::from_value(o.clone()).unwrap();
                let files: Vec<String> = secret
                    .data
                    .unwrap()
                    .into_values()
                    .map(|v| String::from_utf8(v.0).unwrap())
                    .collect();
                let all = files.concat();
                // Each Secret holds its own values only: Airflow's, or the bucket credentials.
                let (own, others) = if name(o) == super::BUCKET_SECRET {
                    (vec![SAMPLE_BUCKET_SECRET.to_owned()], secret_values())
                } else {
                    (secret_values(), vec![SAMPLE_BUCKET_SECRET.to_owned()])
                };
                for secret in own {
                    assert_eq!(
                        all.contains(&secret),
                        sample.input.secrets.is_some(),
                        "{} {}: {secret}",
                        sample.name,
                        name(o)
                    );
                }
                for secret in others {
                    assert!(!all.contains(&secret), "{} {}", sample.name, name(o));
                }
                if sample.input.secrets.is_none() {
                    assert!(files.iter().all(|f| f == REDACTED));
                }
                continue;
            }
            for secret in secret_values()
                .into_iter()
                .chain([SAMPLE_BUCKET_SECRET.to_owned()])
            {
                assert!(
                    !text.contains(&secret),
                    "{} {} {} carries {secret}",
                    sample.name,
                    kind(o),
                    name(o)
                );
            }
        }
    }
}

/// A quantity in millicores or MiB, as the renderer writes them.
fn amount(q: &Value) -> u64 {
    let s = q.as_str().unwrap();
    let n = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    n.parse().unwrap()
}

#[test]
fn the_quota_and_limits_hold_every_pod_the_environment_runs_at_most() {
    for (sample, m) in all() {
        let quota = &of_kind(&m, "ResourceQuota")[0]["spec"]["hard"];
        let max = &of_kind(&m, "LimitRange")[0]["spec"]["limits"][0]["max"];
        let spec = &sample.input.spec;
        let (mut cpu, mut memory) = (0, 0);
        for (pod, pod_spec) in pod_specs(&m) {
            let most = match pod.as_str() {
                "worker" => u64::from(spec.max_workers),
                "scheduler" => u64::from(spec.schedulers),
                "pod-template" => u64::from(spec.max_workers * spec.worker_concurrency()),
                _ => 1,
            };
            // What the pod holds: its sidecars (restartable init containers) and containers
            // together, or its largest init container while that runs alone.
            let (mut sidecars, mut running, mut init) = ([0, 0], [0, 0], [0, 0]);
            for c in containers(&pod_spec) {
                let limits = &c["resources"]["limits"];
                assert_eq!(limits, &c["resources"]["requests"], "{pod}");
                assert!(amount(&limits["cpu"]) <= amount(&max["cpu"]), "{pod}");
                assert!(amount(&limits["memory"]) <= amount(&max["memory"]), "{pod}");
                let r = [amount(&limits["cpu"]), amount(&limits["memory"])];
                let is_init = pod_spec["initContainers"]
                    .as_array()
                    .is_some_and(|i| i.iter().any(|x| std::ptr::eq(x, c)));
                let (sum, largest) = match (is_init, c["restartPolicy"].as_str()) {
                    (true, Some("Always")) => (&mut sidecars, false),
                    (true, _) => (&mut init, true),
                    (false, _) => (&mut running, false),
                };
                for i in 0..2 {
                    sum[i] = if largest {
                        sum[i].max(r[i])
                    } else {
                        sum[i] + r[i]
                    };
                }
            }
            cpu += most * (sidecars[0] + running[0].max(init[0]));
            memory += most * (sidecars[1] + running[1].max(init[1]));
        }
        assert!(amount(&quota["limits.cpu"]) >= cpu, "{}", sample.name);
        assert!(amount(&quota["limits.memory"]) >= memory, "{}", sample.name);
    }
}

#[test]
fn the_executor_decides_between_workers_and_task_pods() {
    for (sample, m) in all() {
        let deployments: Vec<&str> = of_kind(&m, "Deployment").into_iter().map(name).collect();
        let executor = sample.input.spec.executor;
        let mut expected = vec!["api-server", "scheduler", "dag-processor", "triggerer"];
        if runs_celery(executor) {
            expected.push("worker");
        }
        assert_eq!(deployments, expected, "{}", sample.name);
        let has_template = m.objects.iter().any(|o| name(o) == "pod-template");
        assert_eq!(has_template, runs_task_pods(executor), "{}", sample.name);
        for d in of_kind(&m, "Deployment") {
            let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
            let setting = env
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "AIRFLOW__CORE__EXECUTOR")
                .unwrap();
            let want = match executor {
                Executor::Celery => "CeleryExecutor",
                Executor::Kubernetes => "KubernetesExecutor",
                Executor::CeleryKubernetes => "CeleryExecutor,KubernetesExecutor",
                Executor::Hangar => unreachable!("refused on Kubernetes"),
            };
            assert_eq!(setting["value"], want);
        }
    }
}

#[test]
fn workers_drain_on_the_worker_pool_with_the_replicas_asked_for() {
    for (sample, m) in all() {
        let Some(worker) = of_kind(&m, "Deployment")
            .into_iter()
            .find(|d| name(d) == "worker")
        else {
            continue;
        };
        assert_eq!(worker["spec"]["replicas"], sample.input.workers);
        let pod = &worker["spec"]["template"]["spec"];
        assert_eq!(pod["terminationGracePeriodSeconds"], WORKER_GRACE_SECONDS);
        let selector = &sample.input.cell.worker_node_selector;
        if selector.is_empty() {
            assert!(pod.get("nodeSelector").is_none());
        } else {
            assert_eq!(pod["nodeSelector"], serde_json::json!(selector));
            assert_eq!(pod["tolerations"][0]["key"], "hangar.dev/pool");
        }
    }
}

#[test]
fn requirements_are_built_once_and_unpacked_in_every_airflow_pod() {
    for (sample, m) in all() {
        let jobs = of_kind(&m, "Job");
        let has_requirements = !sample.input.spec.requirements.is_empty();
        assert_eq!(jobs.len(), usize::from(has_requirements), "{}", sample.name);
        for (pod, spec) in pod_specs(&m) {
            if pod.starts_with("requirements-") {
                continue;
            }
            let unpacks = containers(&spec)
                .iter()
                .any(|c| c["name"] == "requirements");
            assert_eq!(unpacks, has_requirements, "{} {pod}", sample.name);
        }
        if let Some(job) = jobs.first() {
            let job_name = name(job);
            assert!(job_name.starts_with("requirements-") && job_name.len() == 23);
            let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
            assert_eq!(args[4], "--bucket-url-file");
            assert_eq!(args[5], "/opt/hangar/bucket/url");
            let archive = args[7].as_str().unwrap();
            assert!(
                archive.starts_with("tenants/acme/environments/"),
                "{archive}"
            );
            assert!(archive.ends_with(&format!("/python/{}.tar.gz", &job_name[13..])));
        }
    }
}

#[test]
fn a_change_of_requirements_is_a_new_job() {
    let mut sample = samples().unwrap().remove(3);
    let before = render(&sample.input).unwrap();
    sample.input.spec.requirements.push_str("rich\n");
    let after = render(&sample.input).unwrap();
    let job = |m: &Manifests| name(of_kind(m, "Job")[0]).to_owned();
    assert_ne!(job(&before), job(&after));
}

#[test]
fn bad_cell_settings_are_refused_before_rendering() {
    let mut sample = samples().unwrap().remove(0);
    sample.input.cell.redis.cidrs = vec!["10.0.0.300/32".to_owned()];
    let err = render(&sample.input).unwrap_err().to_string();
    assert!(err.contains("redis"), "{err}");
}

#[test]
fn with_a_broker_gateway_brokers_are_reached_through_it_and_never_redis_itself() {
    let mut sample = samples().unwrap().remove(0);
    let redis_policy = |m: &Manifests| {
        m.objects
            .iter()
            .find(|o| kind(o) == "NetworkPolicy" && name(o) == "allow-redis")
            .unwrap()["spec"]["egress"][0]
            .clone()
    };
    let direct = redis_policy(&render(&sample.input).unwrap());
    assert!(direct["to"][0]["ipBlock"].is_object(), "{direct}");
    sample.input.cell.broker_gateway = "hangar-agent.hangar-system.svc:9471".to_owned();
    let rule = redis_policy(&render(&sample.input).unwrap());
    assert_eq!(
        rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "hangar-system"
    );
    assert_eq!(
        rule["ports"],
        serde_json::json!([{"port": 9471, "protocol": "TCP"}])
    );
    assert_eq!(rule["to"].as_array().unwrap().len(), 1, "{rule}");
    for bad in ["hangar-agent", "hangar-agent:0", ":9471", "redis://h:1"] {
        sample.input.cell.broker_gateway = bad.to_owned();
        let err = render(&sample.input).unwrap_err().to_string();
        assert!(err.contains("broker_gateway"), "{bad}: {err}");
    }
}

#[test]
fn pods_reach_the_bucket_only_through_the_gateway_with_the_environments_credentials() {
    for (sample, m) in all() {
        let input = &sample.input;
        // The only way out to the bucket: the gateway's port in the agent's namespace.
        let policy = m
            .objects
            .iter()
            .find(|o| kind(o) == "NetworkPolicy" && name(o) == "allow-bucket-gateway")
            .unwrap();
        let rule = &policy["spec"]["egress"][0];
        assert_eq!(
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "hangar-system"
        );
        assert_eq!(rule["ports"][0]["port"], 9470);
        assert!(!m.objects.iter().any(|o| serde_json::to_string(o)
            .unwrap()
            .contains("hangar-platform")));
        // Every container that touches the bucket reads the Secret's URL file; the one that
        // installs the requirements (running their build scripts) gets no credentials.
        for (pod, spec) in pod_specs(&m) {
            for c in containers(&spec) {
                let mounts = c["volumeMounts"].as_array().unwrap();
                let has_bucket = mounts.iter().any(|v| v["name"] == "bucket");
                let cname = c["name"].as_str().unwrap();
                let args = serde_json::to_string(&c["args"]).unwrap();
                if args.contains("--bucket-url") {
                    assert!(args.contains("\"--bucket-url-file\",\"/opt/hangar/bucket/url\""));
                }
                let expected = !matches!(cname, "install" | "auth");
                assert_eq!(has_bucket, expected, "{} {pod} {cname}", sample.name);
            }
        }
        // Airflow's remote task logs, under the prefix the control plane reads them from.
        let template = pod_template(input).unwrap();
        let env: std::collections::BTreeMap<String, String> = template["spec"]["containers"][0]
            ["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_owned(),
                    v["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(env["AIRFLOW__LOGGING__REMOTE_LOGGING"], "True");
        assert_eq!(
            env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"],
            format!(
                "s3://hangar/tenants/acme/environments/{}/logs/{}/tasks",
                input.spec.name,
                input.environment_id.simple()
            )
        );
        assert_eq!(env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"], "hangar_bucket");
        let conn: Value = serde_json::from_str(&env["AIRFLOW_CONN_HANGAR_BUCKET"]).unwrap();
        assert_eq!(conn["extra"]["profile_name"], "hangar");
        assert_eq!(
            conn["extra"]["endpoint_url"],
            "http://hangar-agent.hangar-system.svc:9470"
        );
        assert_eq!(
            env["AWS_SHARED_CREDENTIALS_FILE"],
            "/opt/hangar/bucket/credentials"
        );
        // Tenants' own AWS code keeps its defaults: no global endpoint, profile or keys.
        for var in [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_CONFIG_FILE",
        ] {
            assert!(!env.contains_key(var), "{var}");
        }
    }
}

#[test]
fn a_tenant_cannot_move_its_task_logs_elsewhere() {
    let mut sample = samples().unwrap().remove(0);
    for (k, v) in [
        ("logging.remote_base_log_folder", "s3://elsewhere/logs"),
        ("logging.remote_log_conn_id", "mine"),
        ("logging.remote_logging", "False"),
    ] {
        sample
            .input
            .spec
            .airflow_config_overrides
            .insert(k.to_owned(), v.to_owned());
    }
    sample.input.spec.env_vars.insert(
        "AIRFLOW_CONN_HANGAR_BUCKET".to_owned(),
        "aws://elsewhere".to_owned(),
    );
    let template = pod_template(&sample.input).unwrap();
    let text = serde_json::to_string(&template).unwrap();
    assert!(!text.contains("elsewhere"), "{text}");
    assert!(!text.contains("\"mine\""), "{text}");
}

#[test]
fn the_hangar_executor_is_refused_on_kubernetes() {
    let mut input = samples().unwrap().remove(0).input;
    input.spec.executor = Executor::Hangar;
    let err = render(&input).unwrap_err();
    assert!(matches!(err, RenderError::Executor { .. }), "{err}");
    assert!(err.to_string().contains("process runtime only"), "{err}");
}

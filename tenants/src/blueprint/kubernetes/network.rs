//! The environment's NetworkPolicies: everything denied, in and out, for every pod of its
//! namespace; then only what Airflow needs, each allow naming the pods it is for: DNS, the
//! environment's database and broker, the agent's bucket gateway, the Execution API inside the namespace, the
//! api-server from the agent's namespace, task logs from workers to the api-server, and for
//! the Kubernetes executor the scheduler to the Kubernetes API.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    runs_task_pods, to_value, Ctx, Egress, RenderError, API_PORT, CLI_COMPONENT, COMPONENT_LABEL,
    REQUIREMENTS_COMPONENT, TASK_COMPONENT, TRIGGER_LOG_PORT, WORKER_LOG_PORT,
};

/// The components that use the environment's database (the CLI's pods too: most commands
/// read or write it).
const DATABASE_CLIENTS: [&str; 6] = [
    "api-server",
    CLI_COMPONENT,
    "dag-processor",
    "scheduler",
    "triggerer",
    "worker",
];
/// The components that use the broker (Celery).
const BROKER_CLIENTS: [&str; 2] = ["scheduler", "worker"];
/// The pods that call the Execution API (tasks, wherever they run; triggers; callbacks).
const EXECUTION_API_CLIENTS: [&str; 4] = ["dag-processor", TASK_COMPONENT, "triggerer", "worker"];
/// The pods that serve their task logs to the api-server.
const LOG_SERVERS: [&str; 2] = ["triggerer", "worker"];

/// Every pod of the namespace.
fn all_pods() -> LabelSelector {
    LabelSelector::default()
}

fn components(names: &[&str]) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: COMPONENT_LABEL.to_owned(),
            operator: "In".to_owned(),
            values: Some(names.iter().map(|n| (*n).to_owned()).collect()),
        }]),
        ..LabelSelector::default()
    }
}

fn pods(selector: LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selector),
        ..NetworkPolicyPeer::default()
    }
}

fn namespace(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                name.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn tcp(ports: &[u16]) -> Vec<NetworkPolicyPort> {
    ports
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(*p))),
            protocol: Some("TCP".to_owned()),
            ..NetworkPolicyPort::default()
        })
        .collect()
}

fn addresses(egress: &Egress) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(
            egress
                .cidrs
                .iter()
                .map(|cidr| NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: cidr.clone(),
                        except: None,
                    }),
                    ..NetworkPolicyPeer::default()
                })
                .collect(),
        ),
        ports: Some(tcp(&egress.ports)),
    }
}

struct Policy {
    name: &'static str,
    pods: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
}

impl Policy {
    fn egress(name: &'static str, pods: LabelSelector, rule: NetworkPolicyEgressRule) -> Self {
        Self {
            name,
            pods,
            ingress: None,
            egress: Some(vec![rule]),
        }
    }

    fn ingress(name: &'static str, pods: LabelSelector, rule: NetworkPolicyIngressRule) -> Self {
        Self {
            name,
            pods,
            ingress: Some(vec![rule]),
            egress: None,
        }
    }
}

fn policy(ctx: &Ctx<'_>, p: Policy) -> NetworkPolicy {
    let mut types = Vec::new();
    if p.ingress.is_some() {
        types.push("Ingress".to_owned());
    }
    if p.egress.is_some() {
        types.push("Egress".to_owned());
    }
    NetworkPolicy {
        metadata: ctx.meta(p.name, ctx.labels()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(p.pods),
            policy_types: Some(types),
            ingress: p.ingress,
            egress: p.egress,
        }),
    }
}

pub(crate) fn policies(ctx: &Ctx<'_>) -> Result<Vec<serde_json::Value>, RenderError> {
    let cell = ctx.cell();
    let mut out = vec![
        // No rule at all for both directions: nothing in, nothing out, for every pod.
        Policy {
            name: "default-deny",
            pods: all_pods(),
            ingress: Some(Vec::new()),
            egress: Some(Vec::new()),
        },
        Policy::egress(
            "allow-dns",
            all_pods(),
            NetworkPolicyEgressRule {
                to: Some(vec![namespace(&cell.dns_namespace)]),
                ports: Some(
                    ["UDP", "TCP"]
                        .map(|protocol| NetworkPolicyPort {
                            port: Some(IntOrString::Int(53)),
                            protocol: Some(protocol.to_owned()),
                            ..NetworkPolicyPort::default()
                        })
                        .to_vec(),
                ),
            },
        ),
        Policy::egress(
            "allow-postgres",
            components(&DATABASE_CLIENTS),
            addresses(&cell.postgres),
        ),
        // The broker: the platform Redis, or the agent's broker gateway in front of it.
        Policy::egress(
            "allow-redis",
            components(&BROKER_CLIENTS),
            match cell.broker_gateway_port() {
                Some(port) => NetworkPolicyEgressRule {
                    to: Some(vec![namespace(&cell.system_namespace)]),
                    ports: Some(tcp(&[port])),
                },
                None => addresses(&cell.redis),
            },
        ),
        // The bucket gateway (DAG sync, requirements archives, task logs), in every pod: the
        // agent's pods, never the bucket itself.
        Policy::egress(
            "allow-bucket-gateway",
            all_pods(),
            NetworkPolicyEgressRule {
                to: Some(vec![namespace(&cell.system_namespace)]),
                ports: Some(tcp(&[cell.bucket_gateway_port().unwrap_or_default()])),
            },
        ),
        Policy::ingress(
            "allow-api-server-ingress",
            components(&["api-server"]),
            NetworkPolicyIngressRule {
                from: Some(vec![
                    pods(components(&EXECUTION_API_CLIENTS)),
                    namespace(&cell.system_namespace),
                ]),
                ports: Some(tcp(&[API_PORT])),
            },
        ),
        Policy::egress(
            "allow-execution-api-egress",
            components(&EXECUTION_API_CLIENTS),
            NetworkPolicyEgressRule {
                to: Some(vec![pods(components(&["api-server"]))]),
                ports: Some(tcp(&[API_PORT])),
            },
        ),
        Policy::ingress(
            "allow-log-ingress",
            components(&LOG_SERVERS),
            NetworkPolicyIngressRule {
                from: Some(vec![pods(components(&["api-server"]))]),
                ports: Some(tcp(&[WORKER_LOG_PORT, TRIGGER_LOG_PORT])),
            },
        ),
        Policy::egress(
            "allow-log-egress",
            components(&["api-server"]),
            NetworkPolicyEgressRule {
                to: Some(vec![pods(components(&LOG_SERVERS))]),
                ports: Some(tcp(&[WORKER_LOG_PORT, TRIGGER_LOG_PORT])),
            },
        ),
    ];
    if !ctx.spec().requirements.trim().is_empty() {
        out.push(Policy::egress(
            "allow-package-index",
            components(&[REQUIREMENTS_COMPONENT]),
            addresses(&cell.package_index),
        ));
    }
    if runs_task_pods(ctx.executor()) {
        out.push(Policy::egress(
            "allow-kubernetes-api",
            components(&["scheduler"]),
            addresses(&cell.kubernetes_api),
        ));
    }
    out.into_iter()
        .map(|p| to_value(ctx, &policy(ctx, p)))
        .collect()
}

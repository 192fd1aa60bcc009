//! The environment's namespace and what bounds it: Pod Security `restricted`, a ResourceQuota
//! and a LimitRange from its class, its service accounts (no token), and the one exception:
//! the Kubernetes executor's scheduler, which may manage pods in this namespace only.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, PodSpec, ResourceQuota,
    ResourceQuotaSpec, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pods::{self, AIRFLOW_SA, SCHEDULER_SA};
use super::{runs_task_pods, template, to_value, workloads, Ctx, RenderError};
use crate::blueprint::{ComponentKind, Resources};

/// The namespace, with Pod Security `restricted` enforced (and audited and warned about, so a
/// refusal is visible however the pod was created).
pub(crate) fn namespace(ctx: &Ctx<'_>) -> Result<serde_json::Value, RenderError> {
    let mut labels = ctx.labels();
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_owned(),
        );
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(ctx.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    to_value(ctx, &ns)
}

/// Every pod the environment may run at most at once, with how many of each: its components
/// at their largest (workers at `max_workers`), the Kubernetes executor's task pods (one per
/// task slot the workers would have had), the requirements Job, and one Airflow CLI command's
/// pod.
pub(crate) fn pods_at_most(ctx: &Ctx<'_>) -> Vec<(PodSpec, u32)> {
    let spec = ctx.spec();
    let mut pods: Vec<(PodSpec, u32)> = ctx
        .components
        .iter()
        .map(|c| {
            let most = match c.kind {
                ComponentKind::Worker => spec.max_workers,
                _ => c.replicas,
            };
            (pods::component_pod(ctx, c.kind, &c.args), most)
        })
        .collect();
    if runs_task_pods(ctx.executor()) {
        if let Some(task) = template::task_pod(ctx).spec {
            pods.push((task, spec.max_workers * spec.worker_concurrency()));
        }
    }
    if let Some(job) = workloads::requirements_pod(ctx) {
        pods.push((job, 1));
    }
    pods.push((template::cli_pod_spec(ctx, &[], 1), 1));
    pods
}

/// Twice the most the environment runs at once: room for a whole rollout's new pods while the
/// old ones still count (a draining worker counts for up to an hour).
pub(crate) fn quota(ctx: &Ctx<'_>) -> (Resources, u32) {
    let (total, count) = pods_at_most(ctx)
        .iter()
        .fold((Resources::new(0, 0), 0), |(r, n), (pod, most)| {
            (r + pods::pod_resources(pod).times(*most), n + most)
        });
    (total.times(2), count * 2)
}

pub(crate) fn resource_quota(ctx: &Ctx<'_>) -> Result<serde_json::Value, RenderError> {
    let (total, pods) = quota(ctx);
    let q = pods::quantities(total);
    let mut hard = BTreeMap::new();
    for (key, value) in &q {
        hard.insert(format!("requests.{key}"), value.clone());
        hard.insert(format!("limits.{key}"), value.clone());
    }
    hard.insert("pods".to_owned(), Quantity(pods.to_string()));
    // Nothing of the environment needs these; a tenant's code could not create them anyway
    // (its pods have no token), the quota says so for every other way in.
    for none in [
        "services.loadbalancers",
        "services.nodeports",
        "persistentvolumeclaims",
    ] {
        hard.insert(none.to_owned(), Quantity("0".to_owned()));
    }
    let rq = ResourceQuota {
        metadata: ctx.meta("quota", ctx.labels()),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    };
    to_value(ctx, &rq)
}

/// The largest container any of the environment's pods has.
pub(crate) fn largest_container(ctx: &Ctx<'_>) -> Resources {
    let one = |pod: &PodSpec| {
        pod.init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .map(|c| {
                pods::pod_resources(&PodSpec {
                    containers: vec![c.clone()],
                    ..PodSpec::default()
                })
            })
            .fold(Resources::new(0, 0), Resources::max)
    };
    pods_at_most(ctx)
        .iter()
        .map(|(pod, _)| one(pod))
        .fold(Resources::new(0, 0), Resources::max)
}

/// Containers without resources (none of Hangar's) get a task's share of a worker; none may be
/// larger than the largest Hangar renders.
pub(crate) fn limit_range(ctx: &Ctx<'_>) -> Result<serde_json::Value, RenderError> {
    let default = pods::quantities(template::task_resources(ctx));
    let lr = LimitRange {
        metadata: ctx.meta("limits", ctx.labels()),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(default.clone()),
                default_request: Some(default),
                max: Some(pods::quantities(largest_container(ctx))),
                ..LimitRangeItem::default()
            }],
        }),
    };
    to_value(ctx, &lr)
}

/// `airflow` for every pod, without a token; with the Kubernetes executor also
/// `airflow-scheduler`, the scheduler's, whose token manages task pods.
pub(crate) fn service_accounts(ctx: &Ctx<'_>) -> Result<Vec<serde_json::Value>, RenderError> {
    let mut out = vec![to_value(
        ctx,
        &ServiceAccount {
            metadata: ctx.meta(AIRFLOW_SA, ctx.labels()),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
    )?];
    if runs_task_pods(ctx.executor()) {
        out.push(to_value(
            ctx,
            &ServiceAccount {
                metadata: ctx.meta(SCHEDULER_SA, ctx.component_labels("scheduler")),
                // Mounted by the scheduler's pod only (it asks for it; no other pod uses this
                // account).
                automount_service_account_token: Some(false),
                ..ServiceAccount::default()
            },
        )?);
    }
    Ok(out)
}

fn rule(resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let owned = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(owned(resources)),
        verbs: owned(verbs),
        ..PolicyRule::default()
    }
}

/// The Kubernetes executor's scheduler creates, watches and deletes its task pods: a Role in
/// the environment's namespace only (never a ClusterRole), bound to its own account.
pub(crate) fn executor_rbac(ctx: &Ctx<'_>) -> Result<Vec<serde_json::Value>, RenderError> {
    if !runs_task_pods(ctx.executor()) {
        return Ok(Vec::new());
    }
    let labels = ctx.component_labels("scheduler");
    let role = Role {
        metadata: ctx.meta(SCHEDULER_SA, labels.clone()),
        rules: Some(vec![
            rule(
                &["pods"],
                &["create", "delete", "get", "list", "patch", "watch"],
            ),
            rule(&["pods/log"], &["get"]),
        ]),
    };
    let binding = RoleBinding {
        metadata: ctx.meta(SCHEDULER_SA, labels),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: SCHEDULER_SA.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: SCHEDULER_SA.to_owned(),
            namespace: Some(ctx.namespace.clone()),
            ..Subject::default()
        }]),
    };
    Ok(vec![to_value(ctx, &role)?, to_value(ctx, &binding)?])
}

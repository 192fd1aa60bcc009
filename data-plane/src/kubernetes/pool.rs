//! The size of a Kubernetes cell's worker pool, from its worker nodes: the Nodes matching the
//! cell's `worker_node_selector` that are Ready and schedulable, each holding as many worker
//! slots ([`worker_slot`]: one `small` worker pod) as its allocatable CPU and memory fit (a
//! worker never spans nodes), summed, at least 1. Read when the agent starts and every few
//! minutes after ([`watch_worker_slots`]), so nodes a cluster autoscaler adds (or removes)
//! change the pool at the next reading. What DaemonSets and other pods already hold on the
//! nodes is not subtracted.
//!
//! The arithmetic is pure ([`slots_of`], [`cpu_millis`], [`mebibytes`]); reading the Nodes
//! needs `list` on `nodes` (cluster-scoped).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use hangar_tenants::blueprint::kubernetes::worker_slot;
use hangar_tenants::blueprint::Resources;

/// How often the worker nodes are read again.
pub const REFRESH: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("failed to list the worker nodes (selector {selector:?}); the agent needs `list` on nodes, or set HANGAR_WORKER_SLOTS")]
    List {
        selector: String,
        #[source]
        source: kube::Error,
    },
}

/// The value of a quantity (`3800m`, `15Gi`, `16384Ki`, `1e3`, `1.5`) in its base unit, as
/// Kubernetes writes them: a decimal number, then a binary (`Ki`…`Ei`) or decimal (`n`, `u`,
/// `m`, `k`, `M`…`E`) suffix or an exponent. `None` for anything else, or a negative value.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    let v = value * scale;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// A CPU quantity in millicores (rounded down).
pub fn cpu_millis(q: &Quantity) -> Option<u64> {
    quantity(&q.0).map(|cores| (cores * 1000.0 + 1e-6).floor() as u64)
}

/// A memory quantity in MiB (rounded down).
pub fn mebibytes(q: &Quantity) -> Option<u64> {
    quantity(&q.0).map(|bytes| (bytes / 1024f64.powi(2)).floor() as u64)
}

/// Whether a node takes new pods: Ready and not cordoned.
fn schedulable(node: &Node) -> bool {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ready && !cordoned
}

/// The worker slots one node holds: as many `slot`s as both its allocatable CPU and memory fit.
fn node_slots(node: &Node, slot: Resources) -> u64 {
    let Some(allocatable) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else {
        return 0;
    };
    let (Some(cpu), Some(memory)) = (
        allocatable.get("cpu").and_then(cpu_millis),
        allocatable.get("memory").and_then(mebibytes),
    ) else {
        return 0;
    };
    let by_cpu = cpu / u64::from(slot.cpu_millis.max(1));
    let by_memory = memory / u64::from(slot.memory_mib.max(1));
    by_cpu.min(by_memory)
}

/// The worker slots of `nodes` (Ready and schedulable ones only), at least 1.
pub fn slots_of(nodes: &[Node], slot: Resources) -> u32 {
    let total: u64 = nodes
        .iter()
        .filter(|n| schedulable(n))
        .map(|n| node_slots(n, slot))
        .sum();
    u32::try_from(total).unwrap_or(u32::MAX).max(1)
}

/// `key=value,…`, a label selector of `labels`.
fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The worker slots of the nodes matching `node_selector` now (every node when it is empty).
pub async fn worker_slots(
    client: &kube::Client,
    node_selector: &BTreeMap<String, String>,
) -> Result<u32, PoolError> {
    let selector = selector(node_selector);
    let mut params = ListParams::default();
    if !selector.is_empty() {
        params = params.labels(&selector);
    }
    let nodes = Api::<Node>::all(client.clone())
        .list(&params)
        .await
        .map_err(|source| PoolError::List {
            selector: selector.clone(),
            source,
        })?;
    Ok(slots_of(&nodes.items, worker_slot()))
}

/// Reads the worker nodes every `every` and sends the pool's size when it changed, until
/// `cancel`. A failed reading keeps the last size.
pub async fn watch_worker_slots(
    client: kube::Client,
    node_selector: BTreeMap<String, String>,
    every: Duration,
    tx: watch::Sender<u32>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match worker_slots(&client, &node_selector).await {
            Ok(n) => {
                tx.send_if_modified(|current| {
                    let changed = *current != n;
                    if changed {
                        tracing::info!(
                            from = *current,
                            to = n,
                            "the worker node pool changed size"
                        );
                        *current = n;
                    }
                    changed
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to size the worker pool; keeping its last size");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[rstest]
    #[case("3800m", Some(3800))]
    #[case("4", Some(4000))]
    #[case("1.5", Some(1500))]
    #[case("250000000n", Some(250))]
    #[case("1e3", Some(1_000_000))]
    #[case("0.1", Some(100))]
    #[case("-1", None)]
    #[case("many", None)]
    #[case("4x", None)]
    fn cpu_quantities_in_millicores(#[case] q: &str, #[case] want: Option<u64>) {
        assert_eq!(cpu_millis(&Quantity(q.to_owned())), want);
    }

    #[rstest]
    #[case("15Gi", Some(15 * 1024))]
    #[case("16384Ki", Some(16))]
    #[case("16393916Ki", Some(16009))]
    #[case("2048Mi", Some(2048))]
    #[case("1G", Some(953))]
    #[case("1073741824", Some(1024))]
    #[case("1Ti", Some(1024 * 1024))]
    #[case("12Zi", None)]
    fn memory_quantities_in_mebibytes(#[case] q: &str, #[case] want: Option<u64>) {
        assert_eq!(mebibytes(&Quantity(q.to_owned())), want);
    }

    fn node(cpu: &str, memory: &str, ready: bool, cordoned: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": cordoned},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .unwrap()
    }

    const SLOT: Resources = Resources::new(1100, 2176);

    #[rstest]
    #[case::cpu_bound(vec![node("3800m", "15Gi", true, false)], 3)]
    #[case::memory_bound(vec![node("16", "8Gi", true, false)], 3)]
    #[case::per_node_not_pooled(vec![node("1600m", "15Gi", true, false), node("1600m", "15Gi", true, false)], 2)]
    #[case::summed(vec![node("3800m", "15Gi", true, false), node("7800m", "31Gi", true, false)], 10)]
    #[case::not_ready_and_cordoned_nodes_hold_none(vec![node("8", "32Gi", false, false), node("8", "32Gi", true, true), node("3800m", "15Gi", true, false)], 3)]
    #[case::no_nodes_is_still_one(vec![], 1)]
    #[case::too_small_is_still_one(vec![node("500m", "1Gi", true, false)], 1)]
    fn slots_are_what_each_schedulable_node_fits(#[case] nodes: Vec<Node>, #[case] want: u32) {
        assert_eq!(slots_of(&nodes, SLOT), want);
    }

    #[test]
    fn a_slot_is_one_small_worker_pod() {
        assert_eq!(worker_slot(), Resources::new(1100, 2176));
    }
}

//! The settings of a Kubernetes cell that shape every environment's objects: images, the shared
//! worker node pool, the platform bucket, and the addresses environments may reach. Read by the
//! agent (and `hangar env manifests --cell`), each with a default, checked before rendering.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Toleration;
use serde::{Deserialize, Serialize};

/// Addresses (CIDRs) and TCP ports environments' pods may open connections to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    pub cidrs: Vec<String>,
    pub ports: Vec<u16>,
}

impl Egress {
    fn new(cidrs: &[&str], ports: &[u16]) -> Self {
        Self {
            cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            ports: ports.to_vec(),
        }
    }
}

/// The private address ranges (RFC 1918), where a cluster's managed Postgres and Redis usually
/// are: the default until the operator names their exact addresses.
const PRIVATE: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
/// Anywhere: object stores, package indexes and the Kubernetes API of managed clusters have
/// public or unpredictable addresses.
const ANYWHERE: [&str; 1] = ["0.0.0.0/0"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubeCell {
    /// Repository of the Airflow image; the tag is `{airflow_version}-python{python_version}`,
    /// the official image's scheme (`apache/airflow:3.3.2-python3.12`).
    pub airflow_image: String,
    pub python_version: String,
    /// Hangar's own image (the DAG sync sidecar, the requirements Job).
    pub hangar_image: String,
    /// Where workers and task pods run: the shared worker node pool.
    pub worker_node_selector: BTreeMap<String, String>,
    pub worker_tolerations: Vec<Toleration>,
    /// The platform bucket (`s3://bucket/prefix`, `gs://…`, `az://…`): each environment's
    /// DAGs, plugins and requirements archives are under `tenants/{t}/environments/{e}/`.
    pub bucket_url: String,
    /// The namespace of the control plane and the agent: the api-server accepts connections
    /// from there only (besides the environment's own pods).
    pub system_namespace: String,
    /// The namespace of the cluster's DNS.
    pub dns_namespace: String,
    pub postgres: Egress,
    pub redis: Egress,
    /// The agent's bucket gateway as the environments' pods reach it
    /// (`http://host:port`, the port explicit): their only way to the bucket, with each
    /// environment's own credentials for its own prefix. Pods may connect to that port of the
    /// pods in `system_namespace`.
    pub bucket_gateway_url: String,
    /// The agent's broker gateway as the environments' pods reach it (`host:port`), when the
    /// platform Redis has no ACL users (ElastiCache, Memorystore, Azure Cache for Redis): the
    /// pods' only way to their broker, each with its own user, and they may connect to that
    /// port of the pods in `system_namespace` instead of `redis`. Empty: the pods reach the
    /// platform Redis (`redis`) directly, each as its own ACL user.
    pub broker_gateway: String,
    /// The package index the requirements Job installs from.
    pub package_index: Egress,
    /// The Kubernetes API, which the scheduler of an environment with the Kubernetes executor
    /// creates task pods through.
    pub kubernetes_api: Egress,
}

impl Default for KubeCell {
    fn default() -> Self {
        Self {
            airflow_image: "apache/airflow".to_owned(),
            python_version: "3.12".to_owned(),
            hangar_image: format!("ghcr.io/hangar-dev/hangar:{}", env!("CARGO_PKG_VERSION")),
            worker_node_selector: BTreeMap::new(),
            worker_tolerations: Vec::new(),
            bucket_url: "s3://hangar".to_owned(),
            system_namespace: "hangar-system".to_owned(),
            dns_namespace: "kube-system".to_owned(),
            postgres: Egress::new(&PRIVATE, &[5432]),
            redis: Egress::new(&PRIVATE, &[6379]),
            bucket_gateway_url: "http://hangar-agent.hangar-system.svc:9470".to_owned(),
            broker_gateway: String::new(),
            package_index: Egress::new(&ANYWHERE, &[443]),
            kubernetes_api: Egress::new(&ANYWHERE, &[443, 6443]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    #[error("{field}: {value:?} is not an image reference")]
    Image { field: &'static str, value: String },
    #[error("python_version: {0:?} is not a version such as 3.12")]
    Python(String),
    #[error("bucket_url: {0:?} is not a URL such as s3://bucket/prefix")]
    Bucket(String),
    #[error("bucket_gateway_url: {0:?} is not a URL such as http://hangar-agent.hangar-system.svc:9470 (with its port)")]
    BucketGateway(String),
    #[error("broker_gateway: {0:?} is not an address such as hangar-agent.hangar-system.svc:9471 (host:port)")]
    BrokerGateway(String),
    #[error("{field}: {value:?} is not a namespace name")]
    Namespace { field: &'static str, value: String },
    #[error("{field}: {value:?} is not a CIDR such as 10.0.0.0/8")]
    Cidr { field: &'static str, value: String },
    #[error("{field}: needs at least one CIDR and one port (1-65535)")]
    EmptyEgress { field: &'static str },
    #[error("worker_node_selector: {key:?}={value:?} is not a valid label")]
    NodeSelector { key: String, value: String },
}

/// An RFC 1123 label (a namespace's name).
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label value: at most 63 characters, alphanumeric at both ends, `-`, `_`, `.` inside.
fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name like a value.
fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns_label));
    prefix_ok && !name.is_empty() && is_label_value(name)
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else {
        return false;
    };
    let (Ok(addr), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>()) else {
        return false;
    };
    bits <= if addr.is_ipv4() { 32 } else { 128 }
}

fn is_image(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@".contains(&b))
}

/// The port of `host:port` (a host name or an IP address, the port not 0).
fn port_of(address: &str) -> Option<u16> {
    let (host, port) = address.rsplit_once(':')?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    host_ok.then_some(port)
}

impl KubeCell {
    /// The Airflow image of an Airflow version.
    pub fn airflow_image_for(&self, airflow_version: &str) -> String {
        format!(
            "{}:{airflow_version}-python{}",
            self.airflow_image, self.python_version
        )
    }

    /// Refuses settings that would render invalid objects, naming the setting.
    /// The bucket gateway's port: `http(s)://host:port[/]`, nothing else (no user, path or
    /// query), the port explicit since the network policy names it.
    pub fn bucket_gateway_port(&self) -> Option<u16> {
        let rest = self
            .bucket_gateway_url
            .strip_prefix("http://")
            .or_else(|| self.bucket_gateway_url.strip_prefix("https://"))?;
        port_of(rest.strip_suffix('/').unwrap_or(rest))
    }

    /// The broker gateway's port, when pods reach their brokers through it (`host:port`).
    pub fn broker_gateway_port(&self) -> Option<u16> {
        port_of(&self.broker_gateway)
    }

    pub fn validate(&self) -> Result<(), CellError> {
        for (field, value) in [
            ("airflow_image", &self.airflow_image),
            ("hangar_image", &self.hangar_image),
        ] {
            if !is_image(value) {
                return Err(CellError::Image {
                    field,
                    value: value.clone(),
                });
            }
        }
        let python_ok = self
            .python_version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !python_ok {
            return Err(CellError::Python(self.python_version.clone()));
        }
        let bucket_ok = self
            .bucket_url
            .split_once("://")
            .is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    && !rest.is_empty()
                    && !rest.contains(char::is_whitespace)
            });
        if !bucket_ok {
            return Err(CellError::Bucket(self.bucket_url.clone()));
        }
        if self.bucket_gateway_port().is_none() {
            return Err(CellError::BucketGateway(self.bucket_gateway_url.clone()));
        }
        if !self.broker_gateway.is_empty() && self.broker_gateway_port().is_none() {
            return Err(CellError::BrokerGateway(self.broker_gateway.clone()));
        }
        for (field, value) in [
            ("system_namespace", &self.system_namespace),
            ("dns_namespace", &self.dns_namespace),
        ] {
            if !is_dns_label(value) {
                return Err(CellError::Namespace {
                    field,
                    value: value.clone(),
                });
            }
        }
        for (field, egress) in [
            ("postgres", &self.postgres),
            ("redis", &self.redis),
            ("package_index", &self.package_index),
            ("kubernetes_api", &self.kubernetes_api),
        ] {
            if egress.cidrs.is_empty() || egress.ports.is_empty() || egress.ports.contains(&0) {
                return Err(CellError::EmptyEgress { field });
            }
            if let Some(bad) = egress.cidrs.iter().find(|c| !is_cidr(c)) {
                return Err(CellError::Cidr {
                    field,
                    value: bad.clone(),
                });
            }
        }
        if let Some((key, value)) = self
            .worker_node_selector
            .iter()
            .find(|(k, v)| !is_label_key(k) || !is_label_value(v))
        {
            return Err(CellError::NodeSelector {
                key: key.clone(),
                value: value.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    #[test]
    fn the_defaults_are_valid_and_name_the_official_image() {
        let cell = KubeCell::default();
        assert_eq!(cell.validate(), Ok(()));
        assert_eq!(
            cell.airflow_image_for("3.3.2"),
            "apache/airflow:3.3.2-python3.12"
        );
    }

    #[test]
    fn an_empty_object_reads_as_the_defaults() {
        let cell: KubeCell = serde_json::from_str("{}").unwrap();
        assert_eq!(cell, KubeCell::default());
        assert!(serde_json::from_str::<KubeCell>(r#"{"bukket_url": "x"}"#).is_err());
    }

    #[rstest]
    #[case("http://hangar-agent.hangar-system.svc:9470", Some(9470))]
    #[case("https://10.0.0.7:443/", Some(443))]
    #[case("http://[fd00::1]:9470", Some(9470))]
    #[case("http://hangar-agent:0", None)]
    #[case("http://:9470", None)]
    fn the_gateway_port_is_read_from_its_url(#[case] url: &str, #[case] port: Option<u16>) {
        let cell = KubeCell {
            bucket_gateway_url: url.to_owned(),
            ..KubeCell::default()
        };
        assert_eq!(cell.bucket_gateway_port(), port);
    }

    #[rstest]
    #[case(serde_json::json!({"airflow_image": "apache/airflow latest"}), "airflow_image")]
    #[case(serde_json::json!({"python_version": "3.x"}), "python_version")]
    #[case(serde_json::json!({"bucket_url": "hangar"}), "bucket_url")]
    #[case(serde_json::json!({"bucket_gateway_url": "http://hangar-agent"}), "bucket_gateway_url")]
    #[case(serde_json::json!({"bucket_gateway_url": "s3://hangar-agent:9470"}), "bucket_gateway_url")]
    #[case(serde_json::json!({"bucket_gateway_url": "http://a:9470/path"}), "bucket_gateway_url")]
    #[case(serde_json::json!({"bucket_gateway_url": "http://u@a:9470"}), "bucket_gateway_url")]
    #[case(serde_json::json!({"system_namespace": "Hangar"}), "system_namespace")]
    #[case(serde_json::json!({"postgres": {"cidrs": ["10.0.0.0/33"], "ports": [5432]}}), "postgres")]
    #[case(serde_json::json!({"redis": {"cidrs": [], "ports": [6379]}}), "redis")]
    #[case(serde_json::json!({"worker_node_selector": {"pool": "not valid"}}), "worker_node_selector")]
    fn bad_settings_are_refused_by_name(#[case] json: serde_json::Value, #[case] field: &str) {
        let cell: KubeCell = serde_json::from_value(json).unwrap();
        let err = cell.validate().unwrap_err().to_string();
        assert!(err.starts_with(field), "{err}");
    }
}

//! The objects an environment should have, as the cluster side applies them: each rendered
//! object with its API resource (from its `apiVersion` and `kind`), its scope, and a hash of its
//! content, which is also written on it (annotation [`APPLIED_HASH`]) so the next apply — by
//! this agent or by the next one after a restart — can tell an unchanged object from the cluster's
//! copy without comparing whole objects the API server has defaulted. Pure: no client.

use std::str::FromStr;

use kube::core::{ApiResource, GroupVersion};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::ClusterError;

/// The annotation holding the hash of the content the object was last applied with.
pub const APPLIED_HASH: &str = "hangar.dev/applied-hash";

/// One object to apply.
#[derive(Debug, Clone)]
pub struct Desired {
    pub resource: ApiResource,
    /// `None` for cluster-scoped objects (the namespace itself).
    pub namespace: Option<String>,
    pub name: String,
    /// The hash of the rendered content (without the annotation that carries it).
    pub hash: String,
    /// The object as applied: the rendered one with [`APPLIED_HASH`] set.
    pub object: Value,
}

impl Desired {
    /// Reads one rendered object (`index` in its namespace's list, for errors).
    pub fn new(namespace: &str, index: usize, rendered: &Value) -> Result<Self, ClusterError> {
        let incomplete = |missing| ClusterError::Incomplete {
            namespace: namespace.to_owned(),
            index,
            missing,
        };
        let api_version = rendered["apiVersion"]
            .as_str()
            .ok_or_else(|| incomplete("apiVersion"))?;
        let kind = rendered["kind"]
            .as_str()
            .ok_or_else(|| incomplete("kind"))?;
        let name = rendered["metadata"]["name"]
            .as_str()
            .ok_or_else(|| incomplete("metadata.name"))?;
        let gv = GroupVersion::from_str(api_version).map_err(|_| incomplete("valid apiVersion"))?;
        let resource = ApiResource::from_gvk(&gv.with_kind(kind));
        let object_namespace = rendered["metadata"]["namespace"].as_str();
        let hash = content_hash(rendered);
        let mut object = rendered.clone();
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| incomplete("metadata"))?;
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if !annotations.is_object() {
            return Err(incomplete("metadata.annotations as a map"));
        }
        annotations[APPLIED_HASH] = Value::String(hash.clone());
        Ok(Self {
            resource,
            namespace: object_namespace.map(str::to_owned),
            name: name.to_owned(),
            hash,
            object,
        })
    }

    /// `Kind/name` (or `Kind/namespace/name`), for logs and reports.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.resource.kind, self.name),
            None => format!("{}/{}", self.resource.kind, self.name),
        }
    }

    /// What identifies the object among those read back from the cluster.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.resource, self.namespace.as_deref(), &self.name)
    }
}

/// An object's identity: its API resource, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(resource: &ApiResource, namespace: Option<&str>, name: &str) -> Self {
        Self {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

/// A short digest of an object's content, independent of the order of its maps' keys.
pub fn content_hash(object: &Value) -> String {
    let mut bytes = Vec::new();
    canonical(object, &mut bytes);
    crate::supervisor::short_hex(&Sha256::digest(&bytes))
}

/// `value` as JSON with every map's keys sorted.
fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                if let Some(v) = map.get(k) {
                    canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_key_order_but_not_content() {
        let a = json!({"kind": "ConfigMap", "data": {"a": "1", "b": "2"}});
        let b = json!({"data": {"b": "2", "a": "1"}, "kind": "ConfigMap"});
        let c = json!({"data": {"b": "2", "a": "3"}, "kind": "ConfigMap"});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
        assert_eq!(content_hash(&a).len(), 16);
    }

    #[test]
    fn a_rendered_object_gets_its_resource_scope_and_hash_annotation() {
        let rendered = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": "hangar-0123456789ab",
                         "annotations": {"keep": "me"}},
            "spec": {"podSelector": {}}
        });
        let d = Desired::new("hangar-0123456789ab", 1, &rendered).unwrap();
        assert_eq!(d.resource.group, "networking.k8s.io");
        assert_eq!(d.resource.plural, "networkpolicies");
        assert_eq!(d.namespace.as_deref(), Some("hangar-0123456789ab"));
        assert_eq!(d.hash, content_hash(&rendered));
        assert_eq!(d.object["metadata"]["annotations"]["keep"], "me");
        assert_eq!(d.object["metadata"]["annotations"][APPLIED_HASH], d.hash);
    }

    #[test]
    fn a_namespace_is_cluster_scoped() {
        let rendered = json!({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": "hangar-0123456789ab"}});
        let d = Desired::new("hangar-0123456789ab", 0, &rendered).unwrap();
        assert_eq!(d.namespace, None);
        assert_eq!(d.resource.group, "");
        assert_eq!(d.resource.plural, "namespaces");
    }

    #[test]
    fn an_object_without_a_name_is_refused() {
        let rendered = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {}});
        let e = Desired::new("hangar-0123456789ab", 4, &rendered).unwrap_err();
        assert!(matches!(
            e,
            ClusterError::Incomplete {
                index: 4,
                missing: "metadata.name",
                ..
            }
        ));
    }
}

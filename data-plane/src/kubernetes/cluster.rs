//! The Kubernetes side of the kubernetes runtime alone, on a `kube::Client`: applying an
//! environment's objects and deleting its namespace. (Its Deployments' health and its worker
//! pods are in [`super::status`] and [`super::workers`].)
//!
//! Objects are applied with server-side apply (field manager [`FIELD_MANAGER`], forced: the
//! agent owns every field it renders), one by one in the renderer's order (the namespace
//! first). What the cluster has is read once per apply — the namespace, then one metadata-only
//! list per kind — and an object whose [`APPLIED_HASH`] annotation matches what was rendered is
//! left alone: an agent that restarts adopts what exists without writing anything, and a
//! revision that changes one component patches only that component's objects. Objects of the
//! kinds listed that Hangar manages but the revision no longer has are deleted afterwards.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value;

use super::desired::{Desired, ObjectKey, APPLIED_HASH};
use super::error::{classify, is_not_found, Class, ClusterError};

/// The field manager of everything the agent applies.
pub const FIELD_MANAGER: &str = "hangar";
/// Selects the objects Hangar manages (every rendered object carries the label).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=hangar";

/// A cluster, as one cell's agent drives it.
#[derive(Clone)]
pub struct Cluster {
    pub(super) client: kube::Client,
    /// How often a deleted namespace is checked for being gone, and how many times.
    delete_poll: Duration,
    delete_polls: u32,
}

/// What one apply did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The objects patched (`Kind/namespace/name`), in order.
    pub patched: Vec<String>,
    /// Objects left alone because the cluster has them as rendered.
    pub unchanged: usize,
    /// Objects deleted because the revision no longer has them (`Kind/namespace/name`).
    pub pruned: Vec<String>,
}

/// What the cluster has of an environment's objects, as read at the start of an apply.
#[derive(Default)]
struct Existing {
    /// The [`APPLIED_HASH`] of each object found.
    hashes: HashMap<ObjectKey, String>,
    /// Objects Hangar manages, of the kinds listed, that the revision does not have.
    extra: Vec<(ApiResource, String, String)>,
}

impl Cluster {
    /// A cluster reached through `client`; a deleted namespace is awaited for up to two
    /// minutes per [`Cluster::delete_namespace`] call.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            delete_poll: Duration::from_secs(2),
            delete_polls: 60,
        }
    }

    /// Checks a deleted namespace every `every`, `polls` times, before calling it still
    /// terminating (tests make it short).
    pub fn with_delete_poll(mut self, every: Duration, polls: u32) -> Self {
        self.delete_poll = every;
        self.delete_polls = polls.max(1);
        self
    }

    /// Applies `objects` (rendered for `namespace`, in order), skipping those the cluster
    /// already has as rendered.
    pub async fn apply(&self, namespace: &str, objects: &[Value]) -> Result<Applied, ClusterError> {
        let desired = objects
            .iter()
            .enumerate()
            .map(|(i, o)| Desired::new(namespace, i, o))
            .collect::<Result<Vec<_>, _>>()?;
        let existing = self.existing(namespace, &desired).await?;
        let mut out = Applied::default();
        for d in &desired {
            if existing.hashes.get(&d.key()) == Some(&d.hash) {
                out.unchanged += 1;
                continue;
            }
            self.apply_object(d).await?;
            out.patched.push(d.describe());
        }
        // Only once the new objects are in place: what the revision dropped (an old
        // requirements Job, a component it no longer runs).
        for (resource, ns, name) in existing.extra {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &resource);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => {
                    return Err(ClusterError::Prune {
                        namespace: ns,
                        kind: resource.kind,
                        name,
                        source: Box::new(source),
                    })
                }
            }
            out.pruned.push(format!("{}/{ns}/{name}", resource.kind));
        }
        if !out.patched.is_empty() || !out.pruned.is_empty() {
            tracing::info!(namespace, patched = ?out.patched, pruned = ?out.pruned, unchanged = out.unchanged, "applied objects");
        }
        Ok(out)
    }

    /// Applies one object. A conflict is retried once after reading the object again (done if
    /// someone already applied the same content); a second conflict is returned.
    pub async fn apply_object(&self, d: &Desired) -> Result<(), ClusterError> {
        let api = self.dynamic(d);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let failed = |source| ClusterError::Apply {
            namespace: d.namespace.clone().unwrap_or_default(),
            kind: d.resource.kind.clone(),
            name: d.name.clone(),
            source: Box::new(source),
        };
        match api.patch(&d.name, &params, &Patch::Apply(&d.object)).await {
            Ok(_) => Ok(()),
            Err(e) if classify(&e) == Class::Conflict => {
                tracing::debug!(object = %d.describe(), "conflict; reading it again");
                let now = api.get_metadata_opt(&d.name).await.map_err(failed)?;
                if now.is_some_and(|m| hash_of(&m.metadata) == Some(&d.hash)) {
                    return Ok(());
                }
                api.patch(&d.name, &params, &Patch::Apply(&d.object))
                    .await
                    .map(|_| ())
                    .map_err(failed)
            }
            Err(e) => Err(failed(e)),
        }
    }

    fn dynamic(&self, d: &Desired) -> Api<DynamicObject> {
        match &d.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &d.resource),
            None => Api::all_with(self.client.clone(), &d.resource),
        }
    }

    /// What the cluster has of `desired`'s objects (and of their kinds). Nothing is listed
    /// when the namespace does not exist yet; a namespace being deleted is an error (nothing
    /// may be created in it).
    async fn existing(
        &self,
        namespace: &str,
        desired: &[Desired],
    ) -> Result<Existing, ClusterError> {
        let read = |kind: &str| {
            let kind = kind.to_owned();
            move |source| ClusterError::Read {
                namespace: namespace.to_owned(),
                kind,
                source: Box::new(source),
            }
        };
        let mut found = Existing::default();
        let wanted: HashSet<ObjectKey> = desired.iter().map(Desired::key).collect();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let Some(ns) = namespaces
            .get_metadata_opt(namespace)
            .await
            .map_err(read("Namespace"))?
        else {
            return Ok(found);
        };
        if ns.metadata.deletion_timestamp.is_some() {
            return Err(ClusterError::Terminating {
                namespace: namespace.to_owned(),
            });
        }
        let ns_key = ObjectKey {
            api_version: "v1".to_owned(),
            kind: "Namespace".to_owned(),
            namespace: None,
            name: namespace.to_owned(),
        };
        if let Some(h) = hash_of(&ns.metadata) {
            found.hashes.insert(ns_key.clone(), h.clone());
        }
        let mut listed = HashSet::new();
        for d in desired {
            let key = d.key();
            if key == ns_key {
                continue;
            }
            match &d.namespace {
                // Cluster-scoped objects other than the namespace: read one by one.
                None => {
                    let object = self
                        .dynamic(d)
                        .get_metadata_opt(&d.name)
                        .await
                        .map_err(read(&d.resource.kind))?;
                    if let Some(h) = object.as_ref().and_then(|m| hash_of(&m.metadata)) {
                        found.hashes.insert(key, h.clone());
                    }
                }
                // One list per kind and namespace.
                Some(ns) => {
                    if !listed.insert((key.api_version.clone(), key.kind.clone(), ns.clone())) {
                        continue;
                    }
                    let items = self
                        .dynamic(d)
                        .list_metadata(&ListParams::default().labels(MANAGED_SELECTOR))
                        .await
                        .map_err(read(&d.resource.kind))?;
                    for item in items {
                        let Some(name) = item.metadata.name.as_deref() else {
                            continue;
                        };
                        let key = ObjectKey::new(&d.resource, Some(ns), name);
                        if !wanted.contains(&key) {
                            found
                                .extra
                                .push((d.resource.clone(), ns.clone(), name.to_owned()));
                        } else if let Some(h) = hash_of(&item.metadata) {
                            found.hashes.insert(key, h.clone());
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// Deletes the namespace (everything of the environment lives in it) and waits until it is
    /// gone. Idempotent: a namespace already terminating is waited for, one already gone is
    /// done. A namespace whose pods take longer to stop than the wait is an error (transient:
    /// the next call waits again).
    pub async fn delete_namespace(&self, namespace: &str) -> Result<(), ClusterError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let failed = |source| ClusterError::Delete {
            namespace: namespace.to_owned(),
            source: Box::new(source),
        };
        match api.delete(namespace, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // Already terminating: the API server refuses a second delete with a conflict.
            Err(e) if classify(&e) == Class::Conflict => {}
            Err(e) => return Err(failed(e)),
        }
        for _ in 0..self.delete_polls {
            tokio::time::sleep(self.delete_poll).await;
            if api
                .get_metadata_opt(namespace)
                .await
                .map_err(failed)?
                .is_none()
            {
                tracing::info!(namespace, "namespace deleted");
                return Ok(());
            }
        }
        Err(ClusterError::StillTerminating {
            namespace: namespace.to_owned(),
            waited: self.delete_poll * self.delete_polls,
        })
    }
}

/// The [`APPLIED_HASH`] annotation of an object read back.
fn hash_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&String> {
    meta.annotations.as_ref()?.get(APPLIED_HASH)
}

//! An environment's DAG files in the platform bucket, under
//! `tenants/{tenant}/environments/{env}/dags/`: written atomically (a temporary file renamed
//! into place), so an agent syncing the prefix never copies half a file. The bucket is a local
//! directory for now; other object stores come with the object_store work.

use std::path::{Path, PathBuf};

use hangar_tenants::api::{DagFile, Role};
use hangar_tenants::dag_path::{dags_prefix, DagPath, UPLOAD_PREFIX};
use hangar_tenants::{FieldError, Phase};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ServiceError, Services, StoreContext, TenantRef};
use crate::auth::Actor;
use crate::persistence::{self, audit::NewAudit};

/// Largest DAG file accepted.
pub const MAX_DAG_FILE: usize = 10 * 1024 * 1024;

fn io(action: &'static str) -> impl Fn(std::io::Error) -> ServiceError {
    move |e| ServiceError::Corrupt {
        action,
        message: e.to_string(),
    }
}

impl Services {
    fn bucket(&self) -> Result<&Path, ServiceError> {
        self.bucket_dir.as_deref().ok_or_else(|| {
            ServiceError::Unavailable(
                "this platform has no bucket configured (HANGAR_BUCKET_DIR)".to_owned(),
            )
        })
    }

    /// The caller's environment, live, and its DAG prefix.
    async fn dag_prefix(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        need: Role,
    ) -> Result<(TenantRef, PathBuf), ServiceError> {
        let t = self.authorize_tenant(actor, tenant, need).await?;
        persistence::environments::by_name(&self.db.pool, t.id, env)
            .await
            .store("read an environment")?
            .filter(|r| r.phase != Phase::Deleted.as_str())
            .ok_or_else(|| ServiceError::not_found("environment", env))?;
        let prefix = dags_prefix(self.bucket()?, &t.name, env);
        Ok((t, prefix))
    }

    /// Records a change to an environment's DAG files in the audit log.
    async fn audit_dag(
        &self,
        actor: &Actor,
        t: &TenantRef,
        env: &str,
        path: &DagPath,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db.begin().await.store("begin a transaction")?;
        persistence::audit::insert(
            &mut tx,
            NewAudit {
                tenant_id: Some(t.id),
                actor: &actor.principal.actor(),
                action,
                target: &format!("{}/environments/{env}/dags/{path}", t.name),
                request_id: actor.request_id.as_deref(),
                details,
            },
        )
        .await
        .store("audit a DAG change")?;
        tx.commit().await.store("commit a DAG change audit")
    }

    fn dag_path(path: &str) -> Result<DagPath, ServiceError> {
        DagPath::parse(path).map_err(|e| FieldError::new("path", e.to_string()).into())
    }

    pub async fn put_dag(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<DagFile, ServiceError> {
        let path = Self::dag_path(path)?;
        let (t, prefix) = self.dag_prefix(actor, tenant, env, Role::Editor).await?;
        let target = prefix.join(path.as_str());
        let parent = target.parent().unwrap_or(&prefix).to_owned();
        std::fs::create_dir_all(&parent).map_err(io("create a DAG folder"))?;
        let tmp = parent.join(format!("{UPLOAD_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, bytes).map_err(io("write a DAG file"))?;
        std::fs::rename(&tmp, &target).map_err(io("move a DAG file into place"))?;
        let sha256: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.audit_dag(
            actor,
            &t,
            env,
            &path,
            "dag.put",
            json!({ "size": bytes.len(), "sha256": sha256 }),
        )
        .await?;
        Ok(DagFile {
            path: path.to_string(),
            size: bytes.len() as u64,
            sha256: Some(sha256),
        })
    }

    pub async fn get_dag(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        path: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        let path = Self::dag_path(path)?;
        let (_, prefix) = self.dag_prefix(actor, tenant, env, Role::Viewer).await?;
        std::fs::read(prefix.join(path.as_str()))
            .map_err(|_| ServiceError::not_found("DAG file", path.as_str()))
    }

    pub async fn delete_dag(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        path: &str,
    ) -> Result<(), ServiceError> {
        let path = Self::dag_path(path)?;
        let (t, prefix) = self.dag_prefix(actor, tenant, env, Role::Editor).await?;
        std::fs::remove_file(prefix.join(path.as_str()))
            .map_err(|_| ServiceError::not_found("DAG file", path.as_str()))?;
        self.audit_dag(actor, &t, env, &path, "dag.delete", json!({}))
            .await
    }

    pub async fn list_dags(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
    ) -> Result<Vec<DagFile>, ServiceError> {
        let (_, prefix) = self.dag_prefix(actor, tenant, env, Role::Viewer).await?;
        let mut out = Vec::new();
        let mut stack = vec![prefix.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(p);
                } else if meta.is_file()
                    && !entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(UPLOAD_PREFIX)
                {
                    if let Ok(rel) = p.strip_prefix(&prefix) {
                        out.push(DagFile {
                            path: rel.display().to_string(),
                            size: meta.len(),
                            sha256: None,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

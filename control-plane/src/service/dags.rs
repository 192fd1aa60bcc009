//! An environment's DAG files in the platform bucket, under
//! `tenants/{tenant}/environments/{env}/dags/`. Uploads stream into the store (never more than
//! the size limit is read) and become visible whole: stores publish an object when its upload
//! completes, so an agent syncing the prefix never copies half a file.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hangar_data_plane::bucket::{Bucket, BucketError};
use hangar_tenants::api::{DagFile, Role, UploadUrl};
use hangar_tenants::dag_path::DagPath;
use hangar_tenants::FieldError;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ServiceError, Services, TenantRef};
use crate::auth::Actor;

/// How long a pre-signed upload URL is valid.
const UPLOAD_URL_SECS: u64 = 15 * 60;

/// Largest DAG file accepted.
pub const MAX_DAG_FILE: usize = 10 * 1024 * 1024;

fn store(action: &'static str) -> impl Fn(BucketError) -> ServiceError {
    move |e| ServiceError::Unavailable(format!("the platform bucket failed to {action}: {e}"))
}

fn store_os(action: &'static str) -> impl Fn(object_store::Error) -> ServiceError {
    move |e| ServiceError::Unavailable(format!("the platform bucket failed to {action}: {e}"))
}

/// A path a local-folder bucket cannot take (a folder of it is a file, or it is a folder):
/// it is taken, a conflict.
fn clash(kind: std::io::ErrorKind) -> ServiceError {
    ServiceError::Conflict {
        field: Some("path"),
        message: if kind == std::io::ErrorKind::IsADirectory {
            "this path is a folder of the DAG folder".to_owned()
        } else {
            "a folder of this path is a file of the DAG folder".to_owned()
        },
    }
}

/// A write refused by a local-folder bucket for a clash (see [`clash`]), or another failure.
fn write_failure(action: &'static str) -> impl Fn(object_store::Error) -> ServiceError {
    move |e| match hangar_data_plane::bucket::folder_clash(&e) {
        Some(kind) => clash(kind),
        None => store_os(action)(e),
    }
}

/// An upload that went wrong.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the upload broke off: {0}")]
    Body(String),
}

impl Services {
    fn bucket(&self) -> Result<&Bucket, ServiceError> {
        self.bucket.as_ref().ok_or_else(|| {
            ServiceError::Unavailable(
                "this platform has no bucket configured (HANGAR_BUCKET_URL)".to_owned(),
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
    ) -> Result<(TenantRef, ObjectPath), ServiceError> {
        let t = self.authorize_tenant(actor, tenant, need).await?;
        self.live_environment(&t, env).await?;
        let bucket = self.bucket()?;
        let prefix = bucket.path(&hangar_tenants::bucket_layout::dags_prefix(&t.name, env));
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
        self.audit(
            actor,
            t,
            action,
            &format!("{}/environments/{env}/dags/{path}", t.name),
            details,
        )
        .await
    }

    fn dag_path(path: &str) -> Result<DagPath, ServiceError> {
        DagPath::parse(path).map_err(|e| FieldError::new("path", e.to_string()).into())
    }

    /// Streams a DAG file into the bucket, refusing it once it passes [`MAX_DAG_FILE`] (the
    /// partial upload is aborted, the previous file stays).
    pub async fn put_dag<S, E>(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        path: &str,
        mut body: S,
    ) -> Result<DagFile, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = Self::dag_path(path)?;
        let (t, prefix) = self.dag_prefix(actor, tenant, env, Role::Editor).await?;
        let bucket = self.bucket()?;
        let target = Bucket::child(&prefix, path.as_str());
        if let Some(kind) = bucket.clash(&target) {
            return Err(clash(kind).into());
        }
        let upload = bucket
            .store()
            .put_multipart(&target)
            .await
            .map_err(write_failure("start an upload"))?;
        let mut writer = WriteMultipart::new(upload);
        let mut hasher = Sha256::new();
        let mut size = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(UploadError::Body(e.to_string()));
                }
            };
            size += chunk.len();
            if size > MAX_DAG_FILE {
                let _ = writer.abort().await;
                return Err(UploadError::TooLarge {
                    limit: MAX_DAG_FILE,
                });
            }
            hasher.update(&chunk);
            writer.put(chunk);
        }
        writer
            .finish()
            .await
            .map_err(write_failure("store a DAG file"))?;
        let sha256: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.audit_dag(
            actor,
            &t,
            env,
            &path,
            "dag.put",
            json!({ "size": size, "sha256": sha256 }),
        )
        .await?;
        Ok(DagFile {
            path: path.to_string(),
            size: size as u64,
            sha256: Some(sha256),
        })
    }

    /// A pre-signed URL that uploads one DAG file straight to the bucket, valid 15 minutes.
    pub async fn dag_upload_url(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        path: &str,
    ) -> Result<UploadUrl, ServiceError> {
        let path = Self::dag_path(path)?;
        let (t, prefix) = self.dag_prefix(actor, tenant, env, Role::Editor).await?;
        let expires_in = std::time::Duration::from_secs(UPLOAD_URL_SECS);
        let url = self
            .bucket()?
            .signed_put_url(&Bucket::child(&prefix, path.as_str()), expires_in)
            .await
            .map_err(store("sign an upload URL"))?
            .ok_or_else(|| ServiceError::Conflict {
                field: None,
                message: "this platform's bucket is a local folder, which has no upload URLs: \
                          upload with PUT …/dags/{path}"
                    .to_owned(),
            })?;
        let expires_at = chrono::Utc::now() + chrono::Duration::seconds(UPLOAD_URL_SECS as i64);
        self.audit_dag(
            actor,
            &t,
            env,
            &path,
            "dag.upload_url",
            json!({ "expires_at": expires_at }),
        )
        .await?;
        Ok(UploadUrl {
            url: url.to_string(),
            method: "PUT".to_owned(),
            path: path.to_string(),
            expires_at,
        })
    }

    pub async fn get_dag(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
        path: &str,
    ) -> Result<Bytes, ServiceError> {
        let path = Self::dag_path(path)?;
        let (_, prefix) = self.dag_prefix(actor, tenant, env, Role::Viewer).await?;
        match self
            .bucket()?
            .get(&Bucket::child(&prefix, path.as_str()))
            .await
        {
            Ok(b) => Ok(b),
            Err(e) if e.is_not_found() => Err(ServiceError::not_found("DAG file", path.as_str())),
            Err(e) => Err(store("read a DAG file")(e)),
        }
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
        let bucket = self.bucket()?;
        let target = Bucket::child(&prefix, path.as_str());
        // Stores answer a delete of a missing object with success; the API says 404.
        match bucket.store().head(&target).await {
            Ok(_) => {}
            Err(e)
                if matches!(e, object_store::Error::NotFound { .. })
                    || hangar_data_plane::bucket::folder_clash(&e).is_some() =>
            {
                return Err(ServiceError::not_found("DAG file", path.as_str()))
            }
            Err(e) => return Err(store_os("look up a DAG file")(e)),
        }
        bucket
            .delete(&target)
            .await
            .map_err(store("delete a DAG file"))?;
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
        let listed = self
            .bucket()?
            .list(&prefix)
            .await
            .map_err(store("list DAG files"))?;
        let mut out: Vec<DagFile> = listed
            .into_iter()
            .filter_map(|m| {
                Some(DagFile {
                    path: Bucket::relative(&prefix, &m.location)?,
                    size: m.size,
                    sha256: None,
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

//! The platform bucket: one object store for every environment's DAGs, plugins and
//! requirements, reached through the `object_store` crate so the local filesystem, S3 and
//! S3-compatible stores, Google Cloud Storage and Azure Blob Storage are one code path.
//!
//! Configured by URL: `file:///var/lib/hangar/bucket`, `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `az://container/prefix`. Credentials come from each cloud's standard sources (the builders'
//! `from_env`: `AWS_*`, `GOOGLE_*`, `AZURE_*`, instance metadata). Query parameters are passed to
//! the store as options by their `object_store` names, for example
//! `s3://dags?endpoint=http://127.0.0.1:9000&allow_http=true&region=us-east-1` for an
//! S3-compatible store, `gs://dags?base_url=http://127.0.0.1:4443&skip_signature=true` for an
//! emulator; an unknown option is refused by name.
//!
//! Each environment owns `tenants/{tenant}/environments/{env}/` under the bucket's prefix, with
//! `dags/`, `plugins/`, `requirements.txt` and its logs: the layout is
//! [`hangar_tenants::bucket_layout`]'s, which the control plane uses too.

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use hangar_tenants::bucket_layout as layout;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("the bucket URL {url:?} is not valid: {reason}")]
    Url { url: String, reason: String },
    #[error("failed to read the bucket URL from {path}")]
    UrlFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bucket URL's option {key:?} is not known to the {scheme} store")]
    UnknownOption { scheme: String, key: String },
    #[error("failed to prepare the bucket folder {path}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bucket folder {path} is gone (unmounted or deleted)")]
    Gone { path: PathBuf },
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

impl BucketError {
    /// Whether the object was not there.
    pub fn is_not_found(&self) -> bool {
        match self {
            BucketError::Store(object_store::Error::NotFound { .. }) => true,
            BucketError::Store(e) => folder_clash(e).is_some(),
            _ => false,
        }
    }
}

/// Where a bucket that is a local folder refused a key because of what is at its place: a
/// file where the key needs a folder (`a.py/b.py` with a file `a.py`), or a folder where it
/// needs a file (`a` with files under `a/`). An object store has no such clash: for reading
/// there is no such object, for writing the key is taken.
pub fn folder_clash(e: &object_store::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let kind = io.kind();
            if matches!(
                kind,
                std::io::ErrorKind::NotADirectory | std::io::ErrorKind::IsADirectory
            ) {
                return Some(kind);
            }
        }
        source = s.source();
    }
    None
}

/// The platform bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// Signs URLs that let a tenant's own HTTP client upload without Hangar's credentials (S3,
    /// GCS, Azure; not a local folder).
    signer: Option<Arc<dyn Signer>>,
    /// `scheme://bucket` (no prefix, no options): how tenants' own tools name it.
    base: String,
    /// The bucket's prefix under which the platform keeps its files.
    root: ObjectPath,
    /// The folder of a local bucket: listing it when it is gone (an unmounted volume, a
    /// deleted folder) is an error, never an empty bucket that would delete every DAG.
    folder: Option<PathBuf>,
    /// The same store as `store` for a local bucket, to name an object's file.
    local: Option<Arc<object_store::local::LocalFileSystem>>,
}

/// A URL fit for an error: its options may hold keys, so they are left out.
fn shown(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

fn bad(url: &str, reason: impl Into<String>) -> BucketError {
    BucketError::Url {
        url: shown(url),
        reason: reason.into(),
    }
}

impl Bucket {
    /// The bucket a URL names (see the module's documentation).
    pub fn from_url(url: &str) -> Result<Self, BucketError> {
        let parsed = url::Url::parse(url).map_err(|e| bad(url, e.to_string()))?;
        let options: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let scheme = parsed.scheme().to_owned();
        if scheme == "file" {
            if !options.is_empty() {
                return Err(bad(url, "a file:// bucket takes no options"));
            }
            let dir = parsed
                .to_file_path()
                .map_err(|()| bad(url, "a file:// URL needs an absolute path"))?;
            return Self::local(dir);
        }
        let container = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad(url, "it names no bucket or container"))?
            .to_owned();
        let root = ObjectPath::parse(parsed.path().trim_matches('/'))
            .map_err(|e| bad(url, e.to_string()))?;
        let unknown = |key: &str| BucketError::UnknownOption {
            scheme: scheme.clone(),
            key: key.to_owned(),
        };
        let (store, signer): (Arc<dyn ObjectStore>, Arc<dyn Signer>) = match scheme.as_str() {
            "s3" | "s3a" => {
                let mut b =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&container);
                for (k, v) in &options {
                    b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
                }
                let s = Arc::new(b.build()?);
                (s.clone(), s)
            }
            "gs" => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&container);
                for (k, v) in &options {
                    b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
                }
                let s = Arc::new(b.build()?);
                (s.clone(), s)
            }
            "az" | "azure" | "abfs" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&container);
                for (k, v) in &options {
                    b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
                }
                let s = Arc::new(b.build()?);
                (s.clone(), s)
            }
            other => {
                return Err(bad(
                    url,
                    format!("unknown scheme {other:?}; use file://, s3://, gs:// or az://"),
                ))
            }
        };
        Ok(Self {
            store,
            signer: Some(signer),
            base: format!("{scheme}://{container}"),
            root,
            folder: None,
            local: None,
        })
    }

    /// A bucket in a local folder (made if missing).
    pub fn local(dir: PathBuf) -> Result<Self, BucketError> {
        std::fs::create_dir_all(&dir).map_err(|source| BucketError::Folder {
            path: dir.clone(),
            source,
        })?;
        let store = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(&dir)?
                .with_automatic_cleanup(true),
        );
        Ok(Self {
            store: store.clone(),
            signer: None,
            base: format!("file://{}", dir.display()),
            root: ObjectPath::default(),
            folder: Some(dir),
            local: Some(store),
        })
    }

    /// In a local-folder bucket, what stands in the way of writing `location`: a file where
    /// one of its folders must be (`NotADirectory`), or a folder at its place (`IsADirectory`).
    /// An object store has no such clash (`None`).
    pub fn clash(&self, location: &ObjectPath) -> Option<std::io::ErrorKind> {
        let (folder, local) = (self.folder.as_ref()?, self.local.as_ref()?);
        let file = local.path_to_filesystem(location).ok()?;
        if file.is_dir() {
            return Some(std::io::ErrorKind::IsADirectory);
        }
        let mut at = file.parent();
        while let Some(dir) = at.filter(|d| d.starts_with(folder) && *d != folder.as_path()) {
            if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
                return Some(std::io::ErrorKind::NotADirectory);
            }
            at = dir.parent();
        }
        None
    }

    /// The bucket's prefix in its store: every key is under it.
    pub fn root(&self) -> &ObjectPath {
        &self.root
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Reads `requirements.txt` of an environment's prefix into `last` (its ETag and text)
    /// when its ETag changed; `last` becomes `None` when there is none. A failure is logged and
    /// keeps what was read before.
    pub async fn read_requirements(
        &self,
        tenant: &str,
        env: &str,
        last: &mut Option<(Option<String>, String)>,
    ) {
        let path = self.path(&layout::requirements_key(tenant, env));
        match self.store().head(&path).await {
            Ok(meta) => {
                let known = last.as_ref().map(|(tag, _)| tag);
                if known != Some(&meta.e_tag) || meta.e_tag.is_none() {
                    match self.get(&path).await {
                        Ok(b) => {
                            let text = String::from_utf8_lossy(&b).into_owned();
                            *last = Some((meta.e_tag, text));
                        }
                        Err(e) => tracing::warn!(error = %e, "failed to read requirements.txt"),
                    }
                }
            }
            Err(object_store::Error::NotFound { .. }) => *last = None,
            Err(e) => tracing::warn!(error = %e, "failed to look up requirements.txt"),
        }
    }

    /// Where a key of the bucket's layout ([`hangar_tenants::bucket_layout`]) is in the store.
    pub fn path(&self, key: &layout::Key) -> ObjectPath {
        key.segments()
            .iter()
            .fold(self.root.clone(), |p, part| p.join(part.as_str()))
    }

    /// The prefix an environment owns.
    pub fn env_prefix(&self, tenant: &str, env: &str) -> ObjectPath {
        self.path(&layout::env_prefix(tenant, env))
    }

    /// An environment's `dags/` prefix.
    pub fn dags_prefix(&self, tenant: &str, env: &str) -> ObjectPath {
        self.path(&layout::dags_prefix(tenant, env))
    }

    /// A prefix as tenants' own tools name it (`s3://bucket/…/dags/`).
    pub fn url_of(&self, prefix: &ObjectPath) -> String {
        format!("{}/{prefix}/", self.base)
    }

    /// `prefix` + a relative, already validated path (`a/b.py`).
    pub fn child(prefix: &ObjectPath, rel: &str) -> ObjectPath {
        rel.split('/')
            .filter(|s| !s.is_empty())
            .fold(prefix.clone(), |p, part| p.join(part))
    }

    /// A URL that lets its holder `PUT` one object for `expires_in`, signed with the platform's
    /// credentials; `None` for a local-folder bucket, which has no URLs.
    pub async fn signed_put_url(
        &self,
        path: &ObjectPath,
        expires_in: std::time::Duration,
    ) -> Result<Option<url::Url>, BucketError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(object_store::signer::Method::PUT, path, expires_in)
            .await?;
        Ok(Some(url))
    }

    /// Writes an object whole (stores make it visible atomically: readers see the old or the
    /// new content, never a part).
    pub async fn put(&self, path: &ObjectPath, bytes: bytes::Bytes) -> Result<(), BucketError> {
        self.store.put(path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<bytes::Bytes, BucketError> {
        Ok(self.store.get(path).await?.bytes().await?)
    }

    pub async fn delete(&self, path: &ObjectPath) -> Result<(), BucketError> {
        self.store.delete(path).await?;
        Ok(())
    }

    /// Every object under `prefix`, with the ETag, size and modification time the sync
    /// compares (one listing, paged by the store).
    pub async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>, BucketError> {
        if let Some(folder) = &self.folder {
            if !folder.is_dir() {
                return Err(BucketError::Gone {
                    path: folder.clone(),
                });
            }
        }
        Ok(self.store.list(Some(prefix)).try_collect().await?)
    }

    /// An object's path relative to `prefix` (`a/b.py`), as the bucket spells it.
    pub fn relative(prefix: &ObjectPath, path: &ObjectPath) -> Option<String> {
        let parts: Vec<String> = path
            .prefix_match(prefix)?
            .map(|p| p.as_ref().to_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_name_their_store_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let local = Bucket::from_url(&format!("file://{}", dir.path().display())).unwrap();
        assert_eq!(
            local.url_of(&local.dags_prefix("t", "e")),
            format!(
                "file://{}/tenants/t/environments/e/dags/",
                dir.path().display()
            )
        );
        let s3 = Bucket::from_url(
            "s3://platform/hangar?endpoint=http://127.0.0.1:9&allow_http=true&region=eu-west-1",
        )
        .unwrap();
        assert_eq!(
            s3.url_of(&s3.dags_prefix("t", "e")),
            "s3://platform/hangar/tenants/t/environments/e/dags/"
        );
        for (url, says) in [
            ("ftp://x/y", "unknown scheme"),
            ("s3:///prefix", "names no bucket"),
            ("file://relative", "absolute path"),
            ("not a url", "not valid"),
        ] {
            let e = Bucket::from_url(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let e = Bucket::from_url("s3://b?no_such_option=1").unwrap_err();
        assert!(e.to_string().contains("no_such_option"), "{e}");
    }

    #[tokio::test]
    async fn a_local_bucket_round_trips_and_lists_with_etags() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bucket::local(dir.path().to_owned()).unwrap();
        let dags = b.dags_prefix("t", "e");
        b.put(&Bucket::child(&dags, "team/etl.py"), "x = 1\n".into())
            .await
            .unwrap();
        assert_eq!(
            b.get(&Bucket::child(&dags, "team/etl.py")).await.unwrap(),
            "x = 1\n"
        );
        let listed = b.list(&dags).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            Bucket::relative(&dags, &listed[0].location).as_deref(),
            Some("team/etl.py")
        );
        assert!(listed[0].e_tag.is_some());
        b.delete(&Bucket::child(&dags, "team/etl.py"))
            .await
            .unwrap();
        assert!(b.list(&dags).await.unwrap().is_empty());
        let missing = b.get(&Bucket::child(&dags, "nope.py")).await.unwrap_err();
        assert!(missing.is_not_found());
    }
}

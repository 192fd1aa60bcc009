//! Browser sessions on an environment's Airflow UI (MWAA's CreateWebLoginToken): a caller with a
//! Hangar token asks for a web login token (valid a minute), the browser opens the login URL
//! with it once and receives a session cookie (valid 12 hours) for that one environment: on
//! the environment's own UI origin with `HANGAR_UI_DOMAIN` (`crate::ui_domain`), else scoped to
//! its Airflow path on the control plane's origin. Both are sealed under the master key, so
//! every control-plane replica accepts them; the session names the token
//! it came from (by hash, never the secret), so a revoked token or a lowered role ends its
//! sessions too (within the principal cache's lifetime).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use hangar_tenants::api::{Role, WebLoginToken};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ServiceError, Services, StoreContext};
use crate::auth::{Actor, Credential, Principal, TokenKind};

/// The session cookie's name.
pub const WEB_SESSION_COOKIE: &str = "hangar_web";
/// How long a web login token may wait before the browser uses it.
pub const WEB_LOGIN_TTL_SECS: i64 = 60;
/// How long a browser session lasts.
pub const WEB_SESSION_TTL_SECS: i64 = 12 * 3600;

/// Where a web login token is exchanged for a session: this path on the control plane's
/// origin, or on the environment's own UI origin (where Airflow never serves it: its paths are
/// all under `webserver_path`).
pub fn web_login_path(tenant: &str, env: &str) -> String {
    format!("/v1/tenants/{tenant}/environments/{env}/web-login")
}

const LOGIN_PURPOSE: &[u8] = b"hangar web login token v1";
const CLI_PURPOSE: &[u8] = b"hangar mwaa cli token v1";
/// How long an MWAA CLI token is good for (MWAA's own is short-lived too).
pub const CLI_TOKEN_TTL_SECS: i64 = 60;
const SESSION_PURPOSE: &[u8] = b"hangar web session v1";

/// What a web login token and a session cookie carry.
#[derive(Debug, Serialize, Deserialize)]
struct WebClaims {
    tenant: String,
    env: String,
    kind: TokenKind,
    /// The SHA-256 of the token that asked, URL-safe base64.
    token_hash: String,
    /// Unix seconds.
    exp: i64,
    /// A session opened on the environment's own UI origin, accepted only there (and one
    /// opened on the control plane's origin only there).
    #[serde(default)]
    ui_host: bool,
}

impl Services {
    fn seal_claims(&self, purpose: &[u8], claims: &WebClaims) -> Result<String, ServiceError> {
        let plain = serde_json::to_vec(claims).map_err(|e| ServiceError::Corrupt {
            action: "encode a web session",
            message: e.to_string(),
        })?;
        let sealed =
            self.master_key
                .seal_bytes(purpose, &plain)
                .ok_or_else(|| ServiceError::Corrupt {
                    action: "seal a web session",
                    message: "encryption failed".to_owned(),
                })?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a sealed token of `purpose`, whatever it is for, or says it is not one, naming
    /// `field`.
    fn unseal(
        &self,
        purpose: &[u8],
        field: &'static str,
        sealed: &str,
    ) -> Result<WebClaims, ServiceError> {
        URL_SAFE_NO_PAD
            .decode(sealed.trim())
            .ok()
            .and_then(|blob| self.master_key.open_bytes(purpose, &blob))
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(|| ServiceError::BadCredential {
                field,
                message: format!(
                    "the {field} is not valid (malformed, tampered with or from elsewhere)"
                ),
            })
    }

    /// The caller a token was issued to, resolved again now (it may have been revoked since:
    /// `gone` says so, naming `field`).
    async fn claims_actor(
        &self,
        claims: &WebClaims,
        field: &'static str,
        gone: &str,
        request_id: Option<String>,
    ) -> Result<Actor, ServiceError> {
        let hash = URL_SAFE_NO_PAD
            .decode(&claims.token_hash)
            .map_err(|_| ServiceError::Unauthenticated)?;
        let principal = self
            .principal_of(claims.kind, &hash)
            .await
            .map_err(|e| match e {
                ServiceError::Unauthenticated => ServiceError::BadCredential {
                    field,
                    message: gone.to_owned(),
                },
                other => other,
            })?;
        if matches!(principal, Principal::Cell { .. }) {
            return Err(ServiceError::Unauthenticated);
        }
        Ok(Actor {
            principal,
            request_id,
            credential: Credential {
                kind: claims.kind,
                hash,
            },
        })
    }

    /// Opens a sealed token for `tenant`/`env`, or says why not, naming `field`.
    fn open_claims(
        &self,
        purpose: &[u8],
        field: &'static str,
        tenant: &str,
        env: &str,
        sealed: &str,
    ) -> Result<WebClaims, ServiceError> {
        let refused = |why: &str| ServiceError::BadCredential {
            field,
            message: format!("the {field} {why}"),
        };
        let claims = self.unseal(purpose, field, sealed)?;
        if claims.tenant != tenant || claims.env != env {
            return Err(refused("was issued for another environment"));
        }
        if claims.exp <= Utc::now().timestamp() {
            return Err(refused("has expired; ask for a new web login token"));
        }
        Ok(claims)
    }

    /// Where the environment's UI is: its own origin (`https://etl--data.ui.example.com/`) with
    /// `HANGAR_UI_DOMAIN` and a name that can have one, else its path on this API.
    /// `path`: where its Airflow is served on this API (`environments::airflow_path`).
    pub fn webserver_url(&self, tenant: &str, env: &str, path: &str) -> String {
        match self.ui_origin(tenant, env) {
            Some(origin) => format!("{origin}/"),
            None => path.to_owned(),
        }
    }

    /// The tenant and name of the live environment `id` whose Airflow is served under an
    /// id-named path (one that took over a prepared environment); any other id is not found.
    pub async fn airflow_names_by_id(&self, id: &str) -> Result<(String, String), ServiceError> {
        let missing = || ServiceError::not_found("environment", id);
        let id = uuid::Uuid::parse_str(id).map_err(|_| missing())?;
        let mut conn = self
            .db
            .pool
            .acquire()
            .await
            .store("connect to the database")?;
        let row = crate::persistence::environments::by_id(&mut conn, id)
            .await
            .store("read an environment")?
            .filter(|r| r.phase != hangar_tenants::Phase::Deleted.as_str())
            .filter(|r| r.airflow_path.is_some())
            .ok_or_else(missing)?;
        Ok((row.tenant, row.name))
    }

    /// Where a live environment's Airflow is served on this API (`environments::airflow_path`).
    pub async fn airflow_path_of(&self, tenant: &str, env: &str) -> Result<String, ServiceError> {
        let t = crate::persistence::tenants::by_name(&self.db.pool, tenant)
            .await
            .store("look up a tenant")?
            .ok_or_else(|| ServiceError::not_found("environment", env))?;
        let t = super::TenantRef {
            id: t.id,
            name: t.name,
        };
        let row = self.live_environment(&t, env).await?;
        Ok(super::environments::airflow_path(&row))
    }

    /// The environment's own UI origin, if it has one.
    pub fn ui_origin(&self, tenant: &str, env: &str) -> Option<String> {
        self.ui_domain.as_ref()?.origin_of(tenant, env)
    }

    /// A web login token for the environment's Airflow UI, with the caller's own rights.
    pub async fn create_web_login(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
    ) -> Result<WebLoginToken, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let row = self.live_environment(&t, env).await?;
        let path = super::environments::airflow_path(&row);
        let exp = Utc::now() + chrono::Duration::seconds(WEB_LOGIN_TTL_SECS);
        let web_token = self.seal_claims(
            LOGIN_PURPOSE,
            &WebClaims {
                tenant: t.name.clone(),
                env: env.to_owned(),
                kind: actor.credential.kind,
                token_hash: URL_SAFE_NO_PAD.encode(&actor.credential.hash),
                exp: exp.timestamp(),
                ui_host: false,
            },
        )?;
        self.audit(
            actor,
            &t,
            "environment.web_login",
            &format!("{}/environments/{env}", t.name),
            json!({ "expires_at": exp }),
        )
        .await?;
        Ok(WebLoginToken {
            login_url: format!(
                "{}{}?token={web_token}",
                self.ui_origin(&t.name, env).unwrap_or_default(),
                web_login_path(&t.name, env)
            ),
            web_token,
            webserver_url: self.webserver_url(&t.name, env, &path),
            expires_at: exp,
        })
    }

    /// Exchanges a web login token, once, for a session cookie's value: for the environment's
    /// own UI host when `on_ui_host`, else for its path on the control plane's origin.
    /// The tenant and environment a web login token is for (it stays unused: the environment's
    /// web login exchanges it).
    pub fn web_login_target(&self, token: &str) -> Result<(String, String), ServiceError> {
        let claims = self.unseal(LOGIN_PURPOSE, "token", token)?;
        Ok((claims.tenant, claims.env))
    }

    /// Each token opens one session, whichever replica it reaches (`used_web_logins`): one
    /// seen in a browser's history, a proxy's log or over a shoulder is of no use afterwards.
    pub async fn open_web_login(
        &self,
        tenant: &str,
        env: &str,
        token: &str,
        on_ui_host: bool,
    ) -> Result<String, ServiceError> {
        let claims = self.open_claims(LOGIN_PURPOSE, "token", tenant, env, token)?;
        let blob = URL_SAFE_NO_PAD.decode(token.trim()).unwrap_or_default();
        let now = Utc::now().timestamp();
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
        let first = crate::persistence::web_logins::first_use(
            &self.db.pool,
            &Sha256::digest(&blob),
            expires_at,
        )
        .await
        .store("record a web login's use")?;
        if !first {
            return Err(ServiceError::BadCredential {
                field: "token",
                message: "the token was used already; ask for a new web login token".to_owned(),
            });
        }
        self.seal_claims(
            SESSION_PURPOSE,
            &WebClaims {
                exp: now + WEB_SESSION_TTL_SECS,
                ui_host: on_ui_host,
                ..claims
            },
        )
    }

    /// An MWAA CLI token (`CreateCliToken`): good for 60 s, for one environment, for
    /// `POST /aws_mwaa/cli` with the caller's own rights (resolved again when it is used).
    pub async fn create_cli_token(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
    ) -> Result<String, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        self.live_environment(&t, env).await?;
        self.seal_claims(
            CLI_PURPOSE,
            &WebClaims {
                tenant: t.name,
                env: env.to_owned(),
                kind: actor.credential.kind,
                token_hash: URL_SAFE_NO_PAD.encode(&actor.credential.hash),
                exp: Utc::now().timestamp() + CLI_TOKEN_TTL_SECS,
                ui_host: false,
            },
        )
    }

    /// The caller behind an MWAA CLI token, and the tenant and environment it is for.
    pub async fn cli_token_actor(
        &self,
        sealed: &str,
        request_id: Option<String>,
    ) -> Result<(Actor, String, String), ServiceError> {
        let claims = self.unseal(CLI_PURPOSE, "CliToken", sealed)?;
        if claims.exp <= Utc::now().timestamp() {
            return Err(ServiceError::BadCredential {
                field: "CliToken",
                message: "the CliToken has expired; ask for a new one".to_owned(),
            });
        }
        let actor = self
            .claims_actor(
                &claims,
                "CliToken",
                "the CliToken was issued to a key or token that is no longer valid",
                request_id,
            )
            .await?;
        Ok((actor, claims.tenant, claims.env))
    }

    /// The caller behind a session cookie, for the environment (and the origin: its own UI
    /// host, or the control plane's) it was issued for only.
    pub async fn web_session_actor(
        &self,
        tenant: &str,
        env: &str,
        cookie: &str,
        on_ui_host: bool,
        request_id: Option<String>,
    ) -> Result<Actor, ServiceError> {
        let claims = self.open_claims(SESSION_PURPOSE, WEB_SESSION_COOKIE, tenant, env, cookie)?;
        if claims.ui_host != on_ui_host {
            return Err(ServiceError::BadCredential {
                field: WEB_SESSION_COOKIE,
                message: format!("the {WEB_SESSION_COOKIE} was issued for another origin"),
            });
        }
        self.claims_actor(
            &claims,
            WEB_SESSION_COOKIE,
            "the token this session was opened with is no longer valid",
            request_id,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn claims_round_trip_only_for_their_purpose() {
        let key = crate::secrets::MasterKey::parse(&crate::secrets::MasterKey::generate()).unwrap();
        let plain = serde_json::to_vec(&WebClaims {
            tenant: "t".into(),
            env: "e".into(),
            kind: TokenKind::Tenant,
            token_hash: "h".into(),
            exp: 1,
            ui_host: false,
        })
        .unwrap();
        let sealed = key.seal_bytes(LOGIN_PURPOSE, &plain).unwrap();
        assert_eq!(key.open_bytes(LOGIN_PURPOSE, &sealed).unwrap(), plain);
        assert!(
            key.open_bytes(SESSION_PURPOSE, &sealed).is_none(),
            "a login token is not a session"
        );
    }
}

//! Browser sessions on an environment's Airflow UI (MWAA's CreateWebLoginToken): a caller with a
//! Hangar token asks for a web login token (valid a minute), the browser opens the login URL
//! with it and receives a session cookie (valid 12 hours) scoped to that one environment's
//! Airflow path. Both are sealed under the master key, so every control-plane replica accepts
//! them without shared state; the session names the token it came from (by hash, never the
//! secret), so a revoked token or a lowered role ends its sessions too (within the principal
//! cache's lifetime).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use hangar_tenants::api::{webserver_path, Role, WebLoginToken};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ServiceError, Services};
use crate::auth::{Actor, Credential, Principal, TokenKind};

/// The session cookie's name.
pub const WEB_SESSION_COOKIE: &str = "hangar_web";
/// How long a web login token may wait before the browser uses it.
pub const WEB_LOGIN_TTL_SECS: i64 = 60;
/// How long a browser session lasts.
pub const WEB_SESSION_TTL_SECS: i64 = 12 * 3600;

const LOGIN_PURPOSE: &[u8] = b"hangar web login token v1";
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
        let claims: WebClaims = URL_SAFE_NO_PAD
            .decode(sealed.trim())
            .ok()
            .and_then(|blob| self.master_key.open_bytes(purpose, &blob))
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(|| refused("is not valid (malformed, tampered with or from elsewhere)"))?;
        if claims.tenant != tenant || claims.env != env {
            return Err(refused("was issued for another environment"));
        }
        if claims.exp <= Utc::now().timestamp() {
            return Err(refused("has expired; ask for a new web login token"));
        }
        Ok(claims)
    }

    /// A web login token for the environment's Airflow UI, with the caller's own rights.
    pub async fn create_web_login(
        &self,
        actor: &Actor,
        tenant: &str,
        env: &str,
    ) -> Result<WebLoginToken, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        self.live_environment(&t, env).await?;
        let exp = Utc::now() + chrono::Duration::seconds(WEB_LOGIN_TTL_SECS);
        let web_token = self.seal_claims(
            LOGIN_PURPOSE,
            &WebClaims {
                tenant: t.name.clone(),
                env: env.to_owned(),
                kind: actor.credential.kind,
                token_hash: URL_SAFE_NO_PAD.encode(&actor.credential.hash),
                exp: exp.timestamp(),
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
                "/v1/tenants/{}/environments/{env}/web-login?token={web_token}",
                t.name
            ),
            web_token,
            webserver_url: webserver_path(&t.name, env),
            expires_at: exp,
        })
    }

    /// Exchanges a web login token for a session cookie's value.
    pub fn open_web_login(
        &self,
        tenant: &str,
        env: &str,
        token: &str,
    ) -> Result<String, ServiceError> {
        let claims = self.open_claims(LOGIN_PURPOSE, "token", tenant, env, token)?;
        self.seal_claims(
            SESSION_PURPOSE,
            &WebClaims {
                exp: Utc::now().timestamp() + WEB_SESSION_TTL_SECS,
                ..claims
            },
        )
    }

    /// The caller behind a session cookie, for the environment it was issued for only.
    pub async fn web_session_actor(
        &self,
        tenant: &str,
        env: &str,
        cookie: &str,
        request_id: Option<String>,
    ) -> Result<Actor, ServiceError> {
        let claims = self.open_claims(SESSION_PURPOSE, WEB_SESSION_COOKIE, tenant, env, cookie)?;
        let hash = URL_SAFE_NO_PAD
            .decode(&claims.token_hash)
            .map_err(|_| ServiceError::Unauthenticated)?;
        let principal = self
            .principal_of(claims.kind, &hash)
            .await
            .map_err(|e| match e {
                ServiceError::Unauthenticated => ServiceError::BadCredential {
                    field: WEB_SESSION_COOKIE,
                    message: "the token this session was opened with is no longer valid".to_owned(),
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

//! The portal's browser sessions: signing in with a token (or a one-time link from
//! `hangar portal-login`), the session behind a cookie, and signing out. Sessions live in
//! Postgres (`portal_sessions`), so any control-plane replica serves them and signing out ends
//! one at once; each names the token it was opened with (by hash), so revoking that token or
//! lowering its role ends or narrows its sessions too (within the principal cache's lifetime).

use chrono::{DateTime, Utc};
use hangar_tenants::api::{PortalLoginLink, Role};
use hangar_tenants::FieldError;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::json;

use super::{ServiceError, Services, StoreContext};
use crate::auth::{self, Actor, Credential, Principal, TokenKind};
use crate::persistence::portal as store;

/// The session cookie's name.
pub const PORTAL_SESSION_COOKIE: &str = "hangar_portal";
/// How long a portal session lasts.
pub const PORTAL_SESSION_TTL_SECS: i64 = 12 * 3600;
/// How long a sign-in link may wait before the browser opens it.
pub const PORTAL_LINK_TTL_SECS: i64 = 300;
/// The prefix of a sign-in link's secret.
const LINK_PREFIX: &str = "hgl_";

/// A session just opened: the cookie's value and where the browser goes first.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    pub cookie: String,
    pub landing: String,
}

/// The caller behind a session cookie, and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct PortalSession {
    pub actor: Actor,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    /// The cookie's value, so long-lived answers (live updates) can check the session again.
    pub cookie: String,
}

impl PortalSession {
    /// Whether `sent` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, sent: &str) -> bool {
        auth::same_hash(sent.as_bytes(), self.csrf_token.as_bytes())
    }
}

/// Where a principal lands after signing in.
fn landing(principal: &Principal, tenant: Option<&str>) -> String {
    match (principal, tenant) {
        (_, Some(t)) => format!("/tenants/{t}"),
        (Principal::Tenant { tenant, .. }, None) => format!("/tenants/{tenant}"),
        _ => "/admin".to_owned(),
    }
}

impl Services {
    /// Signs in with a token typed into the login form: a tenant's token or the platform
    /// admin's. Cell tokens do not open portal sessions.
    pub async fn portal_sign_in(
        &self,
        token: &str,
        request_id: Option<String>,
    ) -> Result<OpenedSession, ServiceError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(FieldError::new("token", "is required: paste a Hangar token").into());
        }
        let credential = Credential {
            kind: TokenKind::of(token),
            hash: auth::hash(token),
        };
        let principal = self.portal_principal(&credential, "token").await?;
        let actor = Actor {
            principal,
            request_id,
            credential,
        };
        self.open_portal_session(&actor, None).await
    }

    /// The principal a credential stands for, if it may use the portal.
    async fn portal_principal(
        &self,
        credential: &Credential,
        field: &'static str,
    ) -> Result<Principal, ServiceError> {
        let refused = |message: &str| ServiceError::BadCredential {
            field,
            message: message.to_owned(),
        };
        match self.principal_of(credential.kind, &credential.hash).await {
            Ok(Principal::Cell { .. }) => Err(refused(
                "a cell's token cannot sign in to the portal; use a tenant's token",
            )),
            Ok(p) => Ok(p),
            Err(ServiceError::Unauthenticated) => {
                Err(refused("this token is unknown, revoked or mistyped"))
            }
            Err(e) => Err(e),
        }
    }

    async fn open_portal_session(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
    ) -> Result<OpenedSession, ServiceError> {
        // Expired sessions and links are forgotten as new ones open.
        store::delete_expired(&self.db.pool)
            .await
            .store("forget expired portal sessions")?;
        let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 43);
        let csrf = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
        let expires_at = Utc::now() + chrono::Duration::seconds(PORTAL_SESSION_TTL_SECS);
        store::insert_session(
            &self.db.pool,
            store::NewSession {
                secret_hash: &auth::hash(&secret),
                csrf_token: &csrf,
                credential_kind: actor.credential.kind.as_str(),
                credential_hash: &actor.credential.hash,
                expires_at,
            },
        )
        .await
        .store("open a portal session")?;
        if let Principal::Tenant { tenant, .. } = &actor.principal {
            let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
            self.audit(
                actor,
                &t,
                "portal.sign_in",
                &t.name,
                json!({ "expires_at": expires_at }),
            )
            .await?;
        }
        Ok(OpenedSession {
            cookie: secret,
            landing: landing(&actor.principal, tenant),
        })
    }

    /// The caller behind a portal session cookie; `Unauthenticated` when the session is
    /// unknown, signed out or expired, or its token was revoked.
    pub async fn portal_session(
        &self,
        cookie: &str,
        request_id: Option<String>,
    ) -> Result<PortalSession, ServiceError> {
        let row = store::session(&self.db.pool, &auth::hash(cookie))
            .await
            .store("read a portal session")?
            .ok_or(ServiceError::Unauthenticated)?;
        let kind = TokenKind::parse(&row.credential_kind).ok_or_else(|| ServiceError::Corrupt {
            action: "read a portal session",
            message: format!("unknown credential kind {:?}", row.credential_kind),
        })?;
        let principal = match self.principal_of(kind, &row.credential_hash).await? {
            Principal::Cell { .. } => return Err(ServiceError::Unauthenticated),
            p => p,
        };
        Ok(PortalSession {
            actor: Actor {
                principal,
                request_id,
                credential: Credential {
                    kind,
                    hash: row.credential_hash,
                },
            },
            csrf_token: row.csrf_token,
            cookie: cookie.to_owned(),
            expires_at: row.expires_at,
        })
    }

    /// Ends the session of that cookie (nothing happens for an unknown one).
    pub async fn portal_sign_out(&self, cookie: &str) -> Result<(), ServiceError> {
        store::delete_session(&self.db.pool, &auth::hash(cookie))
            .await
            .store("end a portal session")
    }

    /// A one-time link that signs a browser in to the portal with the caller's own rights,
    /// landing on the tenant's page.
    pub async fn create_portal_link(
        &self,
        actor: &Actor,
        tenant: &str,
    ) -> Result<PortalLoginLink, ServiceError> {
        let t = self.authorize_tenant(actor, tenant, Role::Viewer).await?;
        let secret = auth::generate(LINK_PREFIX);
        let expires_at = Utc::now() + chrono::Duration::seconds(PORTAL_LINK_TTL_SECS);
        store::insert_link(
            &self.db.pool,
            store::NewLink {
                secret_hash: &secret.hash,
                credential_kind: actor.credential.kind.as_str(),
                credential_hash: &actor.credential.hash,
                tenant: Some(&t.name),
                expires_at,
            },
        )
        .await
        .store("store a portal sign-in link")?;
        self.audit(
            actor,
            &t,
            "portal.login_link",
            &t.name,
            json!({ "expires_at": expires_at }),
        )
        .await?;
        Ok(PortalLoginLink {
            login_path: format!("/login/link?token={}", secret.secret),
            expires_at,
        })
    }

    /// Opens a session from a sign-in link, once.
    pub async fn redeem_portal_link(
        &self,
        token: &str,
        request_id: Option<String>,
    ) -> Result<OpenedSession, ServiceError> {
        let used = || {
            ServiceError::BadCredential {
            field: "token",
            message: "this sign-in link was used already, has expired or is not one; ask for a new one with `hangar portal-login`".to_owned(),
        }
        };
        if !token.starts_with(LINK_PREFIX) {
            return Err(used());
        }
        let link = store::take_link(&self.db.pool, &auth::hash(token))
            .await
            .store("use a portal sign-in link")?
            .ok_or_else(used)?;
        let kind = TokenKind::parse(&link.credential_kind).ok_or_else(used)?;
        let credential = Credential {
            kind,
            hash: link.credential_hash,
        };
        let principal = self.portal_principal(&credential, "token").await?;
        let actor = Actor {
            principal,
            request_id,
            credential,
        };
        self.open_portal_session(&actor, link.tenant.as_deref())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_land_on_the_admin_page_and_tenants_on_theirs() {
        let tenant = Principal::Tenant {
            token_id: uuid::Uuid::nil(),
            tenant_id: uuid::Uuid::nil(),
            tenant: "acme".into(),
            role: Role::Viewer,
        };
        assert_eq!(landing(&tenant, None), "/tenants/acme");
        assert_eq!(landing(&Principal::PlatformAdmin, None), "/admin");
        assert_eq!(
            landing(&Principal::PlatformAdmin, Some("acme")),
            "/tenants/acme"
        );
    }

    #[test]
    fn token_kinds_round_trip_through_their_stored_names() {
        for k in [
            TokenKind::Tenant,
            TokenKind::Cell,
            TokenKind::AccessKey,
            TokenKind::Other,
        ] {
            assert_eq!(TokenKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(TokenKind::parse("admin"), None);
    }
}

//! Queries on `portal_sessions` and `portal_login_links` (the portal's server-side browser
//! sessions and one-time sign-in links; secrets kept only as SHA-256 hashes).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A live session: the credential it was opened with and its CSRF token.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub csrf_token: String,
    pub credential_kind: String,
    pub credential_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

pub struct NewSession<'a> {
    pub secret_hash: &'a [u8],
    pub csrf_token: &'a str,
    pub credential_kind: &'a str,
    pub credential_hash: &'a [u8],
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_session(pool: &PgPool, s: NewSession<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO portal_sessions (secret_hash, csrf_token, credential_kind, credential_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        s.secret_hash,
        s.csrf_token,
        s.credential_kind,
        s.credential_hash,
        s.expires_at
    )
    .execute(pool)
    .await
    .map(drop)
}

/// The session of that secret, unless it expired.
pub async fn session(pool: &PgPool, secret_hash: &[u8]) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as!(
        SessionRow,
        "SELECT csrf_token, credential_kind, credential_hash, expires_at FROM portal_sessions
         WHERE secret_hash = $1 AND expires_at > now()",
        secret_hash
    )
    .fetch_optional(pool)
    .await
}

pub async fn delete_session(pool: &PgPool, secret_hash: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM portal_sessions WHERE secret_hash = $1",
        secret_hash
    )
    .execute(pool)
    .await
    .map(drop)
}

/// Forgets expired sessions and links.
pub async fn delete_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let sessions = sqlx::query!("DELETE FROM portal_sessions WHERE expires_at <= now()")
        .execute(pool)
        .await?
        .rows_affected();
    let links = sqlx::query!("DELETE FROM portal_login_links WHERE expires_at <= now()")
        .execute(pool)
        .await?
        .rows_affected();
    Ok(sessions + links)
}

pub struct NewLink<'a> {
    pub secret_hash: &'a [u8],
    pub credential_kind: &'a str,
    pub credential_hash: &'a [u8],
    pub tenant: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_link(pool: &PgPool, l: NewLink<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO portal_login_links (secret_hash, credential_kind, credential_hash, tenant, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        l.secret_hash,
        l.credential_kind,
        l.credential_hash,
        l.tenant,
        l.expires_at
    )
    .execute(pool)
    .await
    .map(drop)
}

/// A sign-in link's credential and tenant, used up by reading it (`None` when unknown, used
/// or expired).
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub credential_kind: String,
    pub credential_hash: Vec<u8>,
    pub tenant: Option<String>,
}

pub async fn take_link(pool: &PgPool, secret_hash: &[u8]) -> Result<Option<LinkRow>, sqlx::Error> {
    sqlx::query_as!(
        LinkRow,
        "DELETE FROM portal_login_links WHERE secret_hash = $1 AND expires_at > now()
         RETURNING credential_kind, credential_hash, tenant",
        secret_hash
    )
    .fetch_optional(pool)
    .await
}

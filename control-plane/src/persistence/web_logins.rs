//! Queries on `used_web_logins`: the web login tokens already exchanged for a session.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Records the use of the web login token whose hash is `hash` (good until `expires_at`);
/// false if it was used already. Forgets expired tokens on the way.
pub async fn first_use(
    pool: &PgPool,
    hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query!("DELETE FROM used_web_logins WHERE expires_at < now()")
        .execute(pool)
        .await?;
    let recorded = sqlx::query!(
        "INSERT INTO used_web_logins (hash, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        hash,
        expires_at
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(recorded == 1)
}

//! Queries on `mwaa_fields`: what the MWAA-compatible API was given for an environment that
//! Hangar keeps without using.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub async fn get(
    pool: &PgPool,
    environment_id: Uuid,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT fields FROM mwaa_fields WHERE environment_id = $1",
        environment_id
    )
    .fetch_optional(pool)
    .await
}

/// Merges `fields` into the environment's (a field given again replaces the old value).
pub async fn merge(
    conn: &mut PgConnection,
    environment_id: Uuid,
    fields: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO mwaa_fields (environment_id, fields) VALUES ($1, $2)
         ON CONFLICT (environment_id) DO UPDATE SET fields = mwaa_fields.fields || EXCLUDED.fields",
        environment_id,
        fields
    )
    .execute(conn)
    .await?;
    Ok(())
}

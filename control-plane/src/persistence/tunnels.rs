//! Queries on `cell_tunnels`: which control-plane replica holds each cell's tunnel, and the
//! address of its relay (`crate::relay`).

use sqlx::PgPool;
use uuid::Uuid;

/// A cell's tunnel as another replica finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub replica: Uuid,
    /// `host:port` of the replica's relay listener.
    pub relay: String,
}

/// Records that `replica` holds `cell`'s tunnel (its `generation`th), replacing whatever
/// replica held it before.
pub async fn claim(
    pool: &PgPool,
    cell: Uuid,
    replica: Uuid,
    generation: i64,
    relay: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO cell_tunnels (cell_id, replica, generation, relay, seen_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (cell_id) DO UPDATE
           SET replica = $2, generation = $3, relay = $4, seen_at = now()"#,
        cell,
        replica,
        generation,
        relay
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks the tunnel still alive: records it again if its record is gone (a failed claim, a
/// restored database), but never takes the record of another tunnel.
pub async fn touch(
    pool: &PgPool,
    cell: Uuid,
    replica: Uuid,
    generation: i64,
    relay: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO cell_tunnels (cell_id, replica, generation, relay, seen_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (cell_id) DO UPDATE SET seen_at = now()
           WHERE cell_tunnels.replica = $2 AND cell_tunnels.generation = $3"#,
        cell,
        replica,
        generation,
        relay
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets the tunnel, if it is still the cell's recorded one.
pub async fn release(
    pool: &PgPool,
    cell: Uuid,
    replica: Uuid,
    generation: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM cell_tunnels WHERE cell_id = $1 AND replica = $2 AND generation = $3",
        cell,
        replica,
        generation
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The replica holding `cell`'s tunnel, if one touched it within `fresh_secs`.
pub async fn holder(
    pool: &PgPool,
    cell: Uuid,
    fresh_secs: f64,
) -> Result<Option<Holder>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"SELECT replica, relay FROM cell_tunnels
           WHERE cell_id = $1 AND seen_at > now() - make_interval(secs => $2)"#,
        cell,
        fresh_secs
    )
    .fetch_optional(pool)
    .await?
    .map(|r| Holder {
        replica: r.replica,
        relay: r.relay,
    }))
}

/// The cells whose tunnel some replica touched within `fresh_secs`.
pub async fn connected(pool: &PgPool, fresh_secs: f64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT cell_id FROM cell_tunnels WHERE seen_at > now() - make_interval(secs => $1)",
        fresh_secs
    )
    .fetch_all(pool)
    .await
}

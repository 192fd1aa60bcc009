//! Each cell's prepared ("warm") environments (`hangar_tenants::warm`): kept at the number its
//! agent asked for while the cell has room, and handed to a new environment whose spec renders
//! the same processes. They belong to the reserved tenant [`WARM_TENANT_ID`] until claimed,
//! never to a tenant's quota, and their Airflow is served under a path named by id.

use hangar_tenants::warm::{can_claim, warm_airflow_path, warm_name, warm_spec};
use hangar_tenants::{EnvironmentSpec, Phase};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ServiceError, Services, StoreContext};
use crate::persistence;

/// The reserved tenant of unclaimed warm environments (created by the migration that added
/// them, as `hangar_tenants::warm::WARM_TENANT`).
pub const WARM_TENANT_ID: Uuid = Uuid::from_u128(0xa1a1);

/// How many prepared environments a claim looks through for one its spec can take.
const CLAIM_CANDIDATES: i64 = 20;

/// A prepared environment handed to a new one.
#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    pub id: Uuid,
    pub cell_id: Uuid,
}

impl Services {
    /// Brings every live cell's prepared environments to its agent's `warm_pool`: adds while the
    /// cell has room, asks its agent to delete the surplus (newest first). Runs in the caller's
    /// transaction; the cells' locks are taken first (see `persistence::cells`).
    pub(crate) async fn keep_warm_pools(
        &self,
        conn: &mut PgConnection,
    ) -> Result<(), ServiceError> {
        let rooms = persistence::cells::lock_live_with_room(conn, self.cell_ttl.as_secs_f64())
            .await
            .store("find the live cells")?;
        for room in rooms {
            let want = usize::try_from(room.warm_pool).unwrap_or(0);
            let live = persistence::environments::live_warm(conn, room.id)
                .await
                .store("count a cell's prepared environments")?;
            let mut changed = false;
            for id in live.iter().take(live.len().saturating_sub(want)) {
                persistence::environments::request_delete(
                    conn,
                    *id,
                    Phase::Deleting.as_str(),
                    None,
                )
                .await
                .store("retire a prepared environment")?;
                changed = true;
            }
            let room_left =
                usize::try_from(i64::from(room.max_environments) - room.placed).unwrap_or(0);
            for _ in 0..want.saturating_sub(live.len()).min(room_left) {
                self.prepare_warm(conn, room.id).await?;
                changed = true;
            }
            if changed {
                persistence::cells::notify_changed(conn, room.id)
                    .await
                    .store("notify a cell")?;
            }
        }
        Ok(())
    }

    /// Adds one prepared environment to the cell: fresh id and secrets, the default spec.
    async fn prepare_warm(&self, conn: &mut PgConnection, cell: Uuid) -> Result<(), ServiceError> {
        let id = Uuid::new_v4();
        let spec = warm_spec(id, &self.platform).ok_or_else(|| ServiceError::Corrupt {
            action: "make a prepared environment's spec",
            message: "the platform's defaults do not validate".to_owned(),
        })?;
        let spec = serde_json::to_value(&spec).map_err(|e| ServiceError::Corrupt {
            action: "serialise a prepared environment's spec",
            message: e.to_string(),
        })?;
        let sealed = self.master_key.seal(id, &crate::secrets::generate())?;
        persistence::environments::insert_warm(
            conn,
            id,
            WARM_TENANT_ID,
            &warm_name(id),
            &spec,
            Phase::Creating.as_str(),
            &sealed,
            cell,
            &warm_airflow_path(id),
        )
        .await
        .store("add a prepared environment")?;
        tracing::info!(env = %id, cell = %cell, "preparing a warm environment");
        Ok(())
    }

    /// Takes a prepared environment that is up on a live cell for a new environment of the
    /// tenant, if one can run `spec` as it is; its cell's pool is refilled in the same
    /// transaction. `None`: the environment takes the normal path.
    pub(crate) async fn claim_warm(
        &self,
        conn: &mut PgConnection,
        tenant_id: Uuid,
        spec: &EnvironmentSpec,
        spec_value: &serde_json::Value,
    ) -> Result<Option<Claimed>, sqlx::Error> {
        let rooms =
            persistence::cells::lock_live_with_room(conn, self.cell_ttl.as_secs_f64()).await?;
        let cells: Vec<Uuid> = rooms.iter().map(|r| r.id).collect();
        let candidates =
            persistence::environments::lock_available_warm(conn, &cells, CLAIM_CANDIDATES).await?;
        let Some(warm) = candidates.into_iter().find(|w| {
            serde_json::from_value::<EnvironmentSpec>(w.spec.clone())
                .is_ok_and(|warm| can_claim(&warm, spec))
        }) else {
            return Ok(None);
        };
        persistence::environments::claim_warm(
            conn,
            warm.id,
            tenant_id,
            spec.name.as_str(),
            spec_value,
            Phase::Creating.as_str(),
        )
        .await?;
        persistence::cells::notify_changed(conn, warm.cell_id).await?;
        Ok(Some(Claimed {
            id: warm.id,
            cell_id: warm.cell_id,
        }))
    }
}

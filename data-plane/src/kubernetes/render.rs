//! The Kubernetes renderer (`hangar_tenants::blueprint::kubernetes`) as the runtime's
//! [`Renderer`]: an assignment, its backends and a worker count in, the environment's objects
//! out, with the cell's settings; the Job that migrates a template database; and the pod of
//! one Airflow CLI command.

use hangar_tenants::api::Assignment;
use hangar_tenants::blueprint::kubernetes::{
    self as renderer, KubeCell, KubeInput, MigrateInput, MigrateManifests,
};
use hangar_tenants::blueprint::Backends;
use hangar_tenants::names::TenantName;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::runtime::{RenderFailure, Renderer};
use super::Manifests;
use crate::bucket_gateway::{GatewayKey, Grant};

/// The Kubernetes renderer with one cell's settings and the key of the agent's bucket
/// gateway, from which each environment's bucket credentials are derived.
pub struct BlueprintRenderer {
    cell: KubeCell,
    gateway: GatewayKey,
}

impl BlueprintRenderer {
    pub fn new(cell: KubeCell, gateway: GatewayKey) -> Self {
        Self { cell, gateway }
    }

    fn input(
        &self,
        a: &Assignment,
        backends: &Backends,
        workers: u32,
    ) -> Result<KubeInput, RenderFailure> {
        let tenant = TenantName::parse(a.tenant.clone())?;
        let grant = Grant {
            tenant: tenant.clone(),
            environment: a.spec.name.clone(),
            id: a.id,
        };
        Ok(KubeInput {
            environment_id: a.id,
            bucket_access: Some(self.gateway.credentials(&grant)),
            tenant,
            spec: a.spec.clone(),
            secrets: a.secrets.clone(),
            backends: backends.clone(),
            workers,
            cell: self.cell.clone(),
        })
    }
}

impl Renderer for BlueprintRenderer {
    fn namespace(&self, environment: Uuid) -> String {
        renderer::namespace_name(environment)
    }

    fn render(
        &self,
        a: &Assignment,
        backends: &Backends,
        workers: u32,
    ) -> Result<Manifests, RenderFailure> {
        Ok(renderer::render(&self.input(a, backends, workers)?)?)
    }

    fn cli_pod(
        &self,
        a: &Assignment,
        backends: &Backends,
        call: Uuid,
        args: &[String],
        timeout_seconds: u32,
    ) -> Result<serde_json::Value, RenderFailure> {
        let input = self.input(a, backends, a.spec.min_workers)?;
        Ok(renderer::cli_pod(&input, call, args, timeout_seconds)?)
    }

    fn migrate(
        &self,
        template: &str,
        airflow_version: &str,
        sql_alchemy_conn: &SecretString,
    ) -> Result<MigrateManifests, RenderFailure> {
        let input = MigrateInput {
            template: template.to_owned(),
            airflow_version: airflow_version.to_owned(),
            sql_alchemy_conn: Some(sql_alchemy_conn.expose_secret().to_owned()),
            cell: self.cell.clone(),
        };
        Ok(renderer::migrate_job(&input)?)
    }
}

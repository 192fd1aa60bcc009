//! `hangar serve` settings: one typed struct from flags and `HANGAR_*` variables. A missing
//! required setting fails at start-up with clap's message naming the flag and the variable.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::ui_domain::UiDomain;

fn secret(s: &str) -> Result<SecretString, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseSettings {
    /// Postgres URL of the control plane's database.
    #[arg(long, env = "HANGAR_DATABASE_URL", value_name = "HANGAR_DATABASE_URL", hide_env_values = true, value_parser = secret)]
    pub database_url: SecretString,
    /// Connections in the pool.
    #[arg(long, env = "HANGAR_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Address the API listens on.
    #[arg(long, env = "HANGAR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The platform admin's bearer token (at least 16 characters). Whoever holds it can create
    /// tenants and cells.
    #[arg(long, env = "HANGAR_ADMIN_TOKEN", value_name = "HANGAR_ADMIN_TOKEN", hide_env_values = true, value_parser = secret)]
    pub admin_token: SecretString,
    /// The key environment secrets are sealed with at rest: 32 bytes, base64
    /// (`openssl rand -base64 32`). Losing it loses every environment's secrets.
    #[arg(long, env = "HANGAR_MASTER_KEY", value_name = "HANGAR_MASTER_KEY", hide_env_values = true, value_parser = secret)]
    pub master_key: SecretString,
    /// Airflow versions tenants may choose (comma-separated); the first is not implied default.
    #[arg(
        long,
        env = "HANGAR_AIRFLOW_VERSIONS",
        value_delimiter = ',',
        default_value = "3.3.2"
    )]
    pub airflow_versions: Vec<String>,
    /// Seconds a resolved token is remembered in this process (0 turns the cache off). A token
    /// revoked through another replica stops working here as soon as Postgres tells this one,
    /// and within this time at the latest.
    #[arg(long, env = "HANGAR_TOKEN_CACHE_SECS", default_value_t = 5)]
    pub token_cache_secs: u64,
    /// The platform bucket by URL: `file:///dir`, `s3://bucket/prefix`, `gs://…`, `az://…`,
    /// options as query parameters (see docs/operations.md). Environments' files live under
    /// `tenants/{tenant}/environments/{env}/`.
    #[arg(long = "bucket-url", env = "HANGAR_BUCKET_URL")]
    pub bucket: Option<String>,
    /// Seconds after its agent was last heard from (registration, poll or report) that a cell
    /// counts as lost: it gets no new environments, and its environments read `UNAVAILABLE`
    /// (those being created, updated or deleted keep their phase) until the agent is back.
    #[arg(long, env = "HANGAR_CELL_TTL_SECS", default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub cell_ttl_secs: u64,
    /// A bearer token (at least 16 characters) that may read `/metrics` and nothing else: what
    /// Prometheus scrapes with. Without it only the platform admin token may.
    #[arg(long, env = "HANGAR_METRICS_TOKEN", value_name = "HANGAR_METRICS_TOKEN", hide_env_values = true, value_parser = secret)]
    pub metrics_token: Option<SecretString>,
    /// Serve each environment's Airflow UI on an origin of its own, `{env}--{tenant}.<domain>`
    /// (a wildcard DNS name, and certificate, for `*.<domain>` pointing here): `ui.example.com`
    /// (http, on this server's port), `ui.example.com:8443`, or `https://ui.example.com` behind
    /// a TLS proxy. Without it every environment's UI shares this server's origin, so one
    /// tenant's plugin JavaScript could act on another tenant's UI session in the same browser.
    #[arg(long, env = "HANGAR_UI_DOMAIN", value_parser = UiDomain::parse)]
    pub ui_domain: Option<UiDomain>,
    /// The largest answer of an environment's Airflow passed on through the proxy, in bytes.
    #[arg(long, env = "HANGAR_PROXY_MAX_RESPONSE_BYTES", default_value_t = crate::service::airflow::MAX_RESPONSE_BYTES)]
    pub proxy_max_response_bytes: u64,
    /// Seconds in one minute of an environment's `hibernate_after_idle_minutes`: 60. Only a
    /// test of hibernation has a reason to shorten it.
    #[arg(long, env = "HANGAR_IDLE_MINUTE_SECS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=60))]
    pub idle_minute_secs: u64,
    /// A cell made sure of at start-up, `NAME:RUNTIME` (`cluster:kubernetes`), with the token
    /// HANGAR_BOOTSTRAP_CELL_TOKEN gives instead of one Hangar generates: what an install (the
    /// Helm chart, the Terraform modules) uses to start the control plane and its cell's agent
    /// in one step. A later start with another token replaces the cell's token.
    #[arg(long, env = "HANGAR_BOOTSTRAP_CELL", value_parser = BootstrapCell::parse)]
    pub bootstrap_cell: Option<BootstrapCell>,
    /// The bootstrap cell's token: `hgc_` and at least 32 letters and digits.
    #[arg(long, env = "HANGAR_BOOTSTRAP_CELL_TOKEN", value_name = "HANGAR_BOOTSTRAP_CELL_TOKEN", hide_env_values = true, value_parser = secret)]
    pub bootstrap_cell_token: Option<SecretString>,
    /// Where this replica's relay listens for the other control-plane replicas: an address of
    /// its own that they reach (in Kubernetes the pod's IP, `$(POD_IP):8081`), never a public
    /// one. Required for two or more replicas: a cell's agent holds its tunnel open to one
    /// replica, and the others relay that cell's Airflow requests to it, signed with a key
    /// derived from HANGAR_MASTER_KEY. Without it this replica's tunnels are reachable from
    /// this replica only.
    /// `IP:PORT`; an IPv6 address with or without brackets (`fd00::1:8081`).
    #[arg(long, env = "HANGAR_RELAY_LISTEN", value_parser = relay_listen)]
    pub relay_listen: Option<SocketAddr>,
}

/// A cell the control plane creates at start-up if it is missing (`NAME:RUNTIME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapCell {
    pub name: hangar_tenants::CellName,
    pub runtime: hangar_tenants::api::Runtime,
}

impl BootstrapCell {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, runtime) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not NAME:RUNTIME (e.g. cluster:kubernetes)"))?;
        let name = hangar_tenants::CellName::parse(name).map_err(|e| format!("cell name: {e}"))?;
        let runtime = match runtime {
            "process" => hangar_tenants::api::Runtime::Process,
            "kubernetes" => hangar_tenants::api::Runtime::Kubernetes,
            other => return Err(format!("runtime {other:?} is not process or kubernetes")),
        };
        Ok(Self { name, runtime })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("HANGAR_ADMIN_TOKEN must be at least 16 characters")]
    AdminTokenTooShort,
    #[error(
        "HANGAR_METRICS_TOKEN must be at least 16 characters and differ from HANGAR_ADMIN_TOKEN"
    )]
    MetricsToken,
    #[error("HANGAR_AIRFLOW_VERSIONS must name at least one version")]
    NoAirflowVersion,
    #[error("HANGAR_BOOTSTRAP_CELL and HANGAR_BOOTSTRAP_CELL_TOKEN go together")]
    BootstrapCellHalf,
    #[error("HANGAR_BOOTSTRAP_CELL_TOKEN must be hgc_ followed by at least 32 letters and digits")]
    BootstrapCellToken,
    #[error("HANGAR_RELAY_LISTEN must be an address the other replicas can reach, not {0}")]
    RelayUnspecified(SocketAddr),
    #[error(transparent)]
    MasterKey(#[from] crate::secrets::SecretsError),
}

/// `IP:PORT`, the IP of either family with or without brackets, so that `$(POD_IP):8081`
/// works whichever family the pod's IP is.
fn relay_listen(s: &str) -> Result<SocketAddr, String> {
    let bad = || format!("{s:?} is not IP:PORT");
    let (ip, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    Ok(SocketAddr::new(
        ip.parse().map_err(|_| bad())?,
        port.parse().map_err(|_| bad())?,
    ))
}

impl ServeSettings {
    /// The parsed master key.
    pub fn master_key(&self) -> Result<crate::secrets::MasterKey, SettingsError> {
        Ok(crate::secrets::MasterKey::parse(
            self.master_key.expose_secret(),
        )?)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        self.master_key()?;
        if self.admin_token.expose_secret().len() < 16 {
            return Err(SettingsError::AdminTokenTooShort);
        }
        if let Some(t) = &self.metrics_token {
            if t.expose_secret().len() < 16 || t.expose_secret() == self.admin_token.expose_secret()
            {
                return Err(SettingsError::MetricsToken);
            }
        }
        if self.airflow_versions.iter().all(|v| v.trim().is_empty()) {
            return Err(SettingsError::NoAirflowVersion);
        }
        match (&self.bootstrap_cell, &self.bootstrap_cell_token) {
            (None, None) => {}
            (Some(_), Some(t)) => {
                let rest = t
                    .expose_secret()
                    .strip_prefix(crate::auth::CELL_TOKEN_PREFIX)
                    .unwrap_or_default();
                if rest.len() < 32 || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(SettingsError::BootstrapCellToken);
                }
            }
            _ => return Err(SettingsError::BootstrapCellHalf),
        }
        if let Some(a) = self.relay_listen {
            if a.ip().is_unspecified() {
                return Err(SettingsError::RelayUnspecified(a));
            }
        }
        Ok(())
    }

    pub fn cell_ttl(&self) -> Duration {
        Duration::from_secs(self.cell_ttl_secs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_listens_on_an_ip_of_either_family() {
        assert_eq!(
            relay_listen("10.1.2.3:8081").unwrap(),
            SocketAddr::from(([10, 1, 2, 3], 8081))
        );
        assert_eq!(
            relay_listen("[10.1.2.3]:8081").unwrap(),
            SocketAddr::from(([10, 1, 2, 3], 8081))
        );
        let v6: SocketAddr = "[fd00::1]:8081".parse().unwrap();
        assert_eq!(relay_listen("fd00::1:8081").unwrap(), v6);
        assert_eq!(relay_listen("[fd00::1]:8081").unwrap(), v6);
        for bad in ["", "8081", "pod:8081", "10.1.2.3", "10.1.2.3:http", ":8081"] {
            assert!(relay_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bootstrap_cell_is_a_name_and_a_runtime() {
        let c = BootstrapCell::parse("cluster:kubernetes").unwrap();
        assert_eq!(c.name.as_str(), "cluster");
        assert_eq!(c.runtime, hangar_tenants::api::Runtime::Kubernetes);
        assert!(BootstrapCell::parse("local:process").is_ok());
        for bad in [
            "cluster",
            "Cluster:kubernetes",
            "cluster:docker",
            ":kubernetes",
        ] {
            assert!(BootstrapCell::parse(bad).is_err(), "{bad}");
        }
    }
}

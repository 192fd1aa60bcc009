//! Builds and runs the control plane: database, migrations, change listener, router, listener,
//! and the relay listener for the other replicas.

use std::sync::{Arc, OnceLock};

use hangar_tenants::Platform;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::persistence::{Db, DbError};
use crate::service::Services;
use crate::settings::{ServeSettings, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("HANGAR_BUCKET_URL: {0}")]
    Bucket(#[from] hangar_data_plane::bucket::BucketError),
    #[error("failed to listen for cell changes")]
    Listen(#[source] sqlx::Error),
    #[error("HANGAR_BOOTSTRAP_CELL: {0}")]
    BootstrapCell(#[source] crate::service::ServiceError),
    #[error("failed to bind {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How often the recorder folds histogram samples into their summaries.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder (one per process, shared by every app in tests).
///
/// A recorder installed this way leaves its upkeep to its caller: without it, every request's
/// duration is kept in memory until `/metrics` is next read, so a control plane that nobody
/// scrapes grows for ever (about 8 bytes a request). A thread of its own does it every
/// [`METRICS_UPKEEP`], whichever runtime (or test) comes and goes.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            match builder.install_recorder() {
                Ok(h) => {
                    let upkeep = h.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(METRICS_UPKEEP);
                            upkeep.run_upkeep();
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "failed to start the metrics upkeep; histograms are folded only when /metrics is read");
                    }
                    h
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder was already installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// A control plane bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The relay listener for the other replicas, with its routes (`HANGAR_RELAY_LISTEN`).
    relay: Option<(TcpListener, axum::Router)>,
    pub services: Arc<Services>,
    cancel: CancellationToken,
}

impl Application {
    pub async fn build(settings: ServeSettings) -> Result<Self, StartupError> {
        settings.validate()?;
        let db = Db::connect(
            &settings.database.database_url,
            settings.database.db_max_connections,
        )
        .await?;
        db.migrate().await?;
        let cancel = CancellationToken::new();
        let changes = crate::changes::listen(&db.pool, cancel.clone())
            .await
            .map_err(StartupError::Listen)?;
        let platform = Platform {
            airflow_versions: settings
                .airflow_versions
                .iter()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect(),
        };
        let mut services = Services::new(
            db,
            platform,
            settings.admin_token.expose_secret(),
            settings.cell_ttl(),
            changes,
            std::time::Duration::from_secs(settings.token_cache_secs),
            settings.master_key()?,
        );
        services.metrics_token_hash = settings
            .metrics_token
            .as_ref()
            .map(|t| crate::auth::hash(t.expose_secret()));
        services.bucket = settings
            .bucket
            .as_deref()
            .map(hangar_data_plane::bucket::Bucket::from_url)
            .transpose()?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let port = listener
            .local_addr()
            .map_or(settings.listen.port(), |a| a.port());
        services.ui_domain = settings.ui_domain.clone().map(|d| d.on_port(port));
        if services.ui_domain.is_none() {
            tracing::warn!(
                "HANGAR_UI_DOMAIN is not set: every environment's Airflow UI is served on this one origin, so a tenant's plugin JavaScript could act on another tenant's UI session in the same browser; set it to give each environment's UI an origin of its own"
            );
        }
        services.proxy_max_response = settings.proxy_max_response_bytes;
        services.idle_minute = std::time::Duration::from_secs(settings.idle_minute_secs);
        let relay = match settings.relay_listen {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?;
                let bound = listener.local_addr().unwrap_or(addr);
                let tunnels = Arc::new(crate::tunnel::Tunnels::registered(
                    crate::tunnel::Registration {
                        pool: services.db.pool.clone(),
                        replica: uuid::Uuid::new_v4(),
                        relay: bound.to_string(),
                    },
                ));
                services.tunnels = tunnels.clone();
                tracing::info!(relay = %bound, "relaying cells' tunnels with the other replicas");
                let router = crate::relay::router(&settings.master_key()?, tunnels);
                Some((listener, router))
            }
        };
        if let (Some(cell), Some(token)) =
            (&settings.bootstrap_cell, &settings.bootstrap_cell_token)
        {
            services
                .bootstrap_cell(&cell.name, cell.runtime, token.expose_secret())
                .await
                .map_err(StartupError::BootstrapCell)?;
        }
        crate::changes::forget_principals(
            &services.db.pool,
            services.principals.clone(),
            cancel.clone(),
        )
        .await
        .map_err(StartupError::Listen)?;
        let services = Arc::new(services);
        let state = AppState {
            services: services.clone(),
            metrics: metrics_handle(),
            openapi_json: Arc::new(api::openapi_json()),
        };
        Ok(Self {
            listener,
            router: api::router(state),
            relay,
            services,
            cancel,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the relay listens, if it does.
    pub fn relay_addr(&self) -> Option<std::net::SocketAddr> {
        self.relay.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests.
    /// Cells' tunnels are closed as the listener stops (they are not requests to finish).
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let cancel = self.cancel.clone();
        let sampler = tokio::spawn(crate::service::usage::supervise_sampler(
            self.services.clone(),
            cancel.clone(),
        ));
        let relay = self.relay.map(|(listener, router)| {
            let stop = cancel.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the relay listener stopped");
                }
            })
        });
        let tunnels = self.services.tunnels.clone();
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                tunnels.close_all();
            })
            .await;
        cancel.cancel();
        let _ = sampler.await;
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        result
    }
}

//! A stand-in for an environment's Airflow api-server in API tests (the end-to-end tests run
//! the real one): on a free loopback port, under the environment's path as the real one serves
//! (`[api] base_url`), it answers the platform's login (`POST …/auth/token`, recording who
//! logged in with which password) and whatever routes a test gives it; any other request is
//! echoed back as JSON (`method`, `path`, `query`, `authorization`), so a test sees what reached
//! Airflow and with which token.

use std::sync::{Arc, Mutex};

use axum::extract::{OriginalUri, Request};
use axum::http::header;
use axum::routing::{any, post};
use axum::{Json, Router};
use hangar_tenants::api::webserver_path;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub struct FakeAirflow {
    /// The endpoint an agent reports for it (`endpoints["api"]`), without a final `/`.
    pub url: String,
    /// Who logged in, in order: (username, password).
    pub logins: Arc<Mutex<Vec<(String, String)>>>,
    stop: CancellationToken,
}

impl Drop for FakeAirflow {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The token the fake issues to `user`.
pub fn token_for(user: &str) -> String {
    format!("token-for-{user}")
}

impl FakeAirflow {
    /// Serves `tenant/env`'s Airflow with `routes` (paths relative to the environment's own).
    pub async fn start(tenant: &str, env: &str, routes: Router) -> anyhow::Result<Self> {
        Self::start_at(&webserver_path(tenant, env), routes).await
    }

    /// Serves an Airflow under `path` (its `[api] base_url`) with `routes`.
    pub async fn start_at(path: &str, routes: Router) -> anyhow::Result<Self> {
        let logins: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let recorded = logins.clone();
        let own = routes
            .route(
                "/auth/token",
                post(move |Json(body): Json<Value>| async move {
                    let user = body["username"].as_str().unwrap_or_default().to_owned();
                    let password = body["password"].as_str().unwrap_or_default().to_owned();
                    if let Ok(mut l) = recorded.lock() {
                        l.push((user.clone(), password));
                    }
                    (
                        axum::http::StatusCode::CREATED,
                        Json(json!({ "access_token": token_for(&user) })),
                    )
                }),
            )
            .fallback(echo);
        let path = path.trim_end_matches('/');
        // (`nest` leaves out the path with a final `/`, where the UI's start page is.)
        let app = Router::new()
            .nest(path, own)
            .route(&format!("{path}/"), any(echo));
        let (address, stop) = crate::serve_on_free_port(app).await?;
        let url = format!("http://{address}{path}");
        Ok(Self { url, logins, stop })
    }

    /// The usernames that logged in, in order.
    pub fn users(&self) -> Vec<String> {
        self.logins
            .lock()
            .map(|l| l.iter().map(|(u, _)| u.clone()).collect())
            .unwrap_or_default()
    }
}

async fn echo(OriginalUri(uri): OriginalUri, req: Request) -> Json<Value> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Json(json!({
        "method": req.method().as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "authorization": auth,
    }))
}

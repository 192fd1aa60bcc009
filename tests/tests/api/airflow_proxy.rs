//! `…/environments/{env}/airflow/…` against a stand-in for the environment's Airflow
//! (`FakeAirflow`), reached through the cell's tunnel as the real agent's code forwards it:
//! when nobody answers, a 503 that names the environment and says why, never the caller's own
//! timeout or an internal address; redirects never followed; answers bounded; no address a
//! cell reports ever called by the control plane; the platform's login with the Airflow role
//! of the caller's Hangar role. A client whose Hangar is not there: an error that says so.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use hangar_client::Client;
use hangar_tenants::airflow_users::AirflowRole;
use hangar_tenants::api::{Problem, Role};
use hangar_tests::fake_airflow::{token_for, FakeAirflow};
use hangar_tests::{healthy, running_etl, running_etl_with, FakeAgent};
use reqwest::Method;
use serde_json::Value;

/// The environment's own path, as its api-server serves under it.
const ETL: &str = "/v1/tenants/data/environments/etl/airflow";

async fn get_dags(c: &Client) -> (u16, Problem) {
    let r = c
        .request(
            Method::GET,
            "v1/tenants/data/environments/etl/airflow/api/v2/dags",
        )
        .send()
        .await
        .unwrap();
    hangar_tests::problem_of(r).await
}

/// Reports `etl` running with its api-server at `api`, where the cell's tunnel forwards.
async fn serving_at(agent: &FakeAgent, id: uuid::Uuid, api: &str) {
    agent.serve_airflow(id, api).await.unwrap();
}

#[tokio::test]
async fn an_airflow_that_refuses_or_keeps_silent_is_a_503_naming_the_environment() {
    let (_app, editor, agent, id) = running_etl().await.unwrap();

    // Nothing listens on the reported port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    serving_at(&agent, id, &format!("http://127.0.0.1:{port}{ETL}")).await;
    let (status, p) = get_dags(&editor).await;
    assert_eq!(status, 503, "{p:?}");
    assert!(
        p.detail
            .contains("environment \"etl\" did not answer: its api-server refused"),
        "{p:?}"
    );
    assert!(
        !p.detail.contains("127.0.0.1"),
        "no internal address: {p:?}"
    );

    // Something accepts connections and never answers: the platform gives up on its login
    // after 10 s, well within the client's 30 s.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    serving_at(&agent, id, &format!("http://127.0.0.1:{port}{ETL}")).await;
    let start = Instant::now();
    let (status, p) = get_dags(&editor).await;
    assert_eq!(status, 503, "{p:?}");
    assert!(
        p.detail
            .contains("environment \"etl\" did not answer within 10 s"),
        "{p:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    held.abort();
}

#[tokio::test]
async fn a_client_whose_hangar_is_not_there_says_so() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", closed.local_addr().unwrap().port());
    drop(closed);
    let e = hangar_tests::client(&url, Some("t"))
        .get_tenant("data")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("failed to connect to Hangar at {url}")) && e.contains("refused"),
        "{e}"
    );
}

/// A server on `ip` that counts the requests it gets, whatever they are: somewhere the
/// platform must not go.
async fn counting(ip: &str) -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            "you should not be here"
        }
    });
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

/// An HTTP client that follows no redirect, as a test of redirects needs.
fn unfollowing() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_passed_on_only_inside_the_environment() {
    let (app, _editor, agent, id) = running_etl().await.unwrap();
    let (elsewhere, hits) = counting("127.0.0.1").await;
    let away = format!("http://127.0.0.1:{elsewhere}{ETL}/api/v2/dags");
    let routes = Router::new()
        .route(
            "/away",
            get(move || async move { (StatusCode::FOUND, [(header::LOCATION, away)]) }),
        )
        .route(
            "/home",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, format!("{ETL}/api/v2/dags?offset=2"))],
                )
            }),
        );
    let fake = FakeAirflow::start("data", "etl", routes).await.unwrap();
    serving_at(&agent, id, &fake.url).await;
    let token = app.token_with_role("data", Role::Admin).await.unwrap();
    let call = |path: &str| {
        unfollowing()
            .get(format!("{}{ETL}/{path}", app.address))
            .bearer_auth(&token)
            .send()
    };

    // To another port of the same machine: neither followed by the platform nor passed on.
    let (status, p) = hangar_tests::problem_of(call("away").await.unwrap()).await;
    assert_eq!(status, 502, "{p:?}");
    assert!(
        p.detail
            .contains("environment \"etl\" redirected out of itself"),
        "{p:?}"
    );
    assert!(!p.detail.contains("127.0.0.1"), "{p:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nobody went there");

    // Inside the environment: back to the caller as it is, still not followed.
    let r = call("home").await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()[header::LOCATION],
        format!("{ETL}/api/v2/dags?offset=2").as_str()
    );
}

#[tokio::test]
async fn an_answer_past_the_bound_is_refused_or_cut_short() {
    let (_app, editor, agent, id) = running_etl_with(|s| s.proxy_max_response_bytes = 1000)
        .await
        .unwrap();
    let chunks = |n: usize| {
        Body::from_stream(futures::stream::iter(
            (0..n).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 250])),
        ))
    };
    let routes = Router::new()
        .route("/declared", get(|| async { vec![b'x'; 1001] }))
        .route("/streamed", get(move || async move { chunks(6) }))
        .route("/fits", get(move || async move { chunks(4) }));
    let fake = FakeAirflow::start("data", "etl", routes).await.unwrap();
    serving_at(&agent, id, &fake.url).await;
    let call = |path: &str| editor.request(Method::GET, &format!("{ETL}/{path}")).send();

    // Known from Content-Length: refused before anything is relayed, naming the bound.
    let (status, p) = hangar_tests::problem_of(call("declared").await.unwrap()).await;
    assert_eq!(status, 502, "{p:?}");
    assert!(
        p.detail
            .contains("environment \"etl\" answered more than the 1000 bytes"),
        "{p:?}"
    );

    // Found out while streaming (no Content-Length): the answer is cut, and ends in an error
    // rather than looking complete. (When the bound is passed in the first chunk the control
    // plane reads, which depends on how the tunnel framed the body, the connection ends before
    // even the status was sent: an error too.)
    match call("streamed").await {
        Ok(r) => {
            assert_eq!(r.status(), 200);
            assert!(r.bytes().await.is_err(), "a cut answer is an error");
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
    }

    // Up to the bound, streamed whole.
    let r = call("fits").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
}

#[tokio::test]
async fn the_control_plane_never_calls_an_address_a_cell_reports() {
    let (_app, editor, agent, id) = running_etl().await.unwrap();
    let fake = FakeAirflow::start("data", "etl", Router::new())
        .await
        .unwrap();
    // The agent's tunnel forwards to the environment's api-server, wherever its report says
    // the api-server is.
    agent.tunnel.set(id, &fake.url);
    let (other_ip, other_hits) = counting("127.0.0.2").await;
    let (here, here_hits) = counting("127.0.0.1").await;
    for reported in [
        // The cell's loopback, as a process cell reports it.
        format!("http://127.0.0.1:{here}{ETL}"),
        // Another host (here, another loopback address standing in for one).
        format!("http://127.0.0.2:{other_ip}{ETL}"),
        // A name, resolved by whoever calls it.
        format!("http://localhost:{here}{ETL}"),
        // Another environment's path.
        format!("http://127.0.0.1:{here}/v1/tenants/data/environments/ml/airflow"),
    ] {
        let mut observed = healthy(1);
        observed.endpoints.insert("api".into(), reported.clone());
        agent.report(id, &observed).await.unwrap();
        let r = editor
            .request(Method::GET, &format!("{ETL}/api/v2/dags"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{reported}");
        let seen: Value = r.json().await.unwrap();
        assert_eq!(seen["path"], format!("{ETL}/api/v2/dags"), "{reported}");
    }
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    assert_eq!(here_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_platform_logs_in_as_the_airflow_user_of_the_callers_role() {
    let (app, editor, agent, id) = running_etl().await.unwrap();
    let fake = FakeAirflow::start("data", "etl", Router::new())
        .await
        .unwrap();
    serving_at(&agent, id, &fake.url).await;
    let secrets = agent
        .client
        .assignments("local", 0, Duration::ZERO)
        .await
        .unwrap()
        .environments
        .into_iter()
        .find(|e| e.id == id)
        .and_then(|e| e.secrets)
        .unwrap();
    let viewer = app.tenant_with_role("data", Role::Viewer).await.unwrap();
    let admin = app.tenant_with_role("data", Role::Admin).await.unwrap();
    let callers = [
        (&viewer, AirflowRole::Viewer),
        (&editor, AirflowRole::Op),
        (&admin, AirflowRole::Admin),
        (&app.admin, AirflowRole::Admin),
    ];
    for (client, role) in callers {
        // Writes reach Airflow too, with the role's token: Airflow's own role check decides.
        for method in [Method::GET, Method::POST] {
            let r = client
                .request(method.clone(), &format!("{ETL}/api/v2/variables"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{method} as {role:?}");
            let seen: Value = r.json().await.unwrap();
            assert_eq!(seen["path"], format!("{ETL}/api/v2/variables"));
            assert_eq!(seen["method"], method.as_str());
            assert_eq!(
                seen["authorization"],
                format!("Bearer {}", token_for(role.user())),
                "{method} as {role:?}"
            );
        }
    }
    // One login per role, with that user's own password; its token is reused afterwards.
    let logins = fake.logins.lock().unwrap().clone();
    let want: Vec<(String, String)> = [AirflowRole::Viewer, AirflowRole::Op, AirflowRole::Admin]
        .into_iter()
        .map(|r| (r.user().to_owned(), r.password(&secrets)))
        .collect();
    assert_eq!(logins, want);
    assert_eq!(fake.users(), ["hangar-viewer", "hangar-op", "hangar-admin"]);
}

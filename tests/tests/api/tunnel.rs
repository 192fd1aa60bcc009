//! Cells' tunnels, with the real agent's tunnel code (`hangar_data_plane::tunnel`) on one end
//! and the real control plane on the other: the proxy goes only through the tunnel of the
//! environment's own cell; a cell without one, or an agent that does not know the environment,
//! is a 503 that says so; a tunnel is opened only by its own cell's agent; a newer tunnel of a
//! cell replaces the older; the agent opens it again after the control plane went away.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hangar_client::Client;
use hangar_data_plane::tunnel::{self, Forwarder, TunnelEnvironments};
use hangar_tenants::api::Problem;
use hangar_tests::fake_airflow::FakeAirflow;
use hangar_tests::{healthy, running_etl, running_etl_with, spawn_app_with, TUNNEL_WAIT};
use reqwest::Method;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ETL: &str = "/v1/tenants/data/environments/etl/airflow";

async fn get_dags(c: &Client) -> reqwest::Response {
    c.request(Method::GET, &format!("{ETL}/api/v2/dags"))
        .send()
        .await
        .unwrap()
}

async fn problem(c: &Client) -> (u16, Problem) {
    hangar_tests::problem_of(get_dags(c).await).await
}

/// A stand-in Airflow for `etl` that answers its DAG list with `name`.
async fn airflow_named(name: &'static str) -> FakeAirflow {
    let routes = Router::new().route("/api/v2/dags", get(move || async move { name }));
    FakeAirflow::start("data", "etl", routes).await.unwrap()
}

#[tokio::test]
async fn a_cell_without_a_tunnel_is_a_503_that_says_so() {
    let (app, editor, agent, id) = running_etl().await.unwrap();
    let fake = airflow_named("etl").await;
    agent.serve_airflow(id, &fake.url).await.unwrap();
    let r = get_dags(&editor).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "etl");
    assert!(app.metrics().await.contains("hangar_cell_tunnel_up"));

    agent.close_tunnel();
    app.wait_for_tunnel("local", false).await;
    let (status, p) = problem(&editor).await;
    assert_eq!(status, 503, "{p:?}");
    assert!(
        p.detail.contains(
            "environment \"etl\" cannot be reached: its cell \"local\" has no tunnel open to the control plane"
        ),
        "{p:?}"
    );
    assert_eq!(
        fake.users(),
        ["hangar-op"],
        "one login, before the tunnel closed"
    );
}

#[tokio::test]
async fn an_environment_its_agent_does_not_know_is_a_503_that_says_so() {
    let (_app, editor, agent, id) = running_etl().await.unwrap();
    let fake = airflow_named("etl").await;
    // Reported running, but the agent's tunnel has no address for it.
    let mut observed = healthy(1);
    observed.endpoints.insert("api".into(), fake.url.clone());
    agent.report(id, &observed).await.unwrap();
    let (status, p) = problem(&editor).await;
    assert_eq!(status, 503, "{p:?}");
    assert!(
        p.detail.contains(
            "environment \"etl\" is not running on its cell \"local\": the cell's agent does not know it"
        ),
        "{p:?}"
    );
    assert!(fake.users().is_empty());
}

#[tokio::test]
async fn an_agent_cannot_reach_an_environment_of_another_cell() {
    let (app, editor, mut local, id) = running_etl().await.unwrap();
    let genuine = airflow_named("genuine").await;
    local.close_tunnel();
    app.wait_for_tunnel("local", false).await;

    // Another cell's agent claims `etl` in its own tunnel, behind an Airflow that records the
    // platform's logins.
    let mut other = app.registered_agent("other", 10).await.unwrap();
    let thief = airflow_named("thief").await;
    other.tunnel.set(id, &thief.url);
    other.open_tunnel();
    app.wait_for_tunnel("other", true).await;
    let mut observed = healthy(1);
    observed.endpoints.insert("api".into(), thief.url.clone());
    let err = other.report(id, &observed).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let mut observed = healthy(1);
    observed.endpoints.insert("api".into(), genuine.url.clone());
    local.report(id, &observed).await.unwrap();

    // `etl`'s calls go through its own cell's tunnel only: none is open, so none is made.
    let (status, p) = problem(&editor).await;
    assert_eq!(status, 503, "{p:?}");
    assert!(
        p.detail.contains("its cell \"local\" has no tunnel"),
        "{p:?}"
    );

    // Nor can the other agent open `local`'s tunnel, nor a tenant any; and a tunnel is opened
    // only by switching protocols.
    let err = other.client.open_tunnel("local").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = editor.open_tunnel("local").await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let r = local
        .client
        .request(Method::GET, "v1/cells/local/tunnel")
        .send()
        .await
        .unwrap();
    let (status, p) = hangar_tests::problem_of(r).await;
    assert_eq!(status, 400, "{p:?}");
    assert!(p.detail.contains("Upgrade: hangar-tunnel/1"), "{p:?}");

    // With its own cell's tunnel back, `etl` answers from its own Airflow.
    local.tunnel.set(id, &genuine.url);
    local.open_tunnel();
    app.wait_for_tunnel("local", true).await;
    let r = get_dags(&editor).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "genuine");
    assert!(
        thief.users().is_empty(),
        "the platform never logged in there"
    );
    assert_eq!(genuine.users(), ["hangar-op"]);
}

/// Opens cell `local`'s tunnel once, by hand, and serves it (forwarding `env` to `url`) until
/// the control plane closes it; the task ends then.
async fn serve_once(client: &Client, env: uuid::Uuid, url: &str) -> JoinHandle<()> {
    let envs = TunnelEnvironments::default();
    envs.set(env, url);
    let io = client.open_tunnel("local").await.unwrap();
    tokio::spawn(async move {
        tunnel::serve(io, Forwarder::new(envs), CancellationToken::new())
            .await
            .unwrap();
    })
}

#[tokio::test]
async fn a_newer_tunnel_of_a_cell_replaces_the_older() {
    let (app, editor, agent, id) = running_etl().await.unwrap();
    agent.close_tunnel();
    app.wait_for_tunnel("local", false).await;
    let (first, second) = (airflow_named("first").await, airflow_named("second").await);
    let older = serve_once(&agent.client, id, &first.url).await;
    app.wait_for_tunnel("local", true).await;
    agent.serve_airflow(id, &first.url).await.unwrap();
    assert_eq!(get_dags(&editor).await.text().await.unwrap(), "first");

    let _newer = serve_once(&agent.client, id, &second.url).await;
    // The control plane closes the older tunnel once the newer one is in place.
    tokio::time::timeout(TUNNEL_WAIT, older)
        .await
        .expect("the older tunnel is closed")
        .unwrap();
    assert_eq!(get_dags(&editor).await.text().await.unwrap(), "second");
}

#[tokio::test]
async fn the_agent_opens_its_tunnel_again_after_the_control_plane_went_away() {
    let key = hangar_control_plane::secrets::MasterKey::generate();
    let first_key = key.clone();
    let (app, editor, agent, id) =
        running_etl_with(move |s| s.master_key = SecretString::from(first_key))
            .await
            .unwrap();
    let fake = airflow_named("etl").await;
    agent.serve_airflow(id, &fake.url).await.unwrap();
    assert_eq!(get_dags(&editor).await.status(), 200);

    // The control plane stops (closing every tunnel) and another starts on the same address
    // and database.
    let listen: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let database = app.database_url.clone();
    drop(app);
    let start = std::time::Instant::now();
    while tokio::net::TcpStream::connect(listen).await.is_ok() {
        assert!(
            start.elapsed() < TUNNEL_WAIT,
            "the first control plane still listens"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let app = spawn_app_with(move |s| {
        s.listen = listen;
        s.database.database_url = SecretString::from(database);
        s.master_key = SecretString::from(key);
    })
    .await;
    app.wait_for_tunnel("local", true).await;
    let r = get_dags(&editor).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "etl");
    assert_eq!(
        fake.users(),
        ["hangar-op", "hangar-op"],
        "each control plane logged in once"
    );
}

//! Cells' tunnels, with the real agent's tunnel code (`hangar_data_plane::tunnel`) on one end
//! and the real control plane on the other: the proxy goes only through the tunnel of the
//! environment's own cell; a cell without one, or an agent that does not know the environment,
//! is a 503 that says so; a tunnel is opened only by its own cell's agent; a newer tunnel of a
//! cell replaces the older; the agent opens it again after the control plane went away; a
//! replica without a cell's tunnel relays to the replica that holds it, and its relay takes
//! only requests signed by a replica.

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hangar_client::Client;
use hangar_data_plane::tunnel::{self, Forwarder, TunnelEnvironments};
use hangar_tenants::api::Problem;
use hangar_tenants::api::{CreateToken, Role};
use hangar_tests::fake_airflow::FakeAirflow;
use hangar_tests::{
    client, healthy, running_etl, running_etl_with, spawn_app_with, TestApp, TUNNEL_WAIT,
};
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

/// An editor of tenant `data` talking to `app`.
async fn editor_of(app: &TestApp) -> Client {
    let t = app
        .admin
        .create_token(
            "data",
            &CreateToken {
                name: format!("editor-{}", uuid::Uuid::new_v4().simple()),
                role: Role::Editor,
            },
        )
        .await
        .unwrap();
    client(&app.address, Some(&t.token))
}

/// Replicas `a` and `b` of a control plane with `etl` running, the agent's tunnel open to `a`
/// (forwarding to a stand-in Airflow), and an editor talking to `b`.
async fn two_replicas() -> (
    TestApp,
    TestApp,
    Client,
    hangar_tests::FakeAgent,
    uuid::Uuid,
    FakeAirflow,
) {
    let relay: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let (a, _, agent, id) = running_etl_with(move |s| s.relay_listen = Some(relay))
        .await
        .unwrap();
    let fake = airflow_named("etl").await;
    agent.serve_airflow(id, &fake.url).await.unwrap();
    a.wait_for_tunnel("local", true).await;
    let b = a.replica(move |s| s.relay_listen = Some(relay)).await;
    b.wait_for_tunnel("local", true).await;
    let on_b = editor_of(&b).await;
    (a, b, on_b, agent, id, fake)
}

#[tokio::test]
async fn a_replica_without_the_cells_tunnel_relays_to_the_one_that_holds_it() {
    // The agent's tunnel is open to replica `a` only; `b` shows it up and relays to `a`.
    let (a, b, on_b, agent, id, fake) = two_replicas().await;
    let r = get_dags(&on_b).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "etl");
    assert_eq!(
        fake.users(),
        ["hangar-op"],
        "`b` logged in through the relay"
    );

    // `a`'s relay takes only requests a replica signed: nothing else reaches the tunnel.
    let cell = a.admin.list_cells().await.unwrap().cells[0].id;
    let relay_a = a.relay.unwrap();
    let url = format!("http://{relay_a}/relay/{cell}");
    let now = chrono::Utc::now().timestamp().to_string();
    let forged = [
        vec![],
        vec![
            ("hangar-relay-time", now.clone()),
            (
                "hangar-relay-url",
                format!("http://tunnel{ETL}/api/v2/dags"),
            ),
            ("hangar-relay-signature", "00".repeat(32)),
            ("hangar-environment", id.to_string()),
        ],
        vec![
            ("hangar-relay-time", "1".to_owned()),
            (
                "hangar-relay-url",
                format!("http://tunnel{ETL}/api/v2/dags"),
            ),
            ("hangar-relay-signature", "00".repeat(32)),
        ],
    ];
    for headers in forged {
        let mut req = reqwest::Client::new().get(&url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{headers:?}");
    }
    assert_eq!(
        fake.users(),
        ["hangar-op"],
        "no forged request reached Airflow"
    );

    // The tunnel closed, both replicas say the cell has none.
    agent.close_tunnel();
    a.wait_for_tunnel("local", false).await;
    b.wait_for_tunnel("local", false).await;
    for c in [&on_b, &editor_of(&a).await] {
        let (status, p) = problem(c).await;
        assert_eq!(status, 503, "{p:?}");
        assert!(p.detail.contains("has no tunnel open"), "{p:?}");
    }
}

#[tokio::test]
async fn a_replica_says_so_when_the_replica_holding_the_tunnel_is_gone() {
    let (a, _b, on_b, _agent, _, _fake) = two_replicas().await;
    assert_eq!(get_dags(&on_b).await.status(), 200);

    // `a` goes away; whether or not it could forget its tunnel first, `b` answers a 503 at
    // once rather than waiting for the request's time to run out.
    a.stop();
    let listen: std::net::SocketAddr = a.address.trim_start_matches("http://").parse().unwrap();
    while tokio::net::TcpStream::connect(listen).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = std::time::Instant::now();
    let (status, p) = problem(&on_b).await;
    assert_eq!(status, 503, "{p:?}");
    assert!(
        p.detail.contains("has no tunnel open")
            || p.detail
                .contains("holding its cell \"local\"'s tunnel did not answer"),
        "{p:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_tunnels_record_is_changed_only_by_the_tunnel_it_records_and_goes_stale() {
    use hangar_control_plane::persistence::tunnels::{claim, holder, release, touch, Holder};
    let app = hangar_tests::spawn_app().await;
    let cell = app
        .admin
        .create_cell(&hangar_tenants::api::CreateCell {
            name: "local".to_owned(),
            runtime: hangar_tenants::api::Runtime::Process,
        })
        .await
        .unwrap()
        .cell
        .id;
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let held_by = |replica, relay: &str| {
        Some(Holder {
            replica,
            relay: relay.to_owned(),
        })
    };
    claim(&pool, cell, a, 1, "10.0.0.1:8081").await.unwrap();
    assert_eq!(
        holder(&pool, cell, 60.0).await.unwrap(),
        held_by(a, "10.0.0.1:8081")
    );
    // Another tunnel's touch or release (another replica's, or an older one of the same
    // replica) leaves the record alone.
    touch(&pool, cell, b, 1, "10.0.0.2:8081").await.unwrap();
    release(&pool, cell, b, 1).await.unwrap();
    release(&pool, cell, a, 0).await.unwrap();
    assert_eq!(
        holder(&pool, cell, 60.0).await.unwrap(),
        held_by(a, "10.0.0.1:8081")
    );
    // A newer tunnel, on another replica, takes it; the older one's release changes nothing.
    claim(&pool, cell, b, 7, "10.0.0.2:8081").await.unwrap();
    release(&pool, cell, a, 1).await.unwrap();
    assert_eq!(
        holder(&pool, cell, 60.0).await.unwrap(),
        held_by(b, "10.0.0.2:8081")
    );
    // A record not touched within the freshness is not believed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(holder(&pool, cell, 1.0).await.unwrap(), None);
    touch(&pool, cell, b, 7, "10.0.0.2:8081").await.unwrap();
    assert_eq!(
        holder(&pool, cell, 1.0).await.unwrap(),
        held_by(b, "10.0.0.2:8081")
    );
    release(&pool, cell, b, 7).await.unwrap();
    assert_eq!(holder(&pool, cell, 60.0).await.unwrap(), None);
}

//! When nobody answers. `…/environments/{env}/airflow/…` with an environment's Airflow that does
//! not: a 503 that names the environment and says why, never the caller's own timeout or an
//! internal address. A client whose Hangar is not there: an error that says so.

use std::time::{Duration, Instant};

use hangar_client::Client;
use hangar_tenants::api::Problem;
use hangar_tests::{healthy, running_etl, FakeAgent};
use reqwest::Method;

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

/// Reports `etl` running with its api-server at `api`.
async fn serving_at(agent: &FakeAgent, id: uuid::Uuid, api: &str) {
    let mut observed = healthy(1);
    observed.endpoints.insert("api".into(), api.into());
    agent.report(id, &observed).await.unwrap();
}

#[tokio::test]
async fn an_airflow_that_refuses_or_keeps_silent_is_a_503_naming_the_environment() {
    let (_app, editor, agent, id) = running_etl().await.unwrap();

    // Nothing listens on the reported port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    serving_at(&agent, id, &format!("http://127.0.0.1:{port}")).await;
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
    serving_at(&agent, id, &format!("http://127.0.0.1:{port}")).await;
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

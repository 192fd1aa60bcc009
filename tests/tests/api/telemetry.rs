//! OpenTelemetry traces of `hangar serve`, exported with OTLP/HTTP to a receiver in the test,
//! configured only by the standard `OTEL_*` variables.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangar_tests::otlp::OtlpReceiver;
use hangar_tests::{fresh_database, ADMIN_TOKEN};

fn hangar_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("hangar")
}

/// `hangar serve` on a free port with these extra variables; its address once it answers.
async fn serve(otel: &[(&str, &str)]) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(hangar_bin())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HANGAR_DATABASE_URL", fresh_database().await.unwrap())
        .env("HANGAR_LISTEN", format!("127.0.0.1:{port}"))
        .env("HANGAR_ADMIN_TOKEN", ADMIN_TOKEN)
        .env(
            "HANGAR_MASTER_KEY",
            hangar_control_plane::secrets::MasterKey::generate(),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(otel.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http.get(format!("{address}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, address)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn requests_are_exported_as_server_spans_joined_to_the_callers_trace() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let (child, address) = serve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)]).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = reqwest::Client::new()
        .get(format!("{address}/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let span = receiver
        .wait_for(Duration::from_secs(10), |s| s.name == "GET /v1/tenants")
        .await;
    let spans = receiver.spans();
    stop(child);
    let span = span.unwrap_or_else(|| panic!("no request span among {spans:#?}"));
    assert_eq!(span.service, "hangar-control-plane");
    assert_eq!(span.trace_id, trace_id);
    assert_eq!(span.parent_span_id, parent);
    assert_eq!(span.kind, 2, "a server span");
    assert_eq!(span.attributes["http.route"], "/v1/tenants");
    assert_eq!(span.attributes["http.request.method"], "GET");
    assert_eq!(span.attributes["http.response.status_code"], "200");
    assert!(!span.attributes["request_id"].is_empty(), "{span:?}");
}

#[tokio::test]
async fn nothing_is_exported_when_the_sdk_is_disabled() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let (child, address) = serve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
        ("OTEL_SDK_DISABLED", "true"),
    ])
    .await;
    for _ in 0..5 {
        let r = reqwest::get(format!("{address}/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // The exporter would send within its 100 ms schedule delay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(child);
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());
}

#[tokio::test]
async fn an_unsupported_exporter_stops_the_server_naming_the_variable() {
    let out = Command::new(hangar_bin())
        .arg("serve")
        .env("HANGAR_DATABASE_URL", "postgres://unused@127.0.0.1:1/x")
        .env("HANGAR_ADMIN_TOKEN", ADMIN_TOKEN)
        .env(
            "HANGAR_MASTER_KEY",
            hangar_control_plane::secrets::MasterKey::generate(),
        )
        .env("OTEL_TRACES_EXPORTER", "zipkin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("OTEL_TRACES_EXPORTER=zipkin"), "{stderr}");
}

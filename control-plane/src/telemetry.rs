//! Logging and traces of Hangar's own processes (`serve`, `dev`, `agent`): log lines on stderr
//! (filtered by `HANGAR_LOG`), and OpenTelemetry traces of API requests and reconcile steps,
//! exported with OTLP over HTTP (protobuf) when the standard `OTEL_*` variables ask for it.
//!
//! Off by default: traces are exported only when `OTEL_TRACES_EXPORTER=otlp` or an OTLP endpoint
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and never when
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The exporter itself reads the rest of
//! the standard variables (headers, timeout, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_BSP_*`), as the OpenTelemetry SDK specification describes them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TelemetryError {
    #[error(
        "{var}={value} is not supported: Hangar exports traces with OTLP (set `otlp` or `none`)"
    )]
    Exporter { var: &'static str, value: String },
    #[error("{var}={value} is not supported: Hangar's OTLP exporter speaks `http/protobuf`")]
    Protocol { var: &'static str, value: String },
    #[error("{var}={value} is not a boolean (`true` or `false`)")]
    Boolean { var: &'static str, value: String },
    #[error("failed to build the OTLP trace exporter: {0}")]
    Build(String),
}

/// Whether the `OTEL_*` variables (read through `var`) ask for an OTLP trace export.
pub fn traces_wanted(var: impl Fn(&str) -> Option<String>) -> Result<bool, TelemetryError> {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if let Some(v) = set("OTEL_SDK_DISABLED") {
        match v.to_ascii_lowercase().as_str() {
            "true" => return Ok(false),
            "false" => {}
            _ => {
                return Err(TelemetryError::Boolean {
                    var: "OTEL_SDK_DISABLED",
                    value: v,
                })
            }
        }
    }
    let wanted = match set("OTEL_TRACES_EXPORTER") {
        // A list is allowed by the specification; Hangar has one exporter.
        Some(v) => {
            let mut any = false;
            for e in v.split(',').map(str::trim) {
                match e {
                    "otlp" => any = true,
                    "none" => return Ok(false),
                    _ => {
                        return Err(TelemetryError::Exporter {
                            var: "OTEL_TRACES_EXPORTER",
                            value: v.clone(),
                        })
                    }
                }
            }
            any
        }
        None => {
            set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    };
    if wanted {
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(v) = set(name) {
                if v != "http/protobuf" {
                    return Err(TelemetryError::Protocol {
                        var: name,
                        value: v,
                    });
                }
                break;
            }
        }
    }
    Ok(wanted)
}

/// Installed logging and tracing; [`Telemetry::shutdown`] sends the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (a no-op when traces are off).
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = p.shutdown() {
                    eprintln!("warning: failed to flush the last traces: {e}");
                }
            })
            .await;
        }
    }
}

/// Installs the process's logging (stderr, `HANGAR_LOG`, default `info`) and, when the `OTEL_*`
/// variables ask for it, the OTLP trace export; `service` names the process when
/// `OTEL_SERVICE_NAME` does not.
pub fn init(service: &str) -> Result<Telemetry, TelemetryError> {
    let log_filter =
        EnvFilter::try_from_env("HANGAR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(log_filter);
    if !traces_wanted(|k| std::env::var(k).ok())? {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry { provider: None });
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TelemetryError::Build(e.to_string()))?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("hangar"))
        // Hangar's own spans (requests, reconcile steps), not every library's.
        .with_filter(EnvFilter::new(
            "warn,hangar_control_plane=info,hangar_data_plane=info,tower_http=info",
        ));
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// An incoming request's W3C trace context (`traceparent`, `tracestate`), so its span joins the
/// caller's trace.
pub fn set_remote_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Headers<'a>(&'a axum::http::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(axum::http::HeaderName::as_str).collect()
        }
    }
    if headers.contains_key("traceparent") {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rstest::rstest;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[rstest]
    #[case::nothing_set(&[], false)]
    #[case::endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")], true)]
    #[case::traces_endpoint(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")], true)]
    #[case::exporter_otlp(&[("OTEL_TRACES_EXPORTER", "otlp")], true)]
    #[case::exporter_none(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")], false)]
    #[case::disabled(&[("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "otlp")], false)]
    #[case::not_disabled(&[("OTEL_SDK_DISABLED", "false"), ("OTEL_TRACES_EXPORTER", "otlp")], true)]
    #[case::empty_endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")], false)]
    #[case::protobuf(&[("OTEL_TRACES_EXPORTER", "otlp"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")], true)]
    fn traces_are_exported_only_when_asked(#[case] vars: &[(&str, &str)], #[case] wanted: bool) {
        assert_eq!(traces_wanted(env(vars)), Ok(wanted));
    }

    #[rstest]
    #[case::zipkin(&[("OTEL_TRACES_EXPORTER", "zipkin")], "OTEL_TRACES_EXPORTER=zipkin")]
    #[case::grpc(&[("OTEL_TRACES_EXPORTER", "otlp"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], "OTEL_EXPORTER_OTLP_PROTOCOL=grpc")]
    #[case::traces_protocol_wins(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")], "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json")]
    #[case::bad_boolean(&[("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED=yes")]
    fn unsupported_settings_are_refused_naming_the_variable(
        #[case] vars: &[(&str, &str)],
        #[case] named: &str,
    ) {
        let e = traces_wanted(env(vars)).unwrap_err().to_string();
        assert!(e.contains(named), "{e}");
    }
}

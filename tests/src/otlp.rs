//! An OpenTelemetry collector for tests: an OTLP/HTTP trace receiver (`POST /v1/traces`,
//! protobuf) on a free port that decodes what Hangar's processes export, so tests can look for
//! the spans they expect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio_util::sync::CancellationToken;

/// One received span, its ids in hex and its attributes as text.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// `SpanKind` as OTLP numbers it (2 = server).
    pub kind: i32,
    /// `StatusCode` as OTLP numbers it (0 unset, 1 ok, 2 error).
    pub status: i32,
    pub attributes: BTreeMap<String, String>,
}

type Received = Arc<Mutex<Vec<ReceivedSpan>>>;

pub struct OtlpReceiver {
    /// The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Received,
    stop: CancellationToken,
}

impl OtlpReceiver {
    pub async fn start() -> anyhow::Result<Self> {
        let spans: Received = Arc::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(spans.clone());
        let (address, stop) = crate::serve_on_free_port(app).await?;
        let endpoint = format!("http://{address}");
        Ok(Self {
            endpoint,
            spans,
            stop,
        })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The first span for which `pred` holds, waiting for it up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&ReceivedSpan) -> bool,
    ) -> Option<ReceivedSpan> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| pred(s)) {
                return Some(s);
            }
            if start.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(State(spans): State<Received>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, vec![]);
    };
    let mut out = vec![];
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| text_attributes(&r.attributes).remove("service.name"))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    kind: s.kind,
                    status: s.status.map_or(0, |st| st.code),
                    attributes: text_attributes(&s.attributes),
                });
            }
        }
    }
    if let Ok(mut all) = spans.lock() {
        all.extend(out);
    }
    // An empty ExportTraceServiceResponse.
    (StatusCode::OK, vec![])
}

fn text_attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

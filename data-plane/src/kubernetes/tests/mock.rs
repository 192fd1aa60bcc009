//! A scripted Kubernetes API server for unit tests, after kube-rs's `controller-rs` fixtures:
//! a `kube::Client` over a `tower_test` mock service, and its other end, which a test script
//! answers request by request, asserting each one (method, path, query, body) on the way.
//! No cluster, no network, no timing: a request the script does not expect fails the test.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Respond = tower_test::mock::SendResponse<Response<Body>>;

/// The API server's end of a mock client.
pub(crate) struct ApiServer {
    handle: Handle,
    /// A request taken (by [`ApiServer::expect_repeated`]) but not answered yet.
    pending: Option<(Request<Body>, Respond)>,
}

/// A client and the API server it talks to.
pub(crate) fn pair() -> (kube::Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        kube::Client::new(service, "default"),
        ApiServer {
            handle,
            pending: None,
        },
    )
}

/// A request as the API server received it.
#[derive(Debug)]
pub(crate) struct Received {
    pub body: Value,
    pub content_type: Option<String>,
}

/// `path?a=1&b=2` as its path and its (non-empty) query pairs.
fn split(uri: &str) -> (String, BTreeMap<String, String>) {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let pairs = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (path.to_owned(), pairs)
}

impl ApiServer {
    /// Takes the next request, asserts it is `method uri` (query pairs in any order), and
    /// answers `status` with `answer` as JSON.
    pub async fn expect(
        &mut self,
        method: &str,
        uri: &str,
        status: u16,
        answer: Value,
    ) -> Received {
        let body = serde_json::to_vec(&answer).unwrap();
        self.expect_raw(method, uri, status, "application/json", body)
            .await
    }

    /// Answers `method uri` with `answer` for as long as it is asked again (polling), at least
    /// once; the first other request is kept for the next `expect`. Returns how many times.
    pub async fn expect_repeated(
        &mut self,
        method: &str,
        uri: &str,
        status: u16,
        answer: Value,
    ) -> usize {
        self.expect(method, uri, status, answer.clone()).await;
        let mut times = 1;
        loop {
            let next = self.next().await;
            let same = (next.0.method().as_str(), split(&next.0.uri().to_string()))
                == (method, split(uri));
            self.pending = Some(next);
            if !same {
                return times;
            }
            self.expect(method, uri, status, answer.clone()).await;
            times += 1;
        }
    }

    async fn next(&mut self) -> (Request<Body>, Respond) {
        match self.pending.take() {
            Some(p) => p,
            None => self
                .handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("no more requests")),
        }
    }

    async fn expect_raw(
        &mut self,
        method: &str,
        uri: &str,
        status: u16,
        answer_type: &str,
        answer: Vec<u8>,
    ) -> Received {
        let (request, respond) = self.next().await;
        let got_uri = request.uri().to_string();
        assert_eq!(
            (request.method().as_str(), split(&got_uri)),
            (method, split(uri)),
            "unexpected request {} {got_uri}",
            request.method()
        );
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        respond.send_response(
            Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, answer_type)
                .body(Body::from(answer))
                .unwrap(),
        );
        Received { body, content_type }
    }

    /// Takes the next request, asserts it is `method uri` (query pairs in any order), and
    /// answers 200 with `text` (a log stream, say).
    pub async fn expect_text(&mut self, method: &str, uri: &str, text: &str) {
        self.expect_raw(method, uri, 200, "text/plain", text.as_bytes().to_vec())
            .await;
    }

    /// Answers the next request with a lost connection instead, asserting it is `method uri`.
    pub async fn drop_connection(&mut self, method: &str, uri: &str) {
        let (request, respond) = self.next().await;
        assert_eq!(
            (request.method().as_str(), split(&request.uri().to_string())),
            (method, split(uri))
        );
        respond.send_error(std::io::Error::other("connection reset by peer"));
    }

    /// Server-side apply of `object`: asserts the request is an apply by field manager
    /// `hangar`, forced, of exactly `object` plus its hash annotation, and answers with it.
    pub async fn expect_apply(&mut self, uri: &str, object: &Value) -> Received {
        let got = self
            .expect(
                "PATCH",
                &format!("{uri}?fieldManager=hangar&force=true"),
                200,
                object.clone(),
            )
            .await;
        assert_eq!(
            got.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        let mut sent = got.body.clone();
        let hash = sent["metadata"]["annotations"]
            .as_object_mut()
            .and_then(|a| a.remove(crate::kubernetes::desired::APPLIED_HASH))
            .expect("the applied-hash annotation");
        assert_eq!(hash, crate::kubernetes::desired::content_hash(object));
        if sent["metadata"]["annotations"] == json!({})
            && object["metadata"].get("annotations").is_none()
        {
            sent["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
        assert_eq!(&sent, object, "applied body");
        got
    }

    /// The next request as it came, for a test to check and answer itself.
    pub async fn next_raw(
        &mut self,
    ) -> (
        Request<Body>,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        self.next().await
    }

    /// Asserts that nothing else was asked.
    pub fn assert_idle(&mut self) {
        use futures::FutureExt;
        if let Some((r, _)) = self.pending.take() {
            panic!("unexpected request {} {}", r.method(), r.uri());
        }
        if let Some(Some((r, _))) = self.handle.next_request().now_or_never() {
            panic!("unexpected request {} {}", r.method(), r.uri());
        }
    }
}

/// Runs the code under test against the script, both to their end; a side left waiting (a
/// request the script does not answer, or one it expects that never comes) fails the test
/// instead of hanging it.
pub(crate) async fn scenario<T>(
    code: impl Future<Output = T>,
    script: impl Future<Output = ()>,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (out, ()) = tokio::join!(code, script);
        out
    })
    .await
    .expect("the code under test and the API server's script both finish")
}

/// A 404 as the API server sends it.
pub(crate) fn not_found(kind: &str, name: &str) -> Value {
    status(404, "NotFound", &format!("{kind} {name:?} not found"))
}

/// A `Status` failure.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A metadata-only list answer.
pub(crate) fn metadata_list(items: Vec<Value>) -> Value {
    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": "1"}, "items": items})
}

/// An object's metadata as the cluster has it, with the hash it was applied with.
pub(crate) fn applied_meta(name: &str, hash: &str) -> Value {
    json!({"metadata": {"name": name, "annotations": {crate::kubernetes::desired::APPLIED_HASH: hash}}})
}

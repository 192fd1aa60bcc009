//! What the Hangar executor (the Python package in `data-plane/python/hangar_executor`) and the
//! agent's task pool say to each other over an environment's socket: one JSON request on one
//! line, one JSON answer on one line. Parsing is strict and bounded: the other end runs in a
//! tenant's scheduler, so it may say anything.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// The longest request line read.
pub const MAX_REQUEST: usize = 8 << 20;
/// The longest task key: one try of one task instance (`[dag_id, task_id, run_id, try, index]`
/// as JSON; Airflow's ids are at most 250 characters each).
pub const MAX_KEY: usize = 1024;
/// The longest workload: its JSON document (Airflow's are ~2 KB).
pub const MAX_WORKLOAD: usize = 256 << 10;
/// The most keys one request may carry.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Queue these tasks (a key already known is not queued again).
    Submit { tasks: Vec<Submitted> },
    /// The states of these keys.
    Status { keys: Vec<String> },
    /// Which of these keys the pool still queues or runs (a restarted scheduler adopts them).
    Adopt { keys: Vec<String> },
    /// Forget this queued task, or stop it if it runs.
    Revoke { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submitted {
    pub key: String,
    /// The workload's JSON document, as Airflow serialised it.
    pub workload: String,
}

/// A task's state as the executor is told it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum TaskState {
    Queued {
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<String>,
    },
    Running,
    Success,
    Failed {
        info: String,
    },
    /// Not known: it ended, and its end was reported before (or lost with an agent restart).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Submitted {
        accepted: Vec<String>,
        refused: Vec<Refused>,
    },
    Status {
        tasks: BTreeMap<String, TaskState>,
    },
    Adopted {
        adopted: Vec<String>,
    },
    Revoked {
        revoked: bool,
    },
    Error {
        error: String,
    },
}

/// Parses one request line, checking every bound; `Err` is the answer to give.
pub fn parse(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("the request is over {MAX_REQUEST} bytes"));
    }
    let request: Request =
        serde_json::from_slice(line).map_err(|e| format!("the request is not valid: {e}"))?;
    let keys: Vec<&String> = match &request {
        Request::Submit { tasks } => tasks.iter().map(|t| &t.key).collect(),
        Request::Status { keys } | Request::Adopt { keys } => keys.iter().collect(),
        Request::Revoke { key } => vec![key],
    };
    if keys.len() > MAX_KEYS {
        return Err(format!("the request has over {MAX_KEYS} keys"));
    }
    for key in keys {
        check_key(key)?;
    }
    Ok(request)
}

/// A key is a short, non-empty line of text.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(format!(
            "a task key must be 1 to {MAX_KEY} bytes without control characters"
        ));
    }
    Ok(())
}

/// What the pool reads from a workload: that it is an Airflow task, and when its token expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// The token's `exp`, in seconds since the epoch.
    pub expires: Option<i64>,
}

/// Checks a submitted workload: a JSON object of type `ExecuteTask` with a token; reads the
/// token's expiry (its signature is the Execution API's business, not the pool's).
pub fn check_workload(workload: &str) -> Result<WorkloadInfo, String> {
    if workload.len() > MAX_WORKLOAD {
        return Err(format!("the workload is over {MAX_WORKLOAD} bytes"));
    }
    let doc: serde_json::Value =
        serde_json::from_str(workload).map_err(|e| format!("the workload is not JSON: {e}"))?;
    if doc.get("type").and_then(|t| t.as_str()) != Some("ExecuteTask") {
        return Err("the pool runs workloads of type ExecuteTask only".to_owned());
    }
    let token = doc
        .get("token")
        .and_then(|t| t.as_str())
        .ok_or("the workload has no token")?;
    Ok(WorkloadInfo {
        expires: token_expiry(token),
    })
}

/// The `exp` claim of a JWT, unverified.
pub fn token_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"HS512"}"#), enc(claims))
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse(br#"{"op":"status","keys":["a","b"]}"#).unwrap(),
            Request::Status {
                keys: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            parse(br#"{"op":"revoke","key":"k"}"#).unwrap(),
            Request::Revoke { key: "k".into() }
        );
        let Request::Submit { tasks } =
            parse(br#"{"op":"submit","tasks":[{"key":"k","workload":"{}"}]}"#).unwrap()
        else {
            panic!("a submit")
        };
        assert_eq!(tasks[0].key, "k");
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        for (line, says) in [
            (&br#"{"op":"run"}"#[..], "not valid"),
            (br#"{"op":"status","keys":[""]}"#, "task key"),
            (br#"{"op":"status","keys":["a\nb"]}"#, "control"),
            (br#"{"op":"status","keys":["a"],"x":1}"#, "not valid"),
            (b"not json", "not valid"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let long = format!(r#"{{"op":"revoke","key":"{}"}}"#, "k".repeat(MAX_KEY + 1));
        assert!(parse(long.as_bytes()).is_err());
    }

    #[test]
    fn workloads_are_checked_and_their_expiry_read() {
        let token = jwt(r#"{"sub":"x","scope":"workload","exp":1765000000}"#);
        let w = format!(r#"{{"type":"ExecuteTask","token":"{token}","ti":{{}}}}"#);
        assert_eq!(check_workload(&w).unwrap().expires, Some(1_765_000_000));
        assert!(check_workload(r#"{"type":"RunTrigger","token":"a.b.c"}"#)
            .unwrap_err()
            .contains("ExecuteTask"));
        assert!(check_workload(r#"{"type":"ExecuteTask"}"#)
            .unwrap_err()
            .contains("token"));
        assert_eq!(
            check_workload(r#"{"type":"ExecuteTask","token":"garbage"}"#)
                .unwrap()
                .expires,
            None
        );
    }

    #[test]
    fn answers_serialise_as_the_executor_reads_them() {
        let mut tasks = BTreeMap::new();
        tasks.insert("a".to_owned(), TaskState::Running);
        tasks.insert(
            "b".to_owned(),
            TaskState::Failed {
                info: "killed".into(),
            },
        );
        tasks.insert("c".to_owned(), TaskState::Queued { info: None });
        assert_eq!(
            serde_json::to_value(Answer::Status { tasks }).unwrap(),
            serde_json::json!({"tasks": {
                "a": {"state": "running"},
                "b": {"state": "failed", "info": "killed"},
                "c": {"state": "queued"},
            }})
        );
    }
}

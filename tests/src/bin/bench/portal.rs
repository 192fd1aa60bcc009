//! `portal`: the portal's environment list and environment pages for a tenant with many
//! environments, signed in as a viewer, as a browser loads them (the HTML page only).

use std::time::Instant;

use futures::StreamExt;
use hangar_tenants::api::{CreateEnvironment, CreateTenant, CreateToken, Role};
use hangar_tests::portal::Visitor;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{histogram, ms, ControlPlane};

/// Loads `path` `n` times (after `warmup`) with `clients` visitors at once; the latency
/// histogram in microseconds and the failures.
async fn measure(
    visitors: &mut [Visitor],
    paths: &[String],
    n: usize,
    warmup: usize,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut h = histogram();
    let mut errors = 0;
    let at_once = visitors.len();
    let per = n.div_ceil(at_once);
    let results = futures::stream::iter(visitors.iter_mut().enumerate())
        .map(|(i, v)| async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            let mut out = Vec::with_capacity(per);
            for k in 0..warmup + per {
                let path = &paths[rng.gen_range(0..paths.len())];
                let start = Instant::now();
                let page = v.get(path).await;
                let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                if k >= warmup {
                    out.push((page.status.is_success(), micros.max(1)));
                }
            }
            out
        })
        .buffer_unordered(at_once)
        .collect::<Vec<_>>()
        .await;
    for (ok, micros) in results.into_iter().flatten() {
        if ok {
            h.record(micros)?;
        } else {
            errors += 1;
        }
    }
    Ok((h, errors))
}

pub async fn bench_portal(
    envs: usize,
    requests: usize,
    clients: usize,
) -> anyhow::Result<serde_json::Value> {
    let cp = ControlPlane::start().await?;
    let admin = &cp.admin;
    admin
        .create_tenant(&CreateTenant {
            name: "big".into(),
            display_name: None,
        })
        .await?;
    let seed_start = Instant::now();
    let created = futures::stream::iter(0..envs)
        .map(|i| async move {
            admin
                .create_environment(
                    "big",
                    &CreateEnvironment {
                        name: format!("env-{i:04}"),
                        tags: Some([("team".to_owned(), format!("t{}", i % 7))].into()),
                        ..Default::default()
                    },
                    None,
                )
                .await
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for c in created {
        c?;
    }
    let seed_s = seed_start.elapsed().as_secs_f64();
    eprintln!("seeded {envs} environments in {seed_s:.1} s");
    let token = admin
        .create_token(
            "big",
            &CreateToken {
                name: "bench".into(),
                role: Role::Viewer,
            },
        )
        .await?
        .token;
    let mut visitors = Vec::new();
    for _ in 0..clients {
        visitors.push(Visitor::signed_in(&cp.address, &token).await);
    }
    let first = visitors[0].get("/tenants/big").await;
    anyhow::ensure!(
        first.status.is_success() && first.body.matches("data-env=").count() == envs.min(100),
        "the list page does not show its first page of environments ({})",
        first.status
    );
    let list = vec!["/tenants/big".to_owned()];
    let pages: Vec<String> = (0..envs)
        .map(|i| format!("/tenants/big/environments/env-{i:04}"))
        .collect();
    let (list_h, list_err) = measure(&mut visitors, &list, requests, 5).await?;
    let (page_h, page_err) = measure(&mut visitors, &pages, requests, 5).await?;
    cp.shutdown.cancel();
    Ok(json!({
        "figure": "portal_p99_ms",
        "value": ms(&list_h, 0.99).max(ms(&page_h, 0.99)),
        "list_p50_ms": ms(&list_h, 0.50),
        "list_p99_ms": ms(&list_h, 0.99),
        "list_bytes": first.body.len(),
        "environment_p50_ms": ms(&page_h, 0.50),
        "environment_p99_ms": ms(&page_h, 0.99),
        "requests": list_h.len() + page_h.len(),
        "errors": list_err + page_err,
        "environments": envs,
        "clients": clients,
        "seed_s": (seed_s * 10.0).round() / 10.0,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    }))
}

pub fn portal_markdown(r: &serde_json::Value) -> String {
    format!(
        "## Portal pages for a tenant with many environments (`portal_p99_ms`)\n\n\
Command: `scripts/bench portal` (release build; one tenant with {envs} environments seeded through the API, \
{clients} signed-in viewers loading pages at once, each page's HTML as a browser gets it; control plane, \
its private Postgres 15 and the load generator on the same {cores} cores). Measured {date}.\n\n\
| page | p50 | p99 | aim |\n|---|---|---|---|\n\
| environment list `/tenants/{{t}}` ({kib} KiB) | {lp50} ms | {lp99} ms | p99 ≤ 100 ms |\n\
| environment page `/tenants/{{t}}/environments/{{e}}` | {ep50} ms | {ep99} ms | p99 ≤ 100 ms |\n\n\
{requests} pages measured, {errors} errors.\n\n",
        envs = r["environments"],
        clients = r["clients"],
        cores = r["cores"],
        date = chrono::Utc::now().format("%Y-%m-%d"),
        kib = r["list_bytes"].as_u64().unwrap_or(0) / 1024,
        lp50 = r["list_p50_ms"],
        lp99 = r["list_p99_ms"],
        ep50 = r["environment_p50_ms"],
        ep99 = r["environment_p99_ms"],
        requests = r["requests"],
        errors = r["errors"],
    )
}

//! The platform page's charts as server-rendered SVG (no script): each cell's pool utilization
//! over the last day, and each tenant's worker-hours. Pure functions of the samples.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::service::usage::Usage;

const W: f64 = 720.0;
const H: f64 = 220.0;
/// Room for the axis labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;
const COLOURS: [&str; 6] = [
    "#0b57d0", "#116329", "#a40e26", "#7d4e00", "#6639ba", "#1b7c83",
];
/// Samples further apart than this are not joined by a line (nothing was sampled between).
const GAP: chrono::Duration = chrono::Duration::minutes(3);

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn x_of(at: DateTime<Utc>, since: DateTime<Utc>, until: DateTime<Utc>) -> f64 {
    let span = (until - since).num_seconds().max(1) as f64;
    let t = (at - since).num_seconds() as f64 / span;
    LEFT + t.clamp(0.0, 1.0) * (W - LEFT - 4.0)
}

fn y_of(u: f64) -> f64 {
    TOP + (1.0 - u.clamp(0.0, 1.0)) * (H - TOP - BOTTOM)
}

/// Each cell's utilization (held workers / slots) over the window, one line per cell.
pub fn utilization_svg(u: &Usage) -> String {
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-labelledby=\"utilization-title\" class=\"chart\" id=\"utilization-chart\">\
         <title id=\"utilization-title\">Pool utilization per cell, last 24 hours</title>"
    );
    for (v, label) in [(0.0, "0%"), (0.5, "50%"), (1.0, "100%")] {
        let y = y_of(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d0d7de\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#57606a\">{label}</text>",
            W - 4.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let hours = (u.until - u.since).num_hours().max(1);
    for h in (0..=hours).step_by(6) {
        let at = u.since + chrono::Duration::hours(h);
        let x = x_of(at, u.since, u.until);
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>",
            H - 6.0,
            at.format("%H:%M")
        );
    }
    for (i, pool) in u.pools.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last: Option<DateTime<Utc>> = None;
        for &(at, v) in &pool.points {
            let point = (x_of(at, u.since, u.until), y_of(v));
            match (runs.last_mut(), last) {
                (Some(run), Some(prev)) if at - prev <= GAP => run.push(point),
                _ => runs.push(vec![point]),
            }
            last = Some(at);
        }
        for run in runs {
            if run.len() == 1 {
                let (x, y) = run[0];
                let _ = write!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{colour}\"/>"
                );
            } else {
                let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = write!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                    pts.join(" ")
                );
            }
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{colour}\">{}</text>",
            LEFT + 8.0 + 110.0 * (i as f64),
            TOP + 12.0,
            escape(&pool.cell)
        );
    }
    if u.pools.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#57606a\">no samples yet: the pools are sampled once a minute</text>",
            W / 2.0,
            H / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

/// Each tenant's worker-hours over the window, as horizontal bars (the 20 largest).
pub fn worker_hours_svg(u: &Usage) -> String {
    let rows: Vec<&(String, f64)> = u.worker_hours.iter().take(20).collect();
    let row_h = 22.0;
    let height = (rows.len().max(1) as f64) * row_h + 8.0;
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9);
    let name_w = 140.0;
    let bar_w = W - name_w - 90.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {height}\" role=\"img\" \
         aria-labelledby=\"worker-hours-title\" class=\"chart\" id=\"worker-hours-chart\">\
         <title id=\"worker-hours-title\">Worker-hours per tenant, last 24 hours</title>"
    );
    for (i, (tenant, hours)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let w = (hours / max) * bar_w;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\" fill=\"#1b1f24\">{}</text>\
             <rect x=\"{name_w}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"14\" fill=\"#0b57d0\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#1b1f24\">{hours:.2} h</text>",
            name_w - 6.0,
            y + 12.0,
            escape(tenant),
            y + 2.0,
            name_w + w + 6.0,
            y + 12.0
        );
    }
    if rows.is_empty() {
        let _ = write!(
            s,
            "<text x=\"8\" y=\"18\" font-size=\"13\" fill=\"#57606a\">no tenants yet</text>"
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::usage::PoolSeries;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + min * 60, 0).unwrap_or_default()
    }

    fn usage() -> Usage {
        Usage {
            since: at(0),
            until: at(24 * 60),
            pools: vec![PoolSeries {
                cell: "local<1>".into(),
                // Two runs: minutes 0–2, then a gap, then 600–601.
                points: vec![
                    (at(0), 0.0),
                    (at(1), 0.5),
                    (at(2), 1.0),
                    (at(600), 0.25),
                    (at(601), 0.25),
                ],
            }],
            worker_hours: vec![("acme".into(), 3.0), ("beta".into(), 1.5)],
        }
    }

    #[test]
    fn utilization_lines_break_where_nothing_was_sampled() {
        let svg = utilization_svg(&usage());
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // 0% at the bottom, 100% at the top of the plot.
        assert!(
            svg.contains(&format!("{LEFT:.1},{:.1}", H - BOTTOM)),
            "{svg}"
        );
        assert!(svg.contains(&format!("{:.1}", TOP)), "{svg}");
        assert!(svg.contains("local&lt;1&gt;"), "names are escaped: {svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn worker_hour_bars_are_proportional() {
        let svg = worker_hours_svg(&usage());
        let bar_w = W - 140.0 - 90.0;
        assert!(svg.contains(&format!("width=\"{bar_w:.1}\"")), "{svg}");
        assert!(
            svg.contains(&format!("width=\"{:.1}\"", bar_w / 2.0)),
            "{svg}"
        );
        assert!(svg.contains("3.00 h") && svg.contains("1.50 h"));
    }

    #[test]
    fn an_empty_day_says_so() {
        let empty = Usage {
            pools: vec![],
            worker_hours: vec![],
            ..usage()
        };
        assert!(utilization_svg(&empty).contains("no samples yet"));
        assert!(worker_hours_svg(&empty).contains("no tenants yet"));
    }
}

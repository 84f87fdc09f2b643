//! The capacity view for people: `/status.json` (what `frontdoor status` prints) and
//! `/status`, an HTML page with a live chart of utilization and queue time, both on the admin
//! listener.

use serde::{Deserialize, Serialize};

use super::{CapacityView, Controllers};

/// One pool's row of the status report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    /// The pool's name.
    pub pool: String,
    /// Requests in flight to its backends now.
    pub in_flight: usize,
    /// Requests waiting for a slot now.
    pub queued: usize,
    /// Whether a standing queue exists (shedding).
    pub overloaded: bool,
    /// The sliding-window figures.
    #[serde(flatten)]
    pub view: CapacityView,
    /// Whether the pool has `[pools.NAME.admission]` (without, the figures above are zero).
    #[serde(default = "yes")]
    pub admission: bool,
    /// Upgraded (WebSocket) connections open now; they hold no slot.
    #[serde(default)]
    pub upgraded: usize,
    /// The pool's `max-upgraded`.
    #[serde(default)]
    pub max_upgraded: usize,
}

fn yes() -> bool {
    true
}

impl PoolStatus {
    /// The row of a pool without admission (only its upgraded connections to show).
    pub fn without_admission(pool: &str) -> Self {
        PoolStatus {
            pool: pool.to_string(),
            in_flight: 0,
            queued: 0,
            overloaded: false,
            view: CapacityView::default(),
            admission: false,
            upgraded: 0,
            max_upgraded: 0,
        }
    }
}

/// Every admission pool's status, by name.
pub fn report(controllers: &Controllers) -> Vec<PoolStatus> {
    controllers
        .all()
        .into_iter()
        .map(|(pool, admission)| {
            let (in_flight, queued) = admission.load();
            PoolStatus {
                pool,
                in_flight,
                queued,
                overloaded: admission.overloaded(),
                view: admission.view(),
                admission: true,
                upgraded: 0,
                max_upgraded: 0,
            }
        })
        .collect()
}

/// The report as a fixed-width table (for `frontdoor status`).
pub fn table(rows: &[PoolStatus]) -> String {
    let mut out = format!(
        "{:<16} {:>9} {:>9} {:>9} {:>8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>8} {:>12}\n",
        "pool",
        "arrive/s",
        "resp ms",
        "carried",
        "slots",
        "util",
        "queue",
        "q p50 ms",
        "q p99 ms",
        "shed/s",
        "state",
        "upgraded"
    );
    for r in rows {
        let v = &r.view;
        let upgraded = format!("{}/{}", r.upgraded, r.max_upgraded);
        if !r.admission {
            let dash = "-";
            out.push_str(&format!(
                "{:<16} {dash:>9} {dash:>9} {dash:>9} {dash:>8} {dash:>6} {dash:>6} {dash:>9} {dash:>9} {dash:>9} {:>8} {upgraded:>12}\n",
                r.pool, "ok",
            ));
            continue;
        }
        out.push_str(&format!(
            "{:<16} {:>9.1} {:>9.1} {:>9.2} {:>8} {:>5.0}% {:>6} {:>9.1} {:>9.1} {:>9.1} {:>8} {upgraded:>12}\n",
            r.pool,
            v.arrival_rate,
            v.mean_response_secs * 1000.0,
            v.carried,
            v.slots,
            v.utilization * 100.0,
            r.queued,
            v.queue_p50_secs * 1000.0,
            v.queue_p99_secs * 1000.0,
            v.shed_rate,
            if r.overloaded { "SHEDDING" } else { "ok" },
        ));
    }
    if !rows.iter().any(|r| r.admission) {
        out.push_str("(no pool has [pools.NAME.admission])\n");
    }
    out
}

/// The HTML page: polls `/status.json` every second and draws the last five minutes.
pub const PAGE: &str = r##"<!doctype html>
<html><head><meta charset="utf-8"><title>frontdoor status</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222 }
table { border-collapse: collapse } td, th { padding: 4px 10px; text-align: right; border-bottom: 1px solid #ddd }
th:first-child, td:first-child { text-align: left }
.shedding { color: #b00; font-weight: bold }
canvas { border: 1px solid #ccc; margin-top: 1em }
</style></head><body>
<h1>frontdoor: how busy, how much headroom</h1>
<p>Per pool over the last 10 s. Carried traffic = throughput × mean response time (Little's
law): the slots busy on average. Utilization = carried / slots. Queue time is measured from
arrival at frontdoor to dispatch to the app. Upgraded: WebSocket connections open now (they hold
no slot) and the pool's max-upgraded; a pool without admission shows only those.</p>
<table id="pools"><thead><tr><th>pool</th><th>arrivals/s</th><th>response ms</th><th>carried</th>
<th>slots</th><th>utilization</th><th>in flight</th><th>queued</th><th>queue p50 ms</th><th>queue p99 ms</th>
<th>shed/s</th><th>state</th><th>upgraded</th></tr></thead><tbody></tbody></table>
<canvas id="chart" width="900" height="260"></canvas>
<p>Chart: utilization % (solid) and queue p99 ms (dashed) of each pool, one point a second.</p>
<script>
const history = {}; const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
function cell(v) { const td = document.createElement("td"); td.textContent = v; return td; }
async function tick() {
  let rows;
  try { rows = await (await fetch("status.json")).json(); } catch (e) { return; }
  const body = document.querySelector("#pools tbody"); body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    const upgraded = r.upgraded + " / " + r.max_upgraded;
    if (!r.admission) {
      [r.pool, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "ok", upgraded].forEach(v => tr.appendChild(cell(v)));
      body.appendChild(tr); continue;
    }
    [r.pool, r.arrival_rate.toFixed(1), (r.mean_response_secs * 1000).toFixed(1), r.carried.toFixed(2),
     r.slots, (r.utilization * 100).toFixed(0) + "%", r.in_flight, r.queued,
     (r.queue_p50_secs * 1000).toFixed(1), (r.queue_p99_secs * 1000).toFixed(1), r.shed_rate.toFixed(1),
     r.overloaded ? "SHEDDING" : "ok", upgraded].forEach(v => tr.appendChild(cell(v)));
    if (r.overloaded) tr.className = "shedding";
    body.appendChild(tr);
    const h = history[r.pool] ||= [];
    h.push([r.utilization * 100, r.queue_p99_secs * 1000]); if (h.length > 300) h.shift();
  }
  draw();
}
function draw() {
  const c = document.getElementById("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const all = Object.values(history).flat(); const top = Math.max(100, ...all.map(p => Math.max(p[0], p[1])));
  Object.entries(history).forEach(([name, h], i) => {
    for (const [k, dash] of [[0, []], [1, [4, 4]]]) {
      g.beginPath(); g.setLineDash(dash); g.strokeStyle = colors[i % colors.length];
      h.forEach((p, x) => { const y = c.height - p[k] / top * (c.height - 10);
        x === 0 ? g.moveTo(x * 3, y) : g.lineTo(x * 3, y); });
      g.stroke();
    }
    g.setLineDash([]); g.fillStyle = colors[i % colors.length]; g.fillText(name, 8, 14 + 14 * i);
  });
  g.fillStyle = "#666"; g.fillText("max " + top.toFixed(0), c.width - 70, 14);
}
tick(); setInterval(tick, 1000);
</script></body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_upgraded_connections_of_every_pool() {
        let mut cable = PoolStatus::without_admission("cable");
        cable.upgraded = 3;
        cable.max_upgraded = 1000;
        let mut app = PoolStatus::without_admission("app");
        app.admission = true;
        app.max_upgraded = 50;
        let text = table(&[app, cable]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].trim_end().ends_with("upgraded"), "{text}");
        assert!(
            lines[1].starts_with("app ") && lines[1].ends_with(" 0/50"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("cable ") && lines[2].ends_with(" 3/1000"),
            "{text}"
        );
        assert!(
            lines[2].contains(" - "),
            "no capacity figures without admission: {text}"
        );
        let json = serde_json::to_string(&PoolStatus::without_admission("x")).unwrap();
        let back: PoolStatus = serde_json::from_str(&json).unwrap();
        assert!(!back.admission);
    }
}

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
            }
        })
        .collect()
}

/// The report as a fixed-width table (for `frontdoor status`).
pub fn table(rows: &[PoolStatus]) -> String {
    let mut out = format!(
        "{:<16} {:>9} {:>9} {:>9} {:>8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>8}\n",
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
        "state"
    );
    for r in rows {
        let v = &r.view;
        out.push_str(&format!(
            "{:<16} {:>9.1} {:>9.1} {:>9.2} {:>8} {:>5.0}% {:>6} {:>9.1} {:>9.1} {:>9.1} {:>8}\n",
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
    if rows.is_empty() {
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
arrival at frontdoor to dispatch to the app.</p>
<table id="pools"><thead><tr><th>pool</th><th>arrivals/s</th><th>response ms</th><th>carried</th>
<th>slots</th><th>utilization</th><th>in flight</th><th>queued</th><th>queue p50 ms</th><th>queue p99 ms</th>
<th>shed/s</th><th>state</th></tr></thead><tbody></tbody></table>
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
    [r.pool, r.arrival_rate.toFixed(1), (r.mean_response_secs * 1000).toFixed(1), r.carried.toFixed(2),
     r.slots, (r.utilization * 100).toFixed(0) + "%", r.in_flight, r.queued,
     (r.queue_p50_secs * 1000).toFixed(1), (r.queue_p99_secs * 1000).toFixed(1), r.shed_rate.toFixed(1),
     r.overloaded ? "SHEDDING" : "ok"].forEach(v => tr.appendChild(cell(v)));
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

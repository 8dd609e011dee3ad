//! The explorer, `GET /`: one plain HTML page (no script) of what the directory holds — nodes
//! with their farm, capacity, use, last lease and up/down, farms, a capacity picture (inline
//! SVG bars per node), contracts (state, who signed, where placed, the node's reports), and the
//! log's size and checkpoint. Every text from a document is escaped.

use std::fmt::Write as _;

use trust::PublicKey;

use crate::core::Notary;
use crate::directory::{self as dir, NodeInfo};
use crate::store::StoreError;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn short(key: &PublicKey) -> String {
    escape(&key.short())
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}.up{color:#0a0;font-weight:bold}.down{color:#c00;font-weight:bold}\
pre{background:#f4f4f4;padding:1em;overflow-x:auto}code{font-size:.9em}";

fn ago(now: u64, lease: Option<&crate::store::StoredLease>) -> String {
    match lease {
        None => "never".into(),
        Some(l) if l.expires > now => format!("lease runs {} s more", l.expires - now),
        Some(l) => format!("lease ran out {} s ago", now - l.expires),
    }
}

fn percent(used: u64, total: u64) -> u64 {
    used.saturating_mul(100)
        .checked_div(total)
        .map_or(0, |p| p.min(100))
}

/// One SVG row: a grey bar of the node's CPUs and memory, filled to what is placed.
fn capacity_svg(nodes: &[NodeInfo]) -> String {
    const ROW: usize = 28;
    let height = nodes.len().max(1) * ROW + 10;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"{height}\" role=\"img\" aria-label=\"capacity per node\">"
    );
    for (i, n) in nodes.iter().enumerate() {
        let y = i * ROW + 5;
        let cap = &n.registration.capacity;
        let cpu = percent(n.used.vcpus, u64::from(cap.cpus));
        let mem = percent(n.used.memory_mib, cap.memory_mib);
        let colour = if n.live { "#3a7" } else { "#c55" };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"12\">{name}</text>\
             <rect x=\"240\" y=\"{y}\" width=\"200\" height=\"10\" fill=\"#ddd\"/>\
             <rect x=\"240\" y=\"{y}\" width=\"{cw}\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"445\" y=\"{ty2}\" font-size=\"10\">CPU {cpu}%</text>\
             <rect x=\"240\" y=\"{y2}\" width=\"200\" height=\"10\" fill=\"#ddd\"/>\
             <rect x=\"240\" y=\"{y2}\" width=\"{mw}\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"445\" y=\"{ty3}\" font-size=\"10\">memory {mem}%</text>",
            ty = y + 14,
            name = short(&n.registration.node),
            cw = cpu * 2,
            mw = mem * 2,
            ty2 = y + 9,
            y2 = y + 12,
            ty3 = y + 21,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The page, with `now` (seconds since the Unix epoch) deciding up and down.
pub fn page(notary: &Notary, now: u64) -> Result<String, StoreError> {
    let view = notary.view();
    let nodes = dir::nodes(&view, now)?;
    let farms = dir::farms(&view, &nodes)?;
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>nullos-notary</title><style>{STYLE}</style></head><body>\
         <h1>nullos-notary</h1>\
         <p>Log <code>{origin}</code>: <strong id=\"size\">{size}</strong> entries.</p>",
        origin = escape(notary.origin()),
        size = notary.size(),
    );

    html.push_str("<h2>Nodes</h2><table id=\"nodes\"><tr><th>Node</th><th>Farm</th><th>Approved</th><th>CPUs used / total</th><th>Memory MiB used / total</th><th>Last seen</th><th>State</th></tr>");
    for n in &nodes {
        let r = &n.registration;
        let (class, state) = if n.live {
            ("up", "up")
        } else {
            ("down", "down")
        };
        let _ = write!(
            html,
            "<tr class=\"node\"><td><code>{node}</code></td><td><code>{farm}</code></td><td>{approved}</td>\
             <td>{uc} / {tc}</td><td>{um} / {tm}</td><td>{seen}</td><td class=\"{class}\">{state}</td></tr>",
            node = short(&r.node),
            farm = short(&r.farm),
            approved = if n.approved { "yes" } else { "no" },
            uc = n.used.vcpus,
            tc = r.capacity.cpus,
            um = n.used.memory_mib,
            tm = r.capacity.memory_mib,
            seen = escape(&ago(now, n.lease.as_ref())),
        );
    }
    html.push_str("</table>");

    html.push_str("<h2>Capacity</h2>");
    html.push_str(&capacity_svg(&nodes));

    html.push_str("<h2>Farms</h2><table id=\"farms\"><tr><th>Farm</th><th>Farmer</th><th>Approved nodes</th><th>Up</th><th>CPUs</th><th>Memory MiB</th></tr>");
    for (farm, v) in &farms {
        let _ = write!(
            html,
            "<tr><td>{name}</td><td><code>{farmer}</code></td><td>{nodes}</td><td>{live}</td><td>{cpus}</td><td>{mem}</td></tr>",
            name = escape(&farm.name),
            farmer = short(&farm.farmer),
            nodes = v["nodes"],
            live = v["live_nodes"],
            cpus = v["capacity"]["cpus"],
            mem = v["capacity"]["memory_mib"],
        );
    }
    html.push_str("</table>");

    html.push_str("<h2>Contracts</h2><table id=\"contracts\"><tr><th>Contract</th><th>Version</th><th>State</th><th>Signed</th><th>Not signed</th><th>Placed on</th><th>Reports</th></tr>");
    for id in dir::contract_ids(&view, None)? {
        let Some(c) = dir::contract(&view, &id)? else {
            continue;
        };
        let Some(latest) = c.latest() else { continue };
        let placed = c.placement.map_or_else(
            || "nowhere".to_string(),
            |(node, version)| format!("<code>{}</code> (version {version})", short(&node)),
        );
        let mut reports = String::new();
        for r in &c.reports {
            for w in &r.workloads {
                let _ = write!(
                    reports,
                    "<div><code>{node}</code>: {name} {state}, {restarts} restarts{reason}</div>",
                    node = short(&r.node),
                    name = escape(&w.name),
                    state = escape(w.state.name()),
                    restarts = w.restarts,
                    reason = if w.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", escape(&w.reason))
                    },
                );
            }
        }
        let _ = write!(
            html,
            "<tr class=\"contract\"><td><code>{id}</code></td><td>{version}</td><td>{state}</td>\
             <td>{signed}</td><td>{unsigned}</td><td>{placed}</td><td>{reports}</td></tr>",
            id = escape(&id.0.to_hex()[..16]),
            version = latest.version,
            state = escape(c.state()),
            signed = escape(&c.signed.join(", ")),
            unsigned = escape(&c.unsigned.join(", ")),
        );
    }
    html.push_str("</table>");

    let _ = writeln!(
        html,
        "<h2>Latest checkpoint</h2><pre id=\"checkpoint\">{checkpoint}</pre>\
         <h2>Verifier key</h2><pre>{key}</pre></body></html>",
        checkpoint = escape(&notary.checkpoint()),
        key = escape(&notary.verifier_key()),
    );
    Ok(html)
}

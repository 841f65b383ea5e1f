//! The monitor's HTTP side: status page, verdicts, status JSON, metrics, health.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use vdb_proto::ErrorCode;
use vdb_proto::paths;
use vdb_service::ApiError;

use crate::charts::{
    self, MirrorCharts, ReleaseCharts, dur, esc, history_svg, history_title, label,
    release_summary, release_svg, short,
};
use crate::monitor::{MirrorStatusDoc, Monitor, StatusDoc, state_name};

/// The router over a shared monitor.
pub(crate) fn router(m: Arc<Monitor>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/v1/verdicts", get(verdicts))
        .route("/api/v1/verdicts/signed", get(signed_verdicts))
        .route("/api/v1/status", get(status))
        .route("/api/v1/charts/releases", get(release_charts))
        .route("/api/v1/charts/mirrors", get(mirror_charts))
        .route(paths::METRICS, get(metrics))
        .route(paths::HEALTH, get(|| async { "ok" }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such page on the monitor (try /, /api/v1/verdicts, /api/v1/verdicts/signed, /api/v1/status, /api/v1/charts/releases, /api/v1/charts/mirrors, /metrics)",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(4096))
        .with_state(m)
}

fn error(code: StatusCode, c: ErrorCode, msg: &str) -> Response {
    ApiError::status_code(code, c, msg).into_response()
}

#[derive(Deserialize)]
struct VerdictQuery {
    view: Option<String>,
}

/// The published report in its signed envelope (what directories with `monitor_keys` read).
async fn signed_verdicts(State(m): State<Arc<Monitor>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        m.signed_verdicts().to_json(),
    )
        .into_response()
}

async fn verdicts(State(m): State<Arc<Monitor>>, Query(q): Query<VerdictQuery>) -> Response {
    match q.view.as_deref() {
        None | Some("published") => Json(m.verdicts(false)).into_response(),
        Some("local") => Json(m.verdicts(true)).into_response(),
        Some(_) => error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadView,
            "view must be `published` (default) or `local`",
        ),
    }
}

/// A document read from the database, as JSON, or a 500 naming the log.
fn json_or_500<T: serde::Serialize>(what: &str, doc: anyhow::Result<T>) -> Response {
    match doc {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{what}");
            internal()
        }
    }
}

fn internal() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "the monitor could not read its database; see its log",
    )
}

async fn status(State(m): State<Arc<Monitor>>) -> Response {
    json_or_500("status", m.status())
}

async fn release_charts(State(m): State<Arc<Monitor>>) -> Response {
    json_or_500("release charts", m.release_charts())
}

async fn mirror_charts(State(m): State<Arc<Monitor>>) -> Response {
    json_or_500("mirror charts", m.mirror_charts())
}

async fn metrics(State(m): State<Arc<Monitor>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.metrics.encode(),
    )
        .into_response()
}

async fn page(State(m): State<Arc<Monitor>>) -> Response {
    let doc = (|| Ok::<_, anyhow::Error>((m.status()?, m.release_charts()?, m.mirror_charts()?)))();
    match doc {
        Ok((doc, rel, hist)) => Html(render(&doc, &rel, &hist)).into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "status page");
            internal()
        }
    }
}

fn ago(now: i64, t: Option<i64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!("{} ago", dur(now - t)),
    }
}

const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#f6f7f9;color:#1d2330}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.meta{color:#5b6477;font-size:.9rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #e3e6eb;vertical-align:top}
.st{display:inline-block;padding:.1rem .5rem;border-radius:.8rem;font-size:.85rem;color:#fff;white-space:nowrap}
.in_service{background:#1f883d}.lagging{background:#bf8700}.old{background:#d1242f}
.out{background:#6e1b1b}.maintenance{background:#57606a}
.h{display:inline-block;width:.6rem;height:.9rem;margin-right:1px;border-radius:2px}
.good{background:#1f883d}.failed{background:#bf8700}.bad{background:#d1242f}
.why{color:#5b6477;font-size:.85rem}
@media (max-width:700px){
 thead{display:none}table,tbody,tr,td{display:block;width:auto}
 tr{margin:0 0 .8rem;border:1px solid #e3e6eb;border-radius:.4rem;background:#fff}
 td{border:none;padding:.3rem .6rem}
 td::before{content:attr(data-l) ': ';font-weight:600;color:#5b6477}
}
figure.chart{margin:.5rem 0;padding:.5rem;background:#fff;border:1px solid #e3e6eb;border-radius:.4rem}
svg.chart{display:block;max-width:100%;height:auto}
figcaption{color:#5b6477;font-size:.9rem;margin-top:.3rem}
.key{display:inline-block;width:.8rem;height:.8rem;margin:0 .25rem 0 .6rem;vertical-align:middle;border-radius:2px}
@media (max-width:700px){figure.chart{overflow-x:auto}svg.chart{max-width:none}}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:1.1rem}
ul.tree ul{border-left:2px solid #c9ced8;margin-left:.3rem}
ul.tree li{margin:.2rem 0;position:relative}
ul.tree ul>li::before{content:'';position:absolute;left:-1.1rem;top:.7rem;width:.9rem;border-top:2px solid #c9ced8}";

/// The status page: plain responsive HTML, no scripts, no external assets.
pub(crate) fn render(d: &StatusDoc, rel: &ReleaseCharts, hist: &MirrorCharts) -> String {
    let now = d.generated_at;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\">\
         <title>{net} mirrors</title><style>{CSS}</style></head><body>\
         <h1>{net} mirror status</h1><p class=\"meta\">Monitor {mon}; last round {t} (Unix {now}); newest: {newest}; quorum {q}</p>",
        net = esc(&d.network),
        mon = esc(&d.monitor),
        t = if now == 0 {
            "not yet".into()
        } else {
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64),
            )
        },
        newest = esc(&d
            .newest
            .iter()
            .map(|(db, v)| format!("{db} {v}"))
            .collect::<Vec<_>>()
            .join(", ")),
        q = d.quorum,
    );
    for e in d.master_errors.iter().chain(&d.peer_errors) {
        let _ = write!(h, "<p class=\"why\">{}</p>", esc(e));
    }
    if !d.pending_joins.is_empty() {
        let _ = write!(
            h,
            "<p id=\"pending-joins\" class=\"meta\">Join requests waiting for the network's admin \
             (<code>vdb mirror pending</code>): {}</p>",
            esc(&d.pending_joins.join(", "))
        );
    }
    h.push_str(
        "<h2>Mirrors</h2><table id=\"mirrors\"><thead><tr><th>Mirror</th><th>State</th><th>Lag</th>\
         <th>Last good check</th><th>Region</th><th>Tier</th><th>Serving</th><th>History</th></tr></thead><tbody>",
    );
    for m in &d.mirrors {
        let serving = m
            .serving
            .iter()
            .map(|(db, v)| format!("{db} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut hist = String::new();
        for c in m.history.iter().rev() {
            let _ = write!(
                hist,
                "<span class=\"h {}\" title=\"{} {}\"></span>",
                esc(&c.result),
                esc(&c.result),
                esc(&c.detail)
            );
        }
        let _ = write!(
            h,
            "<tr class=\"mirror\" data-mirror=\"{n}\" data-state=\"{sn}\"><td data-l=\"Mirror\"><b>{n}</b></td>\
             <td data-l=\"State\"><span class=\"st {sn}\">{sl}</span><div class=\"why\">{why}{notes}</div></td>\
             <td data-l=\"Lag\">{lag}</td><td data-l=\"Last good check\">{lg}</td>\
             <td data-l=\"Region\">{reg}</td><td data-l=\"Tier\">{tier}</td><td data-l=\"Serving\">{serving}</td>\
             <td data-l=\"History\">{hist}</td></tr>",
            n = esc(&m.name),
            sn = state_name(m.state),
            sl = label(m.state),
            why = esc(&m.reason),
            notes = m
                .notes
                .iter()
                .map(|x| format!("<br>{}", esc(x)))
                .collect::<String>(),
            lag = if m.lag_secs == 0 {
                "none".into()
            } else {
                dur(m.lag_secs)
            },
            lg = ago(now, m.last_good),
            reg = esc(&[m.region.clone(), m.country.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" / ")),
            tier = esc(&tier(&m.hubs, &m.leaves)),
            serving = esc(&serving),
        );
    }
    h.push_str("</tbody></table>");
    tree_section(&mut h, d);
    release_section(&mut h, now, rel);
    history_section(&mut h, hist);
    h.push_str(
        "<p class=\"meta\">JSON: <a href=\"/api/v1/status\">/api/v1/status</a> · \
         <a href=\"/api/v1/verdicts\">/api/v1/verdicts</a> · \
         <a href=\"/api/v1/charts/releases\">/api/v1/charts/releases</a> · \
         <a href=\"/api/v1/charts/mirrors\">/api/v1/charts/mirrors</a> · \
         <a href=\"/metrics\">/metrics</a></p></body></html>",
    );
    h
}

/// A mirror's place in the hub tree: "hub of a, b", "leaf of h", both, or nothing.
fn tier(hubs: &[String], leaves: &[String]) -> String {
    let mut parts = Vec::new();
    if !leaves.is_empty() {
        parts.push(format!("hub of {}", leaves.join(", ")));
    }
    if !hubs.is_empty() {
        parts.push(format!("leaf of {}", hubs.join(", ")));
    }
    parts.join("; ")
}

/// The distribution tree, when the registry has hubs: the masters at the root, under them
/// every mirror that pulls from them (hubs, and mirrors with no hub), under each hub the
/// leaves that name it. A leaf of several hubs is drawn under each; one whose hubs are all
/// unknown hangs from the masters, marked so.
fn tree_section(h: &mut String, d: &StatusDoc) {
    if d.mirrors.iter().all(|m| m.hubs.is_empty()) {
        return;
    }
    let named: std::collections::HashMap<&str, &MirrorStatusDoc> =
        d.mirrors.iter().map(|m| (m.name.as_str(), m)).collect();
    let by_name = |n: &str| named.get(n).copied();
    let node = |h: &mut String, m: &MirrorStatusDoc, note: &str| {
        let _ = write!(
            h,
            "<li data-node=\"{n}\"><b>{n}</b> <span class=\"st {sn}\">{sl}</span>{note}",
            n = esc(&m.name),
            sn = state_name(m.state),
            sl = label(m.state),
            note = esc(note),
        );
    };
    h.push_str(
        "<h2>Distribution tree</h2><p class=\"meta\">Who pushes to whom, from the masters' \
         registry: the masters push to the hubs and to mirrors with no hub; each hub relays to \
         its leaves, which pull from it first.</p><ul class=\"tree\" id=\"tree\"><li><b>masters</b><ul>",
    );
    for m in &d.mirrors {
        let known_hub = m.hubs.iter().any(|x| by_name(x).is_some());
        if known_hub {
            continue;
        }
        let note = if m.hubs.is_empty() {
            String::new()
        } else {
            format!(" (its hubs {} are not registered)", m.hubs.join(", "))
        };
        node(h, m, &note);
        let leaves: Vec<&MirrorStatusDoc> = m.leaves.iter().filter_map(|l| by_name(l)).collect();
        if !leaves.is_empty() {
            h.push_str("<ul>");
            for leaf in leaves {
                let others: Vec<&str> = leaf
                    .hubs
                    .iter()
                    .map(String::as_str)
                    .filter(|x| *x != m.name)
                    .collect();
                let note = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also via {})", others.join(", "))
                };
                node(h, leaf, &note);
                h.push_str("</li>");
            }
            h.push_str("</ul>");
        }
        h.push_str("</li>");
    }
    h.push_str("</ul></li></ul>");
}

/// Each recent release: its figure, a one-line summary and a row per mirror (the figure's
/// text alternative; the same numbers as `/api/v1/charts/releases`).
fn release_section(h: &mut String, now: i64, rel: &ReleaseCharts) {
    let _ = write!(
        h,
        "<h2>Release spread</h2><p class=\"meta\">Time from a release's first sighting in the \
         masters' manifest to the first check that found each mirror serving it (or newer), from \
         this monitor's rounds{}. Data: <a href=\"/api/v1/charts/releases\">/api/v1/charts/releases</a>.</p>",
        if rel.resolution_secs > 0 {
            format!(
                " (every {}, sooner after a release)",
                dur(rel.resolution_secs as i64)
            )
        } else {
            String::new()
        }
    );
    if rel.releases.is_empty() {
        h.push_str("<p class=\"meta\">No release seen yet.</p>");
    }
    for (i, r) in rel.releases.iter().enumerate() {
        let _ = write!(
            h,
            "<section class=\"release\" data-release=\"{db}-{v}\"><h3>{db} {v}</h3>\
             <p class=\"meta\">published {pub_ago} · on {n} of {total} mirrors</p>\
             <figure class=\"chart\">{svg}<figcaption class=\"summary\">{sum}</figcaption></figure>\
             <table class=\"spread\"><tbody>",
            db = esc(&r.db),
            v = r.version,
            pub_ago = ago(now, Some(r.released_at)),
            n = r.served,
            total = r.total,
            svg = release_svg(&format!("release-{i}"), r, rel.generated_at),
            sum = esc(&release_summary(r)),
        );
        for m in &r.mirrors {
            let cell = match m.secs {
                Some(t) => format!("serving since {} after release", dur(t)),
                None => "not yet".to_owned(),
            };
            let _ = write!(
                h,
                "<tr class=\"rollout\" data-mirror=\"{n}\"><td data-l=\"Mirror\">{n}</td><td data-l=\"Rollout\">{cell}</td></tr>",
                n = esc(&m.name),
            );
        }
        if r.mirrors_left_off > 0 {
            let _ = write!(
                h,
                "<tr><td colspan=\"2\">and {} more mirrors (see the JSON)</td></tr>",
                r.mirrors_left_off
            );
        }
        h.push_str("</tbody></table></section>");
    }
    if rel.releases_left_off > 0 {
        let _ = write!(
            h,
            "<p class=\"meta\">{} older releases not drawn.</p>",
            rel.releases_left_off
        );
    }
}

/// Every mirror's state over the kept history: the figure, a legend and a summary table (the
/// figure's text alternative; the same numbers as `/api/v1/charts/mirrors`).
fn history_section(h: &mut String, c: &MirrorCharts) {
    let _ = write!(
        h,
        "<h2>Mirror history</h2><p class=\"meta\">Published state of each mirror at this \
         monitor's checks, the worst in each {col}. Data: <a href=\"/api/v1/charts/mirrors\">/api/v1/charts/mirrors</a>.</p>\
         <figure class=\"chart\">{svg}<figcaption class=\"summary\">{title}. {legend}</figcaption></figure>\
         <table id=\"history\"><thead><tr><th>Mirror</th><th>Now</th><th>In service</th>\
         <th>Largest lag</th><th>Checks</th></tr></thead><tbody>",
        col = dur(c.column_secs),
        svg = history_svg("history-chart", c),
        title = esc(&history_title(c)),
        legend = [
            vdb_proto::MirrorState::InService,
            vdb_proto::MirrorState::Lagging,
            vdb_proto::MirrorState::Old,
            vdb_proto::MirrorState::Out,
            vdb_proto::MirrorState::Maintenance,
        ]
        .iter()
        .map(|s| format!(
            "<span class=\"key\" style=\"background:{}\"></span>{}",
            charts::colour(*s),
            label(*s)
        ))
        .collect::<Vec<_>>()
        .join(" "),
    );
    for m in &c.mirrors {
        let _ = write!(
            h,
            "<tr class=\"history\" data-mirror=\"{n}\"><td data-l=\"Mirror\">{short}</td>\
             <td data-l=\"Now\">{now}</td><td data-l=\"In service\">{pct}</td>\
             <td data-l=\"Largest lag\">{lag}</td><td data-l=\"Checks\">{checks}</td></tr>",
            n = esc(&m.name),
            short = short(&m.name, 64),
            now = label(m.state),
            pct = m
                .in_service_pct
                .map_or_else(|| "no checks yet".to_owned(), |p| format!("{p}%")),
            lag = m.max_lag_secs.map_or_else(
                || "–".to_owned(),
                |l| if l == 0 { "none".into() } else { dur(l) }
            ),
            checks = m.checks,
        );
    }
    if c.mirrors_left_off > 0 {
        let _ = write!(
            h,
            "<tr><td colspan=\"5\">and {} more mirrors (see the JSON)</td></tr>",
            c.mirrors_left_off
        );
    }
    h.push_str("</tbody></table>");
}

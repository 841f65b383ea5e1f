//! The status page's figures: each recent release's spread and each mirror's state over the
//! last weeks, as plain data (served as JSON, `/api/v1/charts/…`) and as hand-written SVG.
//!
//! Both come from the monitor's own observations only: a release is "released" at the first
//! round that saw it in the masters' manifest, and a mirror serves it from the first round that
//! found it serving that version or a newer one, so times have the resolution of the rounds
//! (`check_interval_secs`, and the 1–16 s follow-ups of `release_watch_ms` after a release).
//! The state history is the `timeline` table: one row per mirror per `history_bucket_secs`
//! (worst published state, largest lag), pruned past `history_days`.
//!
//! Drawing is bounded whatever the data: at most [`MAX_MIRRORS`] mirrors and
//! [`MAX_RELEASES`] releases are drawn (the rest are counted), at most [`MAX_COLUMNS`] columns
//! per mirror, runs of one state merged; every name is escaped and shortened.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use vdb_proto::MirrorState;

use crate::monitor::Monitor;
use crate::store::{ReleaseRow, TimelineRow};

/// Mirrors drawn in one figure (the rest are counted in `mirrors_left_off`).
pub const MAX_MIRRORS: usize = 40;
/// Releases drawn (the newest first).
pub const MAX_RELEASES: usize = 6;
/// Columns of the state history: buckets are merged (worst state wins) above this.
pub const MAX_COLUMNS: usize = 168;
/// Characters of a name drawn; longer names end in `…`.
const NAME_CHARS: usize = 24;

/// `GET /api/v1/charts/releases`: the spread of the recent releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCharts {
    /// When the document was made (the monitor's clock).
    pub generated_at: i64,
    /// Where the times come from (`monitor rounds`).
    pub source: String,
    /// The times' resolution: seconds between scheduled rounds (0: rounds on demand only).
    pub resolution_secs: u64,
    /// The newest releases first.
    pub releases: Vec<ReleaseSpread>,
    /// Older releases not shown.
    pub releases_left_off: usize,
}

/// One release and how long each mirror took to serve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpread {
    /// Database.
    pub db: String,
    /// Version.
    pub version: u32,
    /// First round that saw it in the masters' manifest (Unix seconds).
    pub released_at: i64,
    /// Mirrors in the registry.
    pub total: usize,
    /// Mirrors that serve it (or a newer version).
    pub served: usize,
    /// Median time to serve over the mirrors that serve it (the lower middle), seconds.
    pub median_secs: Option<i64>,
    /// The slowest of them, seconds.
    pub slowest_secs: Option<i64>,
    /// Per mirror, the fastest first, then those not serving it yet (at most [`MAX_MIRRORS`]).
    pub mirrors: Vec<MirrorSpread>,
    /// Mirrors not listed.
    pub mirrors_left_off: usize,
}

/// When one mirror started serving one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSpread {
    /// Registry name.
    pub name: String,
    /// First round that found it serving the release or newer (Unix seconds).
    pub served_at: Option<i64>,
    /// `served_at` minus `released_at`.
    pub secs: Option<i64>,
}

/// `GET /api/v1/charts/mirrors`: each mirror's state over the kept history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorCharts {
    /// When the document was made (the monitor's clock); the end of the time axis.
    pub generated_at: i64,
    /// Start of the time axis: the oldest history row kept (at most `history_days` ago).
    pub from: i64,
    /// End of the time axis.
    pub to: i64,
    /// Width of one stored row (`history_bucket_secs`).
    pub bucket_secs: i64,
    /// Width of one drawn column (a multiple of `bucket_secs`).
    pub column_secs: i64,
    /// Mirrors in registry order (at most [`MAX_MIRRORS`]).
    pub mirrors: Vec<MirrorHistory>,
    /// Mirrors not listed.
    pub mirrors_left_off: usize,
}

/// One mirror's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorHistory {
    /// Registry name.
    pub name: String,
    /// Its published state now.
    pub state: MirrorState,
    /// Share of its history rows whose worst state was in service, percent (rounded).
    pub in_service_pct: Option<u32>,
    /// Largest lag in its history, seconds.
    pub max_lag_secs: Option<i64>,
    /// Checks in its history.
    pub checks: u64,
    /// Runs of one state, oldest first; gaps are times without a check.
    pub spans: Vec<Span>,
}

/// A run of columns in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Start (Unix seconds).
    pub from: i64,
    /// End (Unix seconds, exclusive).
    pub to: i64,
    /// The worst published state in it.
    pub state: MirrorState,
    /// The largest lag in it.
    pub max_lag_secs: i64,
}

/// Order of badness for the history: the worst state of a bucket is kept.
pub(crate) fn rank(s: MirrorState) -> u8 {
    match s {
        MirrorState::InService => 0,
        MirrorState::Maintenance => 1,
        MirrorState::Lagging => 2,
        MirrorState::Old => 3,
        MirrorState::Out => 4,
    }
}

fn state_of(rank: u8) -> MirrorState {
    match rank {
        0 => MirrorState::InService,
        1 => MirrorState::Maintenance,
        2 => MirrorState::Lagging,
        3 => MirrorState::Old,
        _ => MirrorState::Out,
    }
}

/// The releases' spread from the store's rows (newest first) over the registry's mirrors.
pub(crate) fn release_spread(
    rows: Vec<ReleaseRow>,
    mirrors: &[String],
    now: i64,
    resolution_secs: u64,
) -> ReleaseCharts {
    let left_off = rows.len().saturating_sub(MAX_RELEASES);
    let releases = rows
        .into_iter()
        .take(MAX_RELEASES)
        .map(|(db, version, released_at, rollout)| {
            let mut all: Vec<MirrorSpread> = mirrors
                .iter()
                .map(|name| {
                    let served_at = rollout.get(name).copied();
                    MirrorSpread {
                        name: name.clone(),
                        served_at,
                        secs: served_at.map(|t| (t - released_at).max(0)),
                    }
                })
                .collect();
            // The fastest first, then the ones not serving it, by name.
            all.sort_by(|a, b| {
                (a.secs.is_none(), a.secs, &a.name).cmp(&(b.secs.is_none(), b.secs, &b.name))
            });
            let secs: Vec<i64> = all.iter().filter_map(|m| m.secs).collect();
            let served = secs.len();
            let total = all.len();
            let mirrors_left_off = total.saturating_sub(MAX_MIRRORS);
            all.truncate(MAX_MIRRORS);
            ReleaseSpread {
                db,
                version,
                released_at,
                total,
                served,
                median_secs: (served > 0).then(|| secs[(served - 1) / 2]),
                slowest_secs: secs.last().copied(),
                mirrors: all,
                mirrors_left_off,
            }
        })
        .collect();
    ReleaseCharts {
        generated_at: now,
        source: "monitor rounds".into(),
        resolution_secs,
        releases,
        releases_left_off: left_off,
    }
}

/// `a / b` rounded up, for `a >= 0` and `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b != 0)
}

/// The columns of the history axis: (column width, column count) for `from..to`.
fn columns(from: i64, to: i64, bucket: i64) -> (i64, i64) {
    let bucket = bucket.max(1);
    let span = (to - from).max(bucket);
    let buckets = ceil_div(span, bucket);
    let per_column = ceil_div(buckets, MAX_COLUMNS as i64).max(1);
    let width = per_column * bucket;
    (width, ceil_div(span, width))
}

/// One mirror's history from its rows (oldest first), on the axis `from..to`.
pub(crate) fn mirror_history(
    name: &str,
    state: MirrorState,
    rows: &[TimelineRow],
    from: i64,
    to: i64,
    bucket: i64,
) -> MirrorHistory {
    let (width, ncol) = columns(from, to, bucket);
    // Column → (worst rank, largest lag).
    let mut cols: BTreeMap<i64, (u8, i64)> = BTreeMap::new();
    let rows: Vec<&TimelineRow> = rows.iter().filter(|r| r.bucket >= from).collect();
    for r in &rows {
        let c = ((r.bucket - from) / width).clamp(0, ncol - 1);
        let e = cols.entry(c).or_insert((r.rank, r.lag_secs));
        *e = (e.0.max(r.rank), e.1.max(r.lag_secs));
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut prev: Option<i64> = None;
    for (&c, &(rk, lag)) in &cols {
        let start = from + c * width;
        let end = (start + width).min(to.max(start + 1));
        match spans.last_mut() {
            Some(s) if prev == Some(c - 1) && rank(s.state) == rk => {
                s.to = end;
                s.max_lag_secs = s.max_lag_secs.max(lag);
            }
            _ => spans.push(Span {
                from: start,
                to: end,
                state: state_of(rk),
                max_lag_secs: lag,
            }),
        }
        prev = Some(c);
    }
    let n = rows.len() as u64;
    let good = rows.iter().filter(|r| r.rank == 0).count() as u64;
    MirrorHistory {
        name: name.to_owned(),
        state,
        in_service_pct: (n > 0).then(|| ((100 * good + n / 2) / n) as u32),
        max_lag_secs: rows.iter().map(|r| r.lag_secs).max(),
        checks: rows.iter().map(|r| u64::from(r.checks)).sum(),
        spans,
    }
}

impl Monitor {
    /// The recent releases' spread (`GET /api/v1/charts/releases`), at the clock's now.
    pub fn release_charts(&self) -> anyhow::Result<ReleaseCharts> {
        let now = self.clock.now();
        let names = self.registry_names();
        let rows = self.store().releases(3)?;
        Ok(release_spread(
            rows,
            &names,
            now,
            self.config.check_interval_secs,
        ))
    }

    /// Each mirror's state history (`GET /api/v1/charts/mirrors`), at the clock's now.
    pub fn mirror_charts(&self) -> anyhow::Result<MirrorCharts> {
        let now = self.clock.now();
        let bucket = self.config.history_bucket_secs;
        let window = now - self.config.history_days * 86400;
        let names = self.registry_names();
        let states: BTreeMap<String, MirrorState> = self
            .verdicts(false)
            .mirrors
            .into_iter()
            .map(|v| (v.name, v.state))
            .collect();
        let store = self.store();
        let from = store
            .timeline_start(window)?
            .unwrap_or(now - now.rem_euclid(bucket))
            .min(now);
        let max_rows = (self.config.history_days * 86400 / bucket + 2) as usize;
        let mut mirrors = Vec::new();
        for name in names.iter().take(MAX_MIRRORS) {
            let rows = store.timeline(name, from, max_rows)?;
            let state = states.get(name).copied().unwrap_or(MirrorState::InService);
            mirrors.push(mirror_history(name, state, &rows, from, now, bucket));
        }
        Ok(MirrorCharts {
            generated_at: now,
            from,
            to: now,
            bucket_secs: bucket,
            column_secs: columns(from, now, bucket).0,
            mirrors,
            mirrors_left_off: names.len().saturating_sub(MAX_MIRRORS),
        })
    }
}

// -------------------------------------------------------------------------------------------------
// SVG

/// Escapes text for HTML and SVG (content and attribute values).
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// `s` cut to `n` characters (`…` marks a cut), then escaped.
pub(crate) fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        esc(s)
    } else {
        let cut: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{}…", esc(&cut))
    }
}

/// A duration for people: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub(crate) fn dur(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time.
pub(crate) fn utc(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// A state's name for people.
pub(crate) fn label(s: MirrorState) -> &'static str {
    match s {
        MirrorState::InService => "in service",
        MirrorState::Lagging => "lagging",
        MirrorState::Old => "old",
        MirrorState::Out => "out",
        MirrorState::Maintenance => "maintenance",
    }
}

/// A state's colour (the page's badges use the same).
pub(crate) fn colour(s: MirrorState) -> &'static str {
    match s {
        MirrorState::InService => "#1f883d",
        MirrorState::Lagging => "#bf8700",
        MirrorState::Old => "#d1242f",
        MirrorState::Out => "#6e1b1b",
        MirrorState::Maintenance => "#57606a",
    }
}

/// A tick step for an axis of `span` seconds: at most about six ticks.
fn tick_step(span: i64) -> i64 {
    const STEPS: [i64; 22] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
        172_800, 604_800, 1_209_600, 2_592_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 6)
        .unwrap_or(31_536_000)
}

fn svg_open(h: &mut String, id: &str, w: i64, height: i64, title: &str, desc: &str) {
    let _ = write!(
        h,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"{id}\" viewBox=\"0 0 {w} {height}\" \
         width=\"{w}\" height=\"{height}\" role=\"img\" aria-labelledby=\"{id}-title\" aria-describedby=\"{id}-desc\" \
         font-family=\"system-ui,sans-serif\" font-size=\"12\">\
         <title id=\"{id}-title\">{title}</title><desc id=\"{id}-desc\">{desc}</desc>",
        title = esc(title),
        desc = esc(desc),
    );
}

/// The title of a release's figure (its accessible name).
pub(crate) fn release_title(r: &ReleaseSpread) -> String {
    format!("{} {}: time to serve per mirror", r.db, r.version)
}

/// The one-line summary of a release's spread (the figure's caption and description).
pub(crate) fn release_summary(r: &ReleaseSpread) -> String {
    let mut s = format!(
        "{} {}: served by {} of {} mirrors",
        r.db, r.version, r.served, r.total
    );
    if let (Some(m), Some(x)) = (r.median_secs, r.slowest_secs) {
        let _ = write!(s, "; median {}; slowest {}", dur(m), dur(x));
    }
    if r.served < r.total {
        let _ = write!(s, "; {} not yet", r.total - r.served);
    }
    s
}

const W: i64 = 680;
const LEFT: i64 = 180;
const RIGHT: i64 = 56;

/// One release's figure: a bar per mirror, its time to serve; a dashed outline for the mirrors
/// that do not serve it yet (as long as the release's age).
pub(crate) fn release_svg(id: &str, r: &ReleaseSpread, now: i64) -> String {
    const TOP: i64 = 8;
    const ROW: i64 = 18;
    const AXIS: i64 = 32;
    let rows = r.mirrors.len().max(1) as i64 + i64::from(r.mirrors_left_off > 0);
    let height = TOP + rows * ROW + AXIS;
    let plot = W - LEFT - RIGHT;
    let age = (now - r.released_at).max(0);
    let pending = r.mirrors.iter().any(|m| m.secs.is_none());
    let horizon = r
        .slowest_secs
        .unwrap_or(0)
        .max(if pending { age } else { 0 })
        .max(1);
    let step = tick_step(horizon);
    let axis_max = ceil_div(horizon, step) * step;
    let x = |secs: i64| LEFT + secs.clamp(0, axis_max) * plot / axis_max;
    let mut h = String::new();
    let desc = format!(
        "{}. Released (first seen in the masters' manifest) {} UTC; times from the monitor's rounds.",
        release_summary(r),
        utc(r.released_at)
    );
    svg_open(&mut h, id, W, height, &release_title(r), &desc);
    if r.mirrors.is_empty() {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" fill=\"#5b6477\">no mirrors in the registry</text>",
            LEFT,
            TOP + 13
        );
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let y = TOP + i as i64 * ROW;
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#1d2330\">{}</text>",
            LEFT - 6,
            y + 13,
            short(&m.name, NAME_CHARS)
        );
        match m.secs {
            Some(s) => {
                let w = (x(s) - LEFT).max(2);
                let _ = write!(
                    h,
                    "<rect class=\"bar\" x=\"{LEFT}\" y=\"{}\" width=\"{w}\" height=\"12\" fill=\"#1f883d\">\
                     <title>{}: serving after {}</title></rect>\
                     <text x=\"{}\" y=\"{}\" fill=\"#1d2330\">{}</text>",
                    y + 3,
                    short(&m.name, 64),
                    dur(s),
                    LEFT + w + 4,
                    y + 13,
                    dur(s)
                );
            }
            None => {
                let w = (x(age) - LEFT).max(2);
                let _ = write!(
                    h,
                    "<rect class=\"pending\" x=\"{LEFT}\" y=\"{}\" width=\"{w}\" height=\"11\" fill=\"none\" \
                     stroke=\"#bf8700\" stroke-dasharray=\"4 3\"><title>{}: not yet, {} after release</title></rect>\
                     <text x=\"{}\" y=\"{}\" fill=\"#5b6477\">not yet</text>",
                    y + 3,
                    short(&m.name, 64),
                    dur(age),
                    (LEFT + w + 4).min(W - RIGHT + 4),
                    y + 13,
                );
            }
        }
    }
    if r.mirrors_left_off > 0 {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#5b6477\">and {} more</text>",
            LEFT - 6,
            TOP + r.mirrors.len() as i64 * ROW + 13,
            r.mirrors_left_off
        );
    }
    let base = TOP + rows * ROW + 2;
    let _ = write!(
        h,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#5b6477\"/>",
        LEFT + plot
    );
    let mut t = 0;
    while t <= axis_max {
        let _ = write!(
            h,
            "<line x1=\"{0}\" y1=\"{base}\" x2=\"{0}\" y2=\"{1}\" stroke=\"#5b6477\"/>\
             <text x=\"{0}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#5b6477\">{3}</text>",
            x(t),
            base + 4,
            base + 16,
            dur(t)
        );
        t += step;
    }
    let _ = write!(
        h,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#5b6477\">time after release</text></svg>",
        LEFT + plot,
        base + 29
    );
    h
}

/// The title of the history figure (its accessible name).
pub(crate) fn history_title(c: &MirrorCharts) -> String {
    format!("Mirror state from {} to {} UTC", utc(c.from), utc(c.to))
}

/// The history figure: a lane per mirror, coloured by its worst state in each column, grey
/// where it was not checked.
pub(crate) fn history_svg(id: &str, c: &MirrorCharts) -> String {
    const TOP: i64 = 8;
    const LANE: i64 = 16;
    const GAP: i64 = 4;
    const AXIS: i64 = 32;
    let rows = c.mirrors.len().max(1) as i64 + i64::from(c.mirrors_left_off > 0);
    let height = TOP + rows * (LANE + GAP) + AXIS;
    let plot = W - LEFT - RIGHT;
    let span = (c.to - c.from).max(1);
    let x = |t: i64| LEFT + (t - c.from).clamp(0, span) * plot / span;
    let mut h = String::new();
    let desc = format!(
        "One lane per mirror, left to right in time, coloured by the worst state in each {}: \
         green in service, grey maintenance, yellow lagging, red old, dark red out; light grey \
         where it was not checked.",
        dur(c.column_secs)
    );
    svg_open(&mut h, id, W, height, &history_title(c), &desc);
    if c.mirrors.is_empty() {
        let _ = write!(
            h,
            "<text x=\"{LEFT}\" y=\"{}\" fill=\"#5b6477\">no mirrors in the registry</text>",
            TOP + 12
        );
    }
    for (i, m) in c.mirrors.iter().enumerate() {
        let y = TOP + i as i64 * (LANE + GAP);
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#1d2330\">{}</text>\
             <rect class=\"lane\" x=\"{LEFT}\" y=\"{y}\" width=\"{plot}\" height=\"{LANE}\" fill=\"#e3e6eb\"/>",
            LEFT - 6,
            y + 12,
            short(&m.name, NAME_CHARS)
        );
        if m.spans.is_empty() {
            let _ = write!(
                h,
                "<text x=\"{}\" y=\"{}\" fill=\"#5b6477\">no checks yet</text>",
                LEFT + 4,
                y + 12
            );
        }
        for s in &m.spans {
            let x0 = x(s.from);
            let w = (x(s.to) - x0).max(1);
            let _ = write!(
                h,
                "<rect class=\"span\" data-state=\"{}\" x=\"{x0}\" y=\"{y}\" width=\"{w}\" height=\"{LANE}\" fill=\"{}\">\
                 <title>{}: {} from {} to {} UTC, lag up to {}</title></rect>",
                crate::monitor::state_name(s.state),
                colour(s.state),
                short(&m.name, 64),
                label(s.state),
                utc(s.from),
                utc(s.to),
                dur(s.max_lag_secs)
            );
        }
    }
    if c.mirrors_left_off > 0 {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#5b6477\">and {} more</text>",
            LEFT - 6,
            TOP + c.mirrors.len() as i64 * (LANE + GAP) + 12,
            c.mirrors_left_off
        );
    }
    let base = TOP + rows * (LANE + GAP);
    let _ = write!(
        h,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#5b6477\"/>",
        LEFT + plot
    );
    // Ticks back from now.
    let step = tick_step(span);
    let mut back = 0;
    while back <= span {
        let tx = x(c.to - back);
        let _ = write!(
            h,
            "<line x1=\"{tx}\" y1=\"{base}\" x2=\"{tx}\" y2=\"{}\" stroke=\"#5b6477\"/>\
             <text x=\"{tx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5b6477\">{}</text>",
            base + 4,
            base + 16,
            if back == 0 {
                "now".to_owned()
            } else {
                format!("-{}", dur(back))
            }
        );
        back += step;
    }
    h.push_str("</svg>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bucket: i64, state: MirrorState, lag: i64) -> TimelineRow {
        TimelineRow {
            bucket,
            rank: rank(state),
            lag_secs: lag,
            checks: 1,
        }
    }

    #[test]
    fn spread_orders_mirrors_and_counts_what_it_leaves_off() {
        let names: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
        let mut rollout = BTreeMap::new();
        rollout.insert("m03".to_owned(), 1030);
        rollout.insert("m01".to_owned(), 1010);
        rollout.insert("m02".to_owned(), 1100);
        // A mirror that left the registry is not counted; a time before the release is 0.
        rollout.insert("gone".to_owned(), 1000);
        rollout.insert("m04".to_owned(), 900);
        let rows = vec![("daily".to_owned(), 7, 1000, rollout)];
        let c = release_spread(rows, &names, 2000, 300);
        let r = &c.releases[0];
        assert_eq!((r.total, r.served), (50, 4));
        let order: Vec<_> = r.mirrors.iter().take(5).map(|m| m.name.as_str()).collect();
        assert_eq!(order, ["m04", "m01", "m03", "m02", "m00"]);
        assert_eq!(r.mirrors[0].secs, Some(0));
        assert_eq!((r.median_secs, r.slowest_secs), (Some(10), Some(100)));
        assert_eq!(r.mirrors.len(), MAX_MIRRORS);
        assert_eq!(r.mirrors_left_off, 10);
        assert_eq!(
            release_summary(r),
            "daily 7: served by 4 of 50 mirrors; median 10s; slowest 100s; 46 not yet"
        );
        // Many releases: bounded.
        let rows = (0..20)
            .map(|v| ("daily".to_owned(), v, 1000, BTreeMap::new()))
            .collect();
        let c = release_spread(rows, &names, 2000, 300);
        assert_eq!((c.releases.len(), c.releases_left_off), (MAX_RELEASES, 14));
        assert_eq!(c.releases[0].median_secs, None);
    }

    #[test]
    fn history_columns_merge_runs_and_keep_the_worst() {
        use MirrorState::*;
        let rows = [
            row(0, InService, 0),
            row(10, InService, 0),
            row(20, Lagging, 15),
            row(30, Out, 300),
            // 40 missing: a gap.
            row(50, InService, 0),
        ];
        let h = mirror_history("m", InService, &rows, 0, 60, 10);
        let spans: Vec<_> = h
            .spans
            .iter()
            .map(|s| (s.from, s.to, s.state, s.max_lag_secs))
            .collect();
        assert_eq!(
            spans,
            [
                (0, 20, InService, 0),
                (20, 30, Lagging, 15),
                (30, 40, Out, 300),
                (50, 60, InService, 0)
            ]
        );
        assert_eq!(h.in_service_pct, Some(60));
        assert_eq!(h.max_lag_secs, Some(300));
        assert_eq!(h.checks, 5);
        // A long history: at most MAX_COLUMNS columns, the worst of each kept.
        let rows: Vec<_> = (0..10_000)
            .map(|i| row(i * 10, if i % 2 == 0 { InService } else { Old }, i))
            .collect();
        let h = mirror_history("m", Old, &rows, 0, 100_000, 10);
        let (width, n) = columns(0, 100_000, 10);
        assert!(n <= MAX_COLUMNS as i64 && width % 10 == 0, "{width} {n}");
        assert_eq!(h.spans.len(), 1, "every column has an old bucket: one run");
        assert_eq!(h.spans[0].state, Old);
        assert_eq!((h.spans[0].from, h.spans[0].to), (0, 100_000));
        assert_eq!(h.in_service_pct, Some(50));
    }

    /// Charts of `mirrors` from `from` to `to` (generated at `to`), one bucket per column.
    fn charts(
        mirrors: Vec<MirrorHistory>,
        from: i64,
        to: i64,
        bucket_secs: i64,
        left_off: usize,
    ) -> MirrorCharts {
        MirrorCharts {
            generated_at: to,
            from,
            to,
            bucket_secs,
            column_secs: bucket_secs,
            mirrors,
            mirrors_left_off: left_off,
        }
    }

    #[test]
    fn empty_history_and_no_mirrors_draw_a_labelled_figure() {
        let h = mirror_history("m", MirrorState::InService, &[], 1000, 1000, 3600);
        assert!(h.spans.is_empty() && h.in_service_pct.is_none() && h.checks == 0);
        let c = charts(vec![h], 1000, 1000, 3600, 0);
        let svg = history_svg("history", &c);
        assert!(svg.contains("no checks yet"), "{svg}");
        assert!(svg.contains("role=\"img\"") && svg.contains("aria-labelledby=\"history-title\""));
        assert!(svg.contains("<title id=\"history-title\">Mirror state from"));
        assert!(!svg.contains("class=\"span\""));
        let none = MirrorCharts {
            mirrors: vec![],
            ..c
        };
        assert!(history_svg("h", &none).contains("no mirrors in the registry"));
        let c = release_spread(vec![("daily".into(), 1, 5, BTreeMap::new())], &[], 5, 0);
        let svg = release_svg("r0", &c.releases[0], 5);
        assert!(svg.contains("no mirrors in the registry"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn hostile_names_are_escaped_and_shortened() {
        let evil = "<script>alert('x')</script>&\"".repeat(20);
        let names = vec![evil.clone(), "ok\u{7}bell".to_owned()];
        let rollout = [(evil.clone(), 1010)].into();
        let c = release_spread(vec![(evil.clone(), 3, 1000, rollout)], &names, 1100, 0);
        let svg = release_svg("r0", &c.releases[0], 1100);
        assert!(!svg.contains("<script") && !svg.contains("'x'"), "{svg}");
        assert!(svg.contains("&lt;script&gt;") && svg.contains("&amp;&quot;"));
        assert!(svg.contains("…") && !svg.contains('\u{7}'));
        assert!(svg.len() < 20_000, "names are shortened: {}", svg.len());
        let rows = [row(0, MirrorState::Out, 5)];
        let h = mirror_history(&evil, MirrorState::Out, &rows, 0, 10, 10);
        let c = charts(vec![h], 0, 10, 10, 3);
        let svg = history_svg("h", &c);
        assert!(
            !svg.contains("<script") && svg.contains("and 3 more"),
            "{svg}"
        );
    }

    #[test]
    fn bars_are_within_the_plot_and_counted() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let rollout = [("a".to_owned(), 1000), ("b".to_owned(), 1_000_000)].into();
        let c = release_spread(
            vec![("daily".into(), 2, 1000, rollout)],
            &names,
            2_000_000,
            0,
        );
        let svg = release_svg("r", &c.releases[0], 2_000_000);
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        assert_eq!(svg.matches("class=\"pending\"").count(), 1);
        for w in svg
            .split("width=\"")
            .skip(2)
            .filter_map(|s| s.split('"').next())
        {
            let w: i64 = w.parse().unwrap();
            assert!((1..=W).contains(&w), "{w} in {svg}");
        }
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_796_300_000), "2026-12-03 12:13");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(dur(30), "30s");
        assert_eq!(dur(7200), "2h 0m");
        assert_eq!(tick_step(100), 15);
        assert_eq!(tick_step(28 * 86400), 604_800);
    }
}

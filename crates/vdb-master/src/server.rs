//! The master's HTTP API.

use std::sync::Arc;
pub use vdb_proto::{Drain, Timeline, UPLOAD_HEADER};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;
use vdb_proto::{ErrorCode, MirrorRecord, Signed, UploadAccepted, UploadTicket, paths};
use vdb_service::ct_eq;

use crate::events::{Event, Origin};
use crate::history::{RegistryEntry, ReleaseRow};
use crate::registry::{self, find, live, write_mirror};
use crate::replicate::{ReleaseEntry, ReleasePage};
use crate::tasks::blocking;

mod app;
mod join;

pub(crate) use app::App;
use app::{AdminOnly, Api, bearer, pull_allowed};

type S = State<Arc<App>>;

/// The router.
pub(crate) fn router(m: Arc<App>) -> Router {
    let upload_limit = m.store.config().max_file_size;
    Router::new()
        .route(paths::HEALTH, get(|| async { "ok" }))
        .route(paths::METRICS, get(metrics))
        .route(vdb_proto::MANIFEST_PATH, get(manifest))
        .route(
            "/api/v1/objects/{sha}",
            put(upload).get(object).layer(DefaultBodyLimit::max(
                usize::try_from(upload_limit).unwrap_or(usize::MAX),
            )),
        )
        .route(paths::RELEASES, post(submit).get(releases_after))
        .route("/api/v1/releases/{id}", get(release))
        .route("/api/v1/history", get(history))
        .route(paths::MIRRORS, get(mirrors).post(mirror_add))
        .route(
            "/api/v1/mirrors/{name}",
            get(mirror_show).put(mirror_update).delete(mirror_remove),
        )
        .route("/api/v1/mirrors/{name}/drain", post(mirror_drain))
        .route("/api/v1/mirrors/{name}/requests", post(join::change))
        .route("/api/v1/mirrors/{name}/history", get(join::history))
        .route(paths::JOIN, post(join::submit).get(join::list))
        .route("/api/v1/join/{name}", get(join::status))
        .route("/api/v1/join/{name}/approve", post(join::approve))
        .route("/api/v1/join/{name}/reject", post(join::reject))
        .route("/api/v1/registry", get(registry))
        .route("/api/v1/replicate", post(poke))
        .route(paths::STATUS, get(status))
        .route(vdb_proto::SYNC_REPORT_PATH, post(sync_report))
        .fallback(|| async { Api::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(DefaultBodyLimit::max(1 << 20))
        .with_state(m)
}

async fn metrics(State(m): S) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.metrics.encode(),
    )
}

async fn manifest(State(m): S) -> Result<Response, Api> {
    match m.store.current() {
        Some(c) => Ok((
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            c.json,
        )
            .into_response()),
        None => Err(Api::new(
            ErrorCode::NoManifest,
            "this master has not signed a manifest yet",
        )),
    }
}

async fn upload(
    state: S,
    path: Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Api> {
    let m = Arc::clone(&state.0);
    let r = upload_inner(state, path, headers, body).await;
    match &r {
        Ok(_) => m.metrics.upload("ok"),
        Err(e) => {
            m.metrics.upload(e.code.as_str());
            tracing::warn!(code = %e.code, reason = %e.message, "upload refused");
        }
    }
    r
}

async fn upload_inner(
    State(m): S,
    Path(sha): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Api> {
    if !crate::objects::is_sha256(&sha) {
        return Err(Api::new(
            ErrorCode::BadAddress,
            "the object address must be a lower-case hex SHA-256",
        ));
    }
    let ticket = headers
        .get(UPLOAD_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Api::new(
                ErrorCode::NoTicket,
                format!("send a signed upload ticket in the {UPLOAD_HEADER} header"),
            )
        })?;
    let env = Signed::<UploadTicket>::from_json(ticket.as_bytes())
        .map_err(|e| Api::new(ErrorCode::BadTicket, e.to_string()))?;
    let signer = env.signer();
    if !m.store.policy().is_publisher(&signer) {
        return Err(Api::new(
            ErrorCode::UnknownKey,
            format!("{signer} is not a publisher key of this master"),
        ));
    }
    let t = env
        .verify(&[signer])
        .map_err(|e| Api::new(ErrorCode::BadSignature, e.to_string()))?;
    let now = m.store.now();
    if t.sha256 != sha {
        return Err(Api::new(
            ErrorCode::BadTicket,
            "the ticket is for another object",
        ));
    }
    if t.issued_at.abs_diff(now) > m.store.policy().window() {
        return Err(Api::new(
            ErrorCode::Replay,
            format!(
                "upload ticket issued at {} is outside the window around now ({now})",
                t.issued_at
            ),
        ));
    }
    if t.size > m.store.config().max_file_size {
        return Err(Api::new(
            ErrorCode::TooLarge,
            format!(
                "object is {} bytes, over the limit of {} bytes",
                t.size,
                m.store.config().max_file_size
            ),
        ));
    }
    let mut up = m.store.objects().begin(t.size).map_err(Api::internal)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Api::new(ErrorCode::BadBody, e.to_string()))?;
        up.write(&chunk).map_err(|e| match e {
            crate::objects::ObjectError::TooLarge(_) => Api::new(
                ErrorCode::TooLarge,
                format!("body is larger than the {} bytes the ticket states", t.size),
            ),
            e => Api::internal(e),
        })?;
    }
    let sha2 = sha.clone();
    let objects = m.store.objects().clone();
    let size = blocking(move || objects.finish(up, &sha2))
        .await
        .map_err(|e| match e {
            crate::objects::ObjectError::HashMismatch { .. } => {
                Api::new(ErrorCode::HashMismatch, e.to_string())
            }
            e => Api::internal(e),
        })?;
    if size != t.size {
        return Err(Api::new(
            ErrorCode::SizeMismatch,
            format!("received {size} bytes, the ticket states {}", t.size),
        ));
    }
    tracing::info!(object = %sha, size, publisher = %signer, "object uploaded");
    Ok((
        StatusCode::CREATED,
        axum::Json(UploadAccepted { sha256: sha, size }),
    )
        .into_response())
}

async fn object(
    State(m): S,
    Path(sha): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, Api> {
    let config = m.store.config();
    if !config.pull_tokens.is_empty() || config.require_pull_auth {
        pull_allowed(&m, req.method().as_str(), req.uri().path(), req.headers()).await?;
    }
    if !crate::objects::is_sha256(&sha) || !m.store.is_servable(&sha) {
        return Err(Api::new(
            ErrorCode::NoObject,
            "no released object with this address",
        ));
    }
    let path = m.store.objects().path(&sha).map_err(Api::internal)?;
    // ServeFile answers HEAD, Range (a mirror or monitor reading a CVD header) and
    // If-Modified-Since. Large reads: a whole CVD goes to every mirror at each release, and
    // each chunk is one trip to the blocking pool (the default is 64 KiB).
    let mut resp = tower_http::services::ServeFile::new(path)
        .with_buf_chunk_size(512 * 1024)
        .oneshot(req)
        .await
        .map_err(Api::internal)?
        .map(Body::new);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Some(n) = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && resp.status().is_success()
    {
        m.metrics.served_bytes.inc_by(n);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

async fn submit(State(m): S, body: axum::body::Bytes) -> Result<Response, Api> {
    let a = m.store.submit(&body, Origin::Publisher).await?;
    Ok((StatusCode::OK, axum::Json(a)).into_response())
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}
fn default_limit() -> i64 {
    100
}

async fn releases_after(
    State(m): S,
    Query(q): Query<After>,
) -> Result<axum::Json<ReleasePage>, Api> {
    let h = m.store.history().clone();
    let rows = blocking(move || h.accepted_after(q.after, q.limit.clamp(1, 1000)))
        .await
        .map_err(Api::internal)?;
    Ok(axum::Json(ReleasePage {
        releases: rows
            .into_iter()
            .map(|r| ReleaseEntry {
                seq: r.seq,
                envelope: r.envelope,
            })
            .collect(),
    }))
}

async fn release(State(m): S, Path(id): Path<String>) -> Result<axum::Json<Timeline>, Api> {
    let h = m.store.history().clone();
    let t = blocking(
        move || -> Result<Option<Timeline>, crate::history::HistoryError> {
            let Some(release) = h.accepted(&id)? else {
                return Ok(None);
            };
            let pushes = match release.serial {
                Some(s) => h.pushes_since(s)?,
                None => Vec::new(),
            };
            let mut acks: Vec<(String, u64, i64)> = Vec::new();
            for p in &pushes {
                if let Some(at) = p.acked_at
                    && !acks.iter().any(|(n, _, _)| *n == p.mirror)
                {
                    acks.push((p.mirror.clone(), p.serial, at));
                }
            }
            let syncs = match release.serial {
                Some(s) => h.syncs_since(s)?,
                None => Vec::new(),
            };
            Ok(Some(Timeline {
                release,
                pushes,
                acks,
                syncs,
            }))
        },
    )
    .await
    .map_err(Api::internal)?;
    t.map(axum::Json)
        .ok_or_else(|| Api::new(ErrorCode::NoRelease, "no accepted release with this id"))
}

/// The most rows `GET /api/v1/history` answers with at once.
const MAX_HISTORY_ROWS: i64 = 200;

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default = "default_limit")]
    limit: i64,
    /// Rows before this sequence number (the next page).
    #[serde(default)]
    before: Option<i64>,
}

async fn history(
    State(m): S,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<Vec<ReleaseRow>>, Api> {
    let h = m.store.history().clone();
    Ok(axum::Json(
        blocking(move || h.recent(q.before, q.limit.clamp(1, MAX_HISTORY_ROWS)))
            .await
            .map_err(Api::internal)?,
    ))
}

/// Whether the request bears the admin token or a pull token: a trusted reader (an operator,
/// a monitor that mails mirror admins, a peer) that may see the admins' e-mail addresses.
fn trusted_reader(m: &App, headers: &HeaderMap) -> bool {
    let config = m.store.config();
    bearer(headers).is_some_and(|got| {
        config
            .admin_token
            .iter()
            .chain(&config.pull_tokens)
            .fold(false, |acc, t| acc | ct_eq(got.as_bytes(), t.as_bytes()))
    })
}

/// A record as this reader may see it: without the admin's e-mail address unless trusted.
fn shown_record(mut r: MirrorRecord, trusted: bool) -> MirrorRecord {
    if !trusted {
        r.admin_contact = None;
    }
    r
}

async fn mirrors(State(m): S, headers: HeaderMap) -> Result<axum::Json<Vec<MirrorRecord>>, Api> {
    let trusted = trusted_reader(&m, &headers);
    let h = m.store.history().clone();
    let all = blocking(move || h.mirrors()).await.map_err(Api::internal)?;
    Ok(axum::Json(
        all.into_iter().map(|r| shown_record(r, trusted)).collect(),
    ))
}

/// The registry as peers replicate it: a [`vdb_proto::RegistryExport`] signed with this
/// master's key (the admins' contacts for trusted readers only).
async fn registry(State(m): S, headers: HeaderMap) -> Result<Response, Api> {
    let trusted = trusted_reader(&m, &headers);
    let h = m.store.history().clone();
    let all = blocking(move || h.registry())
        .await
        .map_err(Api::internal)?;
    let entries = all
        .into_iter()
        .map(|e| RegistryEntry {
            record: shown_record(e.record, trusted),
            ..e
        })
        .collect();
    // Join requests carry the admins' contacts: trusted readers (peers) only.
    let db = m.store.join().clone();
    let (now, expiry) = (m.store.now(), m.store.config().join_expiry_secs);
    let (pending, log) = blocking(move || -> rusqlite::Result<_> {
        db.prune(now, expiry)?;
        let pending = if trusted { db.all()? } else { Vec::new() };
        Ok((pending, db.events(None, crate::join::EXPORT_EVENTS)?))
    })
    .await
    .map_err(Api::internal)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        m.store.registry_export(entries, pending, log),
    )
        .into_response())
}

async fn mirror_show(
    State(m): S,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<MirrorRecord>, Api> {
    let r = live(&m.store, &name).await?;
    Ok(axum::Json(shown_record(r, trusted_reader(&m, &headers))))
}

fn check_record(r: &MirrorRecord) -> Result<(), Api> {
    if !vdb_proto::is_safe_db_name(&r.name) {
        return Err(Api::new(
            ErrorCode::BadRecord,
            "mirror names are [a-z0-9_-], 1-64 characters",
        ));
    }
    for u in r.push_url.iter().chain(&r.base_urls) {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(Api::new(
                ErrorCode::BadRecord,
                format!("URL {u:?} must start with http:// or https://"),
            ));
        }
    }
    Ok(())
}

/// A checked mirror record, from a request's body.
struct Record(MirrorRecord);

impl<T: Send + Sync> axum::extract::FromRequest<T> for Record {
    type Rejection = Api;

    async fn from_request(req: axum::extract::Request, state: &T) -> Result<Self, Api> {
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Api::new(ErrorCode::BadRecord, e.body_text()))?;
        let r: MirrorRecord = serde_json::from_slice(&body)
            .map_err(|e| Api::new(ErrorCode::BadRecord, e.to_string()))?;
        check_record(&r)?;
        Ok(Self(r))
    }
}

/// Refuses a record whose `hubs` do not fit the registry ([`vdb_proto::check_hubs`]).
async fn check_hubs(m: &App, r: &MirrorRecord) -> Result<(), Api> {
    if r.hubs.is_empty() {
        return Ok(());
    }
    let h = m.store.history().clone();
    let all = blocking(move || h.mirrors()).await.map_err(Api::internal)?;
    vdb_proto::check_hubs(r, &all).map_err(|e| Api::new(ErrorCode::BadRecord, e.to_string()))
}

async fn mirror_add(_: AdminOnly, State(m): S, Record(r): Record) -> Result<Response, Api> {
    if find(&m.store, &r.name).await?.is_some_and(|e| !e.deleted) {
        return Err(Api::new(
            ErrorCode::Exists,
            format!("mirror {:?} is already registered (use update)", r.name),
        ));
    }
    check_hubs(&m, &r).await?;
    write_mirror(&m.store, r.clone(), false).await?;
    registry::log(&m.store, &r.name, "add", "admin", String::new()).await;
    // A new mirror syncs at once.
    if r.push_url.is_some() && m.store.is_ready() {
        m.events.emit(Event::MirrorAdded {
            record: Box::new(r.clone()),
            serial: m.store.serial(),
        });
    }
    Ok((StatusCode::CREATED, axum::Json(r)).into_response())
}

async fn mirror_update(
    _: AdminOnly,
    State(m): S,
    Path(name): Path<String>,
    Record(r): Record,
) -> Result<axum::Json<MirrorRecord>, Api> {
    if r.name != name {
        return Err(Api::new(
            ErrorCode::BadRecord,
            "the record's name differs from the URL's",
        ));
    }
    live(&m.store, &name).await?;
    check_hubs(&m, &r).await?;
    write_mirror(&m.store, r.clone(), false).await?;
    registry::log(&m.store, &name, "update", "admin", String::new()).await;
    Ok(axum::Json(r))
}

async fn mirror_remove(
    _: AdminOnly,
    State(m): S,
    Path(name): Path<String>,
) -> Result<StatusCode, Api> {
    let r = live(&m.store, &name).await?;
    write_mirror(&m.store, r, true).await?;
    registry::log(&m.store, &name, "remove", "admin", String::new()).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn mirror_drain(
    _: AdminOnly,
    State(m): S,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<MirrorRecord>, Api> {
    let d: Drain = if body.is_empty() {
        Drain { drained: true }
    } else {
        serde_json::from_slice(&body).map_err(|e| Api::new(ErrorCode::BadRequest, e.to_string()))?
    };
    let mut r = live(&m.store, &name).await?;
    r.drained = d.drained;
    write_mirror(&m.store, r.clone(), false).await?;
    let action = if d.drained { "drain" } else { "undrain" };
    registry::log(&m.store, &name, action, "admin", String::new()).await;
    Ok(axum::Json(r))
}

/// `GET /api/v1/status`: what this master holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The master's name.
    pub name: String,
    /// The network.
    pub network: String,
    /// Caught up with the peers (takes releases, signs and pushes).
    pub ready: bool,
    /// Serial of the current manifest (0 before the first).
    pub serial: u64,
    /// Highest serial seen from a peer.
    pub peer_serial: u64,
    /// Current version of each database.
    pub databases: std::collections::BTreeMap<String, u32>,
    /// Statements refused since the start without being stored: not signed by any publisher
    /// of this master (unknown key, bad signature, not a statement).
    #[serde(default)]
    pub unrecorded_refusals: u64,
    /// The upstreams this master follows, in order: cool-down, back-off, last error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<crate::upstream::UpstreamHealth>,
    /// How many mirrors' join requests wait for the network's admin.
    #[serde(default)]
    pub pending_joins: usize,
    /// Their names (no contacts: `vdb mirror pending` shows the requests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_join_names: Vec<String>,
    /// The tree of hub mirrors: each hub and the leaves it relays pushes to (issue 18).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hubs: std::collections::BTreeMap<String, Vec<String>>,
}

async fn status(State(m): S) -> axum::Json<Status> {
    let cur = m.store.current();
    let db = m.store.join().clone();
    let (now, expiry) = (m.store.now(), m.store.config().join_expiry_secs);
    let pending_join_names: Vec<String> = blocking(move || -> rusqlite::Result<_> {
        db.prune(now, expiry)?;
        db.all()
    })
    .await
    .map(|all| {
        all.into_iter()
            .filter(|p| p.state == vdb_proto::JoinState::Pending)
            .map(|p| p.name)
            .collect()
    })
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the join requests");
        Vec::new()
    });
    let h = m.store.history().clone();
    let hubs = blocking(move || h.mirrors())
        .await
        .map(|all| crate::push::hub_tree(&all))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the registry");
            Default::default()
        });
    axum::Json(Status {
        hubs,
        pending_joins: pending_join_names.len(),
        pending_join_names,
        name: m.store.config().name.clone(),
        network: m.store.config().network.clone(),
        ready: m.store.is_ready(),
        serial: cur.as_ref().map_or(0, |c| c.manifest.serial),
        peer_serial: m.peers.serial(),
        unrecorded_refusals: m.store.unrecorded_refusals(),
        upstreams: m.upstream.snapshot(),
        databases: cur
            .map(|c| {
                c.manifest
                    .databases
                    .iter()
                    .map(|(k, v)| (k.clone(), v.version))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// `POST /api/v1/syncs`: a mirror's [`vdb_proto::SyncReport`], authorised like its pulls when
/// the masters require pull authorisation (a signed report must come from the mirror it
/// names), and only for registered mirrors; recorded for the release timeline, with a hub's
/// relay outcomes as pushes `via` the hub.
pub(crate) async fn sync_report(
    State(m): S,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, Api> {
    let report: vdb_proto::SyncReport = serde_json::from_slice(&body)
        .map_err(|e| Api::new(ErrorCode::BadRequest, format!("not a sync report: {e}")))?;
    let config = m.store.config();
    if report.network != config.network {
        return Err(Api::new(
            ErrorCode::BadRequest,
            format!("the report is for network {:?}", report.network),
        ));
    }
    if report.relays.len() > vdb_proto::SyncReport::MAX_RELAYS
        || report.mirror.len() > 64
        || report.source.len() > 300
        || report.outcome.len() > 32
    {
        return Err(Api::new(ErrorCode::BadRequest, "the report is too large"));
    }
    if !config.pull_tokens.is_empty() || config.require_pull_auth {
        pull_allowed(&m, "POST", vdb_proto::SYNC_REPORT_PATH, &headers).await?;
        let signed_by = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(vdb_proto::PullAuth::parse)
            .map(|a| a.name);
        if signed_by.is_some_and(|n| n != report.mirror) {
            return Err(Api::new(
                ErrorCode::BadPullAuth,
                "a mirror reports its own syncs only",
            ));
        }
    }
    live(&m.store, &report.mirror).await?;
    let now = m.store.now();
    let row = vdb_proto::SyncRow {
        serial: report.serial,
        mirror: report.mirror.clone(),
        outcome: report.outcome.clone(),
        bytes: report.bytes,
        hub_bytes: report.hub_bytes,
        source: report.source.clone(),
        duration_ms: report.duration_ms,
        reported_at: now,
    };
    tracing::info!(mirror = %row.mirror, serial = row.serial, bytes = row.bytes, hub_bytes = row.hub_bytes, source = %row.source, relays = report.relays.len(), "sync reported");
    let h = m.store.history().clone();
    blocking(move || {
        h.sync_reported(&row)?;
        if !report.relays.is_empty() {
            h.relays_reported(report.serial, &report.mirror, &report.relays, now)?;
        }
        Ok::<_, crate::history::HistoryError>(())
    })
    .await
    .map_err(Api::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn poke(State(m): S) -> StatusCode {
    m.replicator.poke();
    StatusCode::ACCEPTED
}

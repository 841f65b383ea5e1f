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
use vdb_proto::{ApiError, ErrorCode, MirrorRecord, Signed, UploadAccepted, UploadTicket, paths};
use vdb_service::ct_eq;

use crate::Parts;
use crate::events::{Event, Origin};
use crate::gate::Refusal;
use crate::history::{RegistryEntry, ReleaseRow};
use crate::replicate::{ReleaseEntry, ReleasePage, Replicator};
use crate::tasks::blocking;

type S = State<Arc<App>>;

/// What the HTTP API works on.
#[derive(Debug)]
pub(crate) struct App {
    parts: Parts,
    replicator: Arc<Replicator>,
}

impl App {
    /// The API over these parts.
    pub(crate) fn new(parts: Parts, replicator: Arc<Replicator>) -> Self {
        Self { parts, replicator }
    }
}

impl std::ops::Deref for App {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

/// An error answer: the gate's refusals and every other error of the API share one type.
pub(crate) type Api = Refusal;

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.code == ErrorCode::Internal {
            tracing::error!(error = %self.message, "internal error");
        }
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(ApiError::new(self.code, self.message))).into_response()
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn require_admin(m: &App, headers: &HeaderMap) -> Result<(), Api> {
    let Some(want) = &m.store.config().admin_token else {
        return Err(Api::new(
            ErrorCode::AdminDisabled,
            "the admin API is off (no admin_token in the master config)",
        ));
    };
    match bearer(headers) {
        Some(got) if ct_eq(got.as_bytes(), want.as_bytes()) => Ok(()),
        Some(_) => Err(Api::new(ErrorCode::BadToken, "the admin token is wrong")),
        None => Err(Api::new(
            ErrorCode::NoToken,
            "send Authorization: Bearer <admin token>",
        )),
    }
}

/// Admits only requests with the admin token (the admin API's handlers take it first).
pub(crate) struct AdminOnly;

impl axum::extract::FromRequestParts<Arc<App>> for AdminOnly {
    type Rejection = Api;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        m: &Arc<App>,
    ) -> Result<Self, Api> {
        require_admin(m, &parts.headers).map(|()| Self)
    }
}

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
        .route("/api/v1/mirrors/{name}/requests", post(crate::join::change))
        .route("/api/v1/mirrors/{name}/history", get(crate::join::history))
        .route(
            paths::JOIN,
            post(crate::join::submit).get(crate::join::list),
        )
        .route("/api/v1/join/{name}", get(crate::join::status))
        .route("/api/v1/join/{name}/approve", post(crate::join::approve))
        .route("/api/v1/join/{name}/reject", post(crate::join::reject))
        .route("/api/v1/registry", get(registry))
        .route("/api/v1/replicate", post(poke))
        .route(paths::STATUS, get(status))
        .route(vdb_proto::SYNC_REPORT_PATH, post(crate::push::sync_report))
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

/// Whether a pull may have objects: a pull token (`Authorization: Bearer`), or a registered
/// mirror's signature with its identity key (`Authorization: Vdb-Mirror …`), checked against
/// the registry as it is now, so a removed or rotated key stops working at once.
pub(crate) async fn pull_allowed(
    m: &App,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Api> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(got) = value.strip_prefix("Bearer ") {
        let ok = m
            .store
            .config()
            .pull_tokens
            .iter()
            .fold(false, |acc, t| acc | ct_eq(got.as_bytes(), t.as_bytes()));
        return if ok {
            Ok(())
        } else {
            Err(Api::new(
                ErrorCode::NoToken,
                "objects need Authorization: Bearer <pull token>: the token sent is not one of this master's `pull_tokens` (compare `pull_token` in the mirror's config)",
            ))
        };
    }
    if value.starts_with(vdb_proto::PULL_AUTH_SCHEME) {
        let auth = vdb_proto::PullAuth::parse(value).ok_or_else(|| {
            Api::new(
                ErrorCode::BadPullAuth,
                "malformed Vdb-Mirror authorization (expected name=… t=… sig=…)",
            )
        })?;
        let record = live(m, &auth.name).await.map_err(|_| {
            Api::new(
                ErrorCode::BadPullAuth,
                format!(
                    "no registered mirror {:?} (it left, was removed, or was never approved)",
                    auth.name
                ),
            )
        })?;
        let Some(key) = record.identity_key else {
            return Err(Api::new(
                ErrorCode::BadPullAuth,
                format!(
                    "mirror {:?} has no identity key in the registry (join with `vdbd mirror join`, or use a pull token)",
                    auth.name
                ),
            ));
        };
        return auth
            .verify(
                &key,
                &m.store.config().network,
                method,
                path,
                m.store.now(),
                crate::join::PULL_WINDOW,
            )
            .map_err(|e| Api::new(ErrorCode::BadPullAuth, e.to_string()));
    }
    Err(Api::new(
        ErrorCode::NoToken,
        "objects need Authorization: Bearer <pull token>, or a joined mirror's signature (`vdbd mirror join`)",
    ))
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

pub(crate) async fn find(m: &App, name: &str) -> Result<Option<RegistryEntry>, Api> {
    let h = m.store.history().clone();
    let all = blocking(move || h.registry())
        .await
        .map_err(Api::internal)?;
    Ok(all.into_iter().find(|e| e.record.name == name))
}

/// The registered (not removed) mirror `name`, or the API's `no_mirror` refusal.
pub(crate) async fn live(m: &App, name: &str) -> Result<MirrorRecord, Api> {
    match find(m, name).await? {
        Some(e) if !e.deleted => Ok(e.record),
        _ => Err(Api::new(
            ErrorCode::NoMirror,
            format!("no mirror named {name:?}"),
        )),
    }
}

async fn mirror_show(
    State(m): S,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<MirrorRecord>, Api> {
    let r = live(&m, &name).await?;
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

pub(crate) async fn write_mirror(m: &App, record: MirrorRecord, deleted: bool) -> Result<(), Api> {
    let prev = find(m, &record.name).await?.map_or(0, |e| e.updated_at);
    let entry = RegistryEntry {
        record,
        // A peer's entry may carry any time: no overflow past the end of time.
        updated_at: m.store.now().max(prev.saturating_add(1)),
        deleted,
    };
    tracing::info!(mirror = %entry.record.name, deleted, "registry changed");
    let h = m.store.history().clone();
    blocking(move || h.put_mirror(&entry))
        .await
        .map_err(Api::internal)?;
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
    if find(&m, &r.name).await?.is_some_and(|e| !e.deleted) {
        return Err(Api::new(
            ErrorCode::Exists,
            format!("mirror {:?} is already registered (use update)", r.name),
        ));
    }
    check_hubs(&m, &r).await?;
    write_mirror(&m, r.clone(), false).await?;
    crate::join::log(&m, &r.name, "add", "admin", String::new()).await;
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
    live(&m, &name).await?;
    check_hubs(&m, &r).await?;
    write_mirror(&m, r.clone(), false).await?;
    crate::join::log(&m, &name, "update", "admin", String::new()).await;
    Ok(axum::Json(r))
}

async fn mirror_remove(
    _: AdminOnly,
    State(m): S,
    Path(name): Path<String>,
) -> Result<StatusCode, Api> {
    let r = live(&m, &name).await?;
    write_mirror(&m, r, true).await?;
    crate::join::log(&m, &name, "remove", "admin", String::new()).await;
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
    let mut r = live(&m, &name).await?;
    r.drained = d.drained;
    write_mirror(&m, r.clone(), false).await?;
    let action = if d.drained { "drain" } else { "undrain" };
    crate::join::log(&m, &name, action, "admin", String::new()).await;
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
    pub upstreams: Vec<crate::UpstreamHealth>,
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

async fn poke(State(m): S) -> StatusCode {
    m.replicator.poke();
    StatusCode::ACCEPTED
}

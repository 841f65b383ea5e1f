//! The join and mirror-request endpoints over the join database ([`crate::join`]).

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vdb_proto::{
    ErrorCode, JoinState, JoinStatus, JoinView, MAX_REQUEST_BYTES, MirrorAction, MirrorRecord,
    MirrorRequest, PendingJoin, PublicKey, RegistryEvent, RequestError, Signed,
};

use super::app::{AdminOnly, Api, App};
use crate::join::{JoinDb, REQUEST_WINDOW, request_key};
use crate::registry::{find, live, log, write_mirror};
use crate::tasks::blocking;

/// The most history rows one answer holds.
const MAX_HISTORY: i64 = 1000;

/// Reads and checks a signed request: its envelope, the signature by the key it claims, the
/// network, the time window and the fields. The key and the nonce are checked by the caller.
fn read_request(body: &[u8]) -> Result<(Signed<MirrorRequest>, MirrorRequest, PublicKey), Api> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(Api::new(
            ErrorCode::TooLarge,
            format!("a mirror request is at most {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    let env = Signed::<MirrorRequest>::from_json(body)
        .map_err(|e| Api::new(ErrorCode::BadStatement, e.to_string()))?;
    let signer = env.signer();
    let req = env
        .verify(&[signer])
        .map_err(|e| Api::new(ErrorCode::BadSignature, e.to_string()))?;
    Ok((env, req, signer))
}

fn refusal(e: RequestError) -> Api {
    let code = match e {
        RequestError::Stale { .. } => ErrorCode::Replay,
        RequestError::KeyMismatch(_) | RequestError::BadProof => ErrorCode::BadSignature,
        RequestError::WrongNetwork(_) | RequestError::BadNonce | RequestError::BadField(_) => {
            ErrorCode::BadRecord
        }
    };
    Api::new(code, e.to_string())
}

async fn fresh_nonce(m: &App, nonce: &str) -> Result<(), Api> {
    let db = m.store.join().clone();
    let nonce = nonce.to_owned();
    let now = m.store.now();
    if blocking(move || db.fresh_nonce(&nonce, now))
        .await
        .map_err(Api::internal)?
    {
        Ok(())
    } else {
        Err(Api::new(
            ErrorCode::Replay,
            "this request was seen before (replay refused); sign a new one",
        ))
    }
}

async fn db<T: Send + 'static>(
    m: &App,
    f: impl FnOnce(&JoinDb) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, Api> {
    let db = m.store.join().clone();
    let (now, expiry) = (m.store.now(), m.store.config().join_expiry_secs);
    blocking(move || {
        db.prune(now, expiry)?;
        f(&db)
    })
    .await
    .map_err(Api::internal)
}

fn status_of(m: &App, p: &PendingJoin, key: PublicKey, live: Option<&MirrorRecord>) -> JoinStatus {
    // An approval made on a peer arrives with the registry before the request's new state.
    let state = match live {
        Some(r) if r.identity_key == Some(key) => JoinState::Approved,
        _ => p.state,
    };
    JoinStatus {
        name: p.name.clone(),
        state,
        key,
        reason: p.reason.clone(),
        expires_at: p
            .updated_at
            .saturating_add(m.store.config().join_expiry_secs),
    }
}

/// `POST /api/v1/join`: a mirror's signed join request.
pub(crate) async fn submit(
    State(m): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Result<Response, Api> {
    let (env, req, key) = read_request(&body)?;
    let now = m.store.now();
    req.check(&key, &m.store.config().network, now, REQUEST_WINDOW)
        .map_err(refusal)?;
    let MirrorAction::Join(_) = &req.action else {
        return Err(Api::new(
            ErrorCode::BadRequest,
            format!(
                "a {} request goes to {}/{}/requests",
                req.action.label(),
                vdb_proto::paths::MIRRORS,
                req.name
            ),
        ));
    };
    let name = req.name.clone();
    let registered = find(&m.store, &name).await?.filter(|e| !e.deleted);
    if let Some(e) = &registered {
        match e.record.identity_key {
            Some(k) if k == key => {
                return Ok(axum::Json(JoinStatus {
                    name,
                    state: JoinState::Approved,
                    key,
                    reason: None,
                    expires_at: now,
                })
                .into_response());
            }
            Some(_) => {
                return Err(Api::new(
                    ErrorCode::Exists,
                    format!(
                        "mirror {name:?} is registered with another identity key: use `vdbd mirror rotate-key` with the old key, or ask the network's admin"
                    ),
                ));
            }
            // A mirror the admin added by hand claims its record: the approval pins the key.
            None => {}
        }
    }
    let n2 = name.clone();
    let (held, waiting) = db(&m, move |db| Ok((db.get(&n2)?, db.waiting(&n2)?))).await?;
    if let Some(p) = &held
        && p.state == JoinState::Pending
        && request_key(p).is_some_and(|(_, k)| k != key)
    {
        return Err(Api::new(
            ErrorCode::Exists,
            format!(
                "a join request for {name:?} with another key is waiting for the network's admin"
            ),
        ));
    }
    let max = m.store.config().join_max_pending;
    if waiting >= i64::try_from(max).unwrap_or(i64::MAX) {
        return Err(Api::new(
            ErrorCode::TooManyPending,
            format!(
                "{max} join requests are waiting for the network's admin already; try again later"
            ),
        ));
    }
    fresh_nonce(&m, &req.nonce).await?;
    let p = PendingJoin {
        name: name.clone(),
        request: env.to_json(),
        state: JoinState::Pending,
        reason: None,
        received_at: now,
        updated_at: now.max(held.as_ref().map_or(0, |h| h.updated_at.saturating_add(1))),
    };
    let p2 = p.clone();
    db(&m, move |db| db.put(&p2, &key)).await?;
    log(
        &m.store,
        &name,
        "join_request",
        &key.to_string(),
        String::new(),
    )
    .await;
    tracing::info!(mirror = %name, %key, "join request waiting for the network's admin");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(status_of(&m, &p, key, None)),
    )
        .into_response())
}

/// `GET /api/v1/join/<name>`: where a request stands (what a joining mirror polls).
pub(crate) async fn status(
    State(m): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
) -> Result<axum::Json<JoinStatus>, Api> {
    let n2 = name.clone();
    let held = db(&m, move |db| db.get(&n2)).await?;
    let registered = find(&m.store, &name).await?.filter(|e| !e.deleted);
    let Some((p, key)) = held.and_then(|p| request_key(&p).map(|(_, k)| (p, k))) else {
        return Err(Api::new(
            ErrorCode::NoRequest,
            format!("no join request of {name:?} (it expired, or none was sent to this master)"),
        ));
    };
    Ok(axum::Json(status_of(
        &m,
        &p,
        key,
        registered.as_ref().map(|e| &e.record),
    )))
}

/// `GET /api/v1/join` (admin): every request (pending first).
pub(crate) async fn list(
    _: AdminOnly,
    State(m): State<Arc<App>>,
) -> Result<axum::Json<Vec<JoinView>>, Api> {
    let all = db(&m, JoinDb::all).await?;
    let expiry = m.store.config().join_expiry_secs;
    let mut out: Vec<JoinView> = all
        .into_iter()
        .filter_map(|p| {
            let (req, key) = request_key(&p)?;
            let MirrorAction::Join(record) = req.action else {
                return None;
            };
            Some(JoinView {
                name: p.name,
                state: p.state,
                key,
                record,
                reason: p.reason,
                received_at: p.received_at,
                expires_at: p.updated_at.saturating_add(expiry),
            })
        })
        .collect();
    out.sort_by_key(|v| (v.state != JoinState::Pending, v.received_at));
    Ok(axum::Json(out))
}

/// The body of a rejection.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Reject {
    #[serde(default)]
    reason: String,
}

async fn pending_request(
    m: &App,
    name: &str,
) -> Result<(PendingJoin, MirrorRecord, PublicKey), Api> {
    let n2 = name.to_owned();
    let held = db(m, move |db| db.get(&n2)).await?;
    match held.and_then(|p| {
        let (req, key) = request_key(&p)?;
        match req.action {
            MirrorAction::Join(r) if p.state == JoinState::Pending => Some((p, r, key)),
            _ => None,
        }
    }) {
        Some(x) => Ok(x),
        None => Err(Api::new(
            ErrorCode::NoRequest,
            format!("no pending join request of {name:?} (see `vdb mirror pending`)"),
        )),
    }
}

async fn decide(
    m: &App,
    mut p: PendingJoin,
    key: PublicKey,
    state: JoinState,
    reason: Option<String>,
) -> Result<(), Api> {
    p.state = state;
    p.reason = reason;
    p.updated_at = m.store.now().max(p.updated_at.saturating_add(1));
    db(m, move |db| db.put(&p, &key)).await.map(drop)
}

/// `POST /api/v1/join/<name>/approve` (admin): registers the mirror with its key.
pub(crate) async fn approve(
    _: AdminOnly,
    State(m): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
) -> Result<axum::Json<MirrorRecord>, Api> {
    let (p, mut record, key) = pending_request(&m, &name).await?;
    // Who is a hub for whom is the network's decision (`vdb mirror update --hub`), not the
    // joining mirror's.
    record.hubs = Vec::new();
    if let Some(e) = find(&m.store, &name).await?.filter(|e| !e.deleted) {
        if e.record.identity_key.is_some_and(|k| k != key) {
            return Err(Api::new(
                ErrorCode::Exists,
                format!(
                    "mirror {name:?} is registered with another identity key; reject this request"
                ),
            ));
        }
        // A claimed record keeps what the network decided about it.
        record.drained = e.record.drained;
        record.maintenance = e.record.maintenance;
        record.hubs = e.record.hubs;
    }
    write_mirror(&m.store, record.clone(), false).await?;
    decide(&m, p, key, JoinState::Approved, None).await?;
    log(
        &m.store,
        &name,
        "approve",
        "admin",
        format!("identity key {key}"),
    )
    .await;
    tracing::info!(mirror = %name, %key, "join request approved");
    if record.push_url.is_some() && m.store.is_ready() {
        m.events.emit(crate::events::Event::MirrorAdded {
            record: Box::new(record.clone()),
            serial: m.store.serial(),
        });
    }
    Ok(axum::Json(record))
}

/// `POST /api/v1/join/<name>/reject` (admin), with `{"reason": "…"}`.
pub(crate) async fn reject(
    _: AdminOnly,
    State(m): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, Api> {
    let r: Reject = if body.is_empty() {
        Reject::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Api::new(ErrorCode::BadRequest, e.to_string()))?
    };
    let reason: String = r
        .reason
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    let (p, _, key) = pending_request(&m, &name).await?;
    decide(&m, p, key, JoinState::Rejected, Some(reason.clone())).await?;
    log(&m.store, &name, "reject", "admin", reason).await;
    tracing::info!(mirror = %name, "join request rejected");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/mirrors/<name>/requests`: a registered mirror's own signed change.
pub(crate) async fn change(
    State(m): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, Api> {
    let (_, req, key) = read_request(&body)?;
    let mut record = live(&m.store, &name).await?;
    if record.identity_key != Some(key) {
        return Err(Api::new(
            ErrorCode::UnknownKey,
            format!("{key} is not the identity key of mirror {name:?}"),
        ));
    }
    if req.name != name {
        return Err(Api::new(
            ErrorCode::BadRequest,
            "the request names another mirror than the URL",
        ));
    }
    let now = m.store.now();
    req.check(&key, &m.store.config().network, now, REQUEST_WINDOW)
        .map_err(refusal)?;
    let actor = key.to_string();
    let detail = match &req.action {
        MirrorAction::Join(_) => {
            return Err(Api::new(
                ErrorCode::BadRequest,
                format!("a join goes to {}", vdb_proto::paths::JOIN),
            ));
        }
        MirrorAction::Update(c) => {
            let mut fields = Vec::new();
            for (f, set) in [
                ("push_url", c.push_url.is_some()),
                ("base_urls", c.base_urls.is_some()),
                ("hosts", c.hosts.is_some()),
                ("addresses", c.addresses.is_some()),
                ("bandwidth_mbps", c.bandwidth_mbps.is_some()),
                ("admin_contact", c.admin_contact.is_some()),
            ] {
                if set {
                    fields.push(f);
                }
            }
            c.apply(&mut record);
            vdb_proto::check_mirror_fields(&record).map_err(refusal)?;
            format!("changed {}", fields.join(", "))
        }
        MirrorAction::Maintenance(w) => {
            record.maintenance.retain(|x| x.end > now);
            if record.maintenance.len() >= 16 {
                return Err(Api::new(
                    ErrorCode::BadRecord,
                    "16 maintenance windows are announced already",
                ));
            }
            record.maintenance.push(w.clone());
            record.maintenance.sort_by_key(|x| x.start);
            format!("{}..{} {}", w.start, w.end, w.reason)
        }
        MirrorAction::RotateKey { new_key, .. } => {
            record.identity_key = Some(*new_key);
            format!("{key} -> {new_key}")
        }
        MirrorAction::Leave { reason } => reason.clone(),
    };
    fresh_nonce(&m, &req.nonce).await?;
    let leave = matches!(req.action, MirrorAction::Leave { .. });
    write_mirror(&m.store, record.clone(), leave).await?;
    log(&m.store, &name, req.action.label(), &actor, detail).await;
    tracing::info!(mirror = %name, action = req.action.label(), "mirror changed its record");
    if leave {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(axum::Json(record).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct HistoryQuery {
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

/// `GET /api/v1/mirrors/<name>/history`: the registry's changes of one mirror, newest first.
pub(crate) async fn history(
    State(m): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<Vec<RegistryEvent>>, Api> {
    let limit = q.limit.clamp(1, MAX_HISTORY);
    Ok(axum::Json(
        db(&m, move |db| db.events(Some(name.as_str()), limit)).await?,
    ))
}

//! What the HTTP API's handlers share: the state they work on, the error answer, and who may
//! call (the admin token, pulls).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vdb_proto::{ApiError, ErrorCode};
use vdb_service::ct_eq;

use crate::gate::Refusal;
use crate::parts::Parts;
use crate::registry;
use crate::replicate::Replicator;

/// What the HTTP API works on.
#[derive(Debug)]
pub(crate) struct App {
    parts: Parts,
    pub(crate) replicator: Arc<Replicator>,
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

/// The bearer token of `Authorization: Bearer …`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
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
        let record = registry::live(&m.store, &auth.name).await.map_err(|_| {
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

//! The API's error answers.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use vdb_proto::ErrorCode;

/// An error answer of any role's HTTP API: a status, a stable machine code (an [`ErrorCode`],
/// the enum clients match on) and a sentence,
/// sent as a [`vdb_proto::ApiError`] JSON body (`{"code": …, "message": …}`) with
/// `Cache-Control: no-store`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {code}: {message}", self.status())]
pub struct ApiError {
    kind: ErrorKind,
    code: ErrorCode,
    message: String,
    retry_after: Option<u32>,
}

/// What kind of error an [`ApiError`] is (it decides the status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: credentials are missing or wrong (`WWW-Authenticate: Basic realm=…` is added).
    Unauthorized(&'static str),
    /// 401 for bearer tokens (`WWW-Authenticate: Bearer`).
    UnauthorizedBearer,
    /// 403: the credentials do not allow it.
    Forbidden,
    /// 404: no such thing.
    NotFound,
    /// 405: not with this method.
    MethodNotAllowed,
    /// 409: it conflicts with the state (a replay, an older version).
    Conflict,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 421: not served under this host name.
    Misdirected,
    /// 422: well-formed but refused by the rules.
    Unprocessable,
    /// 429: too many requests.
    TooManyRequests,
    /// 500: the server failed.
    Internal,
    /// 502: an upstream failed.
    BadGateway,
    /// 503: not now; retry after this many seconds (if given).
    Unavailable(Option<u32>),
    /// 504: an upstream timed out.
    GatewayTimeout,
    /// Any other status.
    Other(StatusCode),
}

impl ApiError {
    /// An error of `kind` with a machine `code` and a `message`.
    pub fn new(kind: ErrorKind, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Tells the client to come back after `secs` seconds (`Retry-After`), whatever the kind
    /// (a 429 of a rate limit, a 503 of a busy server).
    #[must_use]
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u32> {
        match self.kind {
            ErrorKind::Unavailable(Some(s)) => self.retry_after.or(Some(s)),
            _ => self.retry_after,
        }
    }

    /// An error with the given status (a known status maps to its [`ErrorKind`]).
    pub fn status_code(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            400 => ErrorKind::BadRequest,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            405 => ErrorKind::MethodNotAllowed,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::PayloadTooLarge,
            421 => ErrorKind::Misdirected,
            422 => ErrorKind::Unprocessable,
            429 => ErrorKind::TooManyRequests,
            500 => ErrorKind::Internal,
            502 => ErrorKind::BadGateway,
            503 => ErrorKind::Unavailable(None),
            504 => ErrorKind::GatewayTimeout,
            _ => ErrorKind::Other(status),
        };
        Self::new(kind, code, message)
    }

    /// 400.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    /// 403.
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    /// 404.
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    /// 409.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// 500.
    pub fn internal(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, code, message)
    }

    /// 503.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable(None), code, message)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized(_) | ErrorKind::UnauthorizedBearer => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Other(s) => s,
        }
    }

    /// The machine code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body.
    pub fn body(&self) -> vdb_proto::ApiError {
        vdb_proto::ApiError::new(self.code, self.message.clone())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let body = serde_json::to_vec(&vdb_proto::ApiError::new(self.code, self.message))
            .unwrap_or_default();
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self.kind {
            ErrorKind::Unauthorized(realm) => {
                if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ErrorKind::UnauthorizedBearer => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        if let Some(secs) = retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_status_and_headers() {
        let e = ApiError::new(ErrorKind::Unavailable(Some(7)), ErrorCode::Busy, "later");
        assert_eq!(e.status(), 503);
        assert_eq!(e.to_string(), "503 Service Unavailable busy: later");
        let r = e.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let b = axum::body::to_bytes(r.into_body(), 1 << 10).await.unwrap();
        let v: vdb_proto::ApiError = serde_json::from_slice(&b).unwrap();
        assert_eq!((v.code.as_str(), v.message.as_str()), ("busy", "later"));
        assert_eq!(v.error_code(), Some(ErrorCode::Busy));
        let r = ApiError::status_code(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "slow down",
        )
        .with_retry_after(3600)
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3600");
        let r = ApiError::new(
            ErrorKind::Unauthorized("stats"),
            ErrorCode::Unauthorized,
            "x",
        )
        .into_response();
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"stats\"");
        assert_eq!(
            ApiError::status_code(StatusCode::CONFLICT, ErrorCode::Replay, "r").kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            ApiError::status_code(StatusCode::IM_A_TEAPOT, ErrorCode::BadRequest, "t").status(),
            418
        );
    }
}

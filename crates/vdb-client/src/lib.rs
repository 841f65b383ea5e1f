//! Clients of the masters' HTTP API: publishing with failover (`vdb publish`) and registry
//! administration (`vdb mirror`); and of the sample intake ([`samples`], `vdb samples`).
//!
//! A crate of its own so that the `vdb` binary, which holds publishers' private keys, links no
//! server code; `vdbd dev` and the tests publish in-process through the same code.

pub mod samples;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vdb_fetch::{Certificate, Client, Expect, Method};
use vdb_format::container::Kind;
use vdb_proto::{
    ApiError, Clock, FileRef, Manifest, MirrorRecord, PublicKey, ReleaseAccepted, ReleaseStatement,
    SecretKey, Signed, SystemClock, UploadTicket,
};

pub use vdb_fetch::read_ca;

/// The User-Agent of `vdb` and of in-process publishers.
const USER_AGENT: &str = concat!("vdbnet-client/", env!("CARGO_PKG_VERSION"));

/// Largest JSON answer read from a master.
const MAX_JSON: u64 = 64 << 20;

/// Largest object read from a master ([`Admin::object`]).
const MAX_OBJECT: u64 = 2 << 30;

/// The client for masters: connect within 3 s, whole requests within `timeout`; no read-stall
/// limit, since a master may verify a large release for a while before it answers.
fn http_client(timeout: Duration, ca: &[Certificate]) -> Client {
    Client::builder(USER_AGENT)
        .connect_timeout(Duration::from_secs(3))
        .timeout(timeout)
        .read_timeout(None)
        .add_roots(ca)
        .build()
        .expect("a client without proxy or client certificate always builds")
}

/// A master's error document from an error answer (or one made from its status and text).
fn api_error(e: &vdb_fetch::Error) -> Option<ApiError> {
    let status = e.status()?;
    let body = e.body().unwrap_or_default();
    Some(serde_json::from_slice(body).unwrap_or_else(|_| ApiError {
        code: format!("http_{}", status.as_u16()),
        message: String::from_utf8_lossy(body).chars().take(500).collect(),
    }))
}

/// One master that could not take a release (a transport failure or a 5xx answer); the next
/// master is tried.
#[derive(Debug)]
pub struct MasterDown {
    /// The master's base URL.
    pub master: String,
    /// What failed.
    pub error: vdb_fetch::Error,
}

impl std::fmt::Display for MasterDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.master, self.error)?;
        if let Some(a) = api_error(&self.error) {
            write!(f, " ({}: {})", a.code, a.message)?;
        }
        Ok(())
    }
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A master answered and refused the release.
    #[error("{master} refused the release: {} ({})", .error.message, .error.code)]
    Refused {
        /// The master that refused.
        master: String,
        /// Its reason.
        error: ApiError,
    },
    /// No master could be reached.
    #[error("no master reachable: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unreachable(Vec<MasterDown>),
    /// The files or options do not make a release.
    #[error("{0}")]
    Usage(String),
}

/// A file to publish.
#[derive(Debug, Clone)]
pub struct ReleaseFile {
    /// The name mirrors serve it under.
    pub name: String,
    /// Its bytes on disk.
    pub path: PathBuf,
}

impl ReleaseFile {
    /// A file published under its own file name.
    pub fn from_path(path: impl Into<PathBuf>) -> Result<Self, PublishError> {
        let path = path.into();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| PublishError::Usage(format!("{}: no usable file name", path.display())))?
            .to_owned();
        Ok(Self { name, path })
    }
}

/// What a release is about, as given or inferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// Database name.
    pub db: String,
    /// Version.
    pub version: u32,
    /// Build time (Unix seconds).
    pub built_at: i64,
}

/// Infers database, version and build time from the release's CVD/CLD/CUD (name and header);
/// `db`/`version` given explicitly win.
pub fn infer(
    files: &[ReleaseFile],
    db: Option<&str>,
    version: Option<u32>,
) -> Result<ReleaseInfo, PublishError> {
    let container = files
        .iter()
        .find(|f| Kind::from_file_name(&f.name).is_some());
    let mut info = ReleaseInfo {
        db: db.unwrap_or_default().to_owned(),
        version: version.unwrap_or(0),
        built_at: 0,
    };
    if let Some(c) = container {
        let file = std::fs::File::open(&c.path)
            .map_err(|e| PublishError::Usage(format!("{}: {e}", c.path.display())))?;
        let h = vdb_format::container::read_header(file)
            .map_err(|e| PublishError::Usage(format!("{}: {e}", c.path.display())))?;
        if info.db.is_empty() {
            let stem = &c.name[..c.name.len() - 4];
            let db = match stem.rsplit_once('-') {
                Some((d, v)) if v.bytes().all(|b| b.is_ascii_digit()) => d,
                _ => stem,
            };
            info.db = db.to_owned();
        }
        if info.version == 0 {
            info.version = h.version;
        }
        info.built_at = h
            .build_secs
            .and_then(|s| i64::try_from(s).ok())
            .unwrap_or(0);
    }
    if info.db.is_empty() || info.version == 0 {
        return Err(PublishError::Usage(
            "cannot infer the database and version (no CVD/CLD/CUD among the files): give --db and --version".into(),
        ));
    }
    if info.built_at == 0 {
        info.built_at = now();
    }
    Ok(info)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Progress of a publish, for a progress bar.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Trying this master.
    Master(String),
    /// Uploading a file of `size` bytes.
    File(String, u64),
    /// Bytes of the current file sent so far.
    Sent(u64),
    /// This master could not be reached or failed; the next one is tried (the reason).
    FailedOver(String, String),
}

/// Publishes releases to an ordered list of masters, failing over.
#[derive(Debug, Clone)]
pub struct Publisher {
    masters: Vec<String>,
    key: SecretKey,
    http: Client,
    clock: Arc<dyn Clock>,
}

enum Attempt {
    Refused(ApiError),
    Down(vdb_fetch::Error),
    Local(PublishError),
}

/// A refusal (a 4xx answer: every master runs the same gate) or a master that is down.
fn attempt(e: vdb_fetch::Error) -> Attempt {
    match (e.status(), api_error(&e)) {
        // A code says whose fault it is; an answer without a known code goes by its status.
        (Some(s), Some(api))
            if !api
                .error_code()
                .map_or(s.is_server_error(), vdb_proto::ErrorCode::is_retryable) =>
        {
            Attempt::Refused(api)
        }
        _ => Attempt::Down(e),
    }
}

impl Publisher {
    /// A publisher for `masters` (base URLs, in order) signing with `key`.
    pub fn new(masters: Vec<String>, key: SecretKey) -> Self {
        let http = http_client(Duration::from_secs(600), &[]);
        Self {
            masters,
            key,
            http,
            clock: Arc::new(SystemClock),
        }
    }

    /// Also trusts these root certificates (masters with a private CA).
    pub fn with_ca(mut self, ca: &[Certificate]) -> Self {
        self.http = http_client(Duration::from_secs(600), ca);
        self
    }

    /// Uses `clock` for the statement's and tickets' `issued_at` (tests, `vdbd dev`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Hashes the files and signs the statement.
    pub fn statement(
        &self,
        info: &ReleaseInfo,
        files: &[ReleaseFile],
        notes: &str,
    ) -> Result<(ReleaseStatement, Signed<ReleaseStatement>), PublishError> {
        let mut refs = Vec::new();
        for f in files {
            let data = std::fs::read(&f.path)
                .map_err(|e| PublishError::Usage(format!("{}: {e}", f.path.display())))?;
            refs.push(FileRef {
                name: f.name.clone(),
                size: data.len() as u64,
                sha256: vdb_proto::sha256_hex(&data),
                segments: None,
            });
        }
        let st = ReleaseStatement {
            db: info.db.clone(),
            version: info.version,
            built_at: info.built_at,
            issued_at: self.clock.now(),
            files: refs,
            notes: notes.to_owned(),
        };
        let env = Signed::sign(&st, &self.key);
        Ok((st, env))
    }

    /// Uploads the files and the statement to the first master that answers. A refusal is
    /// final (every master runs the same gate); an unreachable or failing master is skipped.
    pub async fn publish(
        &self,
        files: &[ReleaseFile],
        st: &ReleaseStatement,
        env: &Signed<ReleaseStatement>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<ReleaseAccepted, PublishError> {
        let mut down = Vec::new();
        for m in &self.masters {
            progress(Progress::Master(m.clone()));
            match self.try_master(m, files, st, env, progress).await {
                Ok(a) => return Ok(a),
                Err(Attempt::Refused(error)) => {
                    return Err(PublishError::Refused {
                        master: m.clone(),
                        error,
                    });
                }
                Err(Attempt::Down(error)) => {
                    progress(Progress::FailedOver(m.clone(), error.to_string()));
                    down.push(MasterDown {
                        master: m.clone(),
                        error,
                    });
                }
                Err(Attempt::Local(e)) => return Err(e),
            }
        }
        Err(PublishError::Unreachable(down))
    }

    async fn try_master(
        &self,
        master: &str,
        files: &[ReleaseFile],
        st: &ReleaseStatement,
        env: &Signed<ReleaseStatement>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<ReleaseAccepted, Attempt> {
        let base = master.trim_end_matches('/');
        for (f, r) in files.iter().zip(&st.files) {
            progress(Progress::File(f.name.clone(), r.size));
            let data = std::fs::read(&f.path).map_err(|e| {
                Attempt::Local(PublishError::Usage(format!("{}: {e}", f.path.display())))
            })?;
            let ticket = Signed::sign(
                &UploadTicket {
                    sha256: r.sha256.clone(),
                    size: r.size,
                    issued_at: self.clock.now(),
                },
                &self.key,
            );
            self.http
                .put(&format!("{base}{}/{}", vdb_proto::paths::OBJECTS, r.sha256))
                .header(vdb_proto::UPLOAD_HEADER, ticket.to_json())
                .body(data)
                .send()
                .await
                .map_err(attempt)?;
            progress(Progress::Sent(r.size));
        }
        // Sent twice at most when the connection fails: a pooled keep-alive connection the
        // server closed at the moment of reuse fails without an answer. Sending the same signed
        // statement again is safe: a master answers a statement it already accepted with that
        // release instead of taking it twice.
        let url = format!("{base}{}", vdb_proto::paths::RELEASES);
        let post = || self.http.post(&url).json_body(env.to_json()).send();
        let resp = match post().await {
            Err(e) if e.status().is_none() => post().await,
            r => r,
        }
        .map_err(attempt)?;
        resp.json(MAX_JSON).await.map_err(Attempt::Down)
    }
}

/// Why an admin or read call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The master answered with an error.
    #[error("{} ({})", .0.message, .0.code)]
    Api(ApiError),
    /// The request failed or the answer was unusable ([`vdb_fetch::Error::kind`] says how).
    #[error("cannot talk to the master: {0}")]
    Fetch(#[source] vdb_fetch::Error),
    /// The master's manifest does not verify.
    #[error("the master's manifest is refused: {0}")]
    Manifest(#[from] vdb_proto::VerifyError),
    /// Anything else (an unusable setting, an empty answer).
    #[error("cannot talk to the master: {0}")]
    Transport(String),
}

impl From<vdb_fetch::Error> for AdminError {
    fn from(e: vdb_fetch::Error) -> Self {
        match api_error(&e) {
            Some(api) => Self::Api(api),
            None => Self::Fetch(e),
        }
    }
}

/// A client of one master's read and admin API.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    token: Option<String>,
    http: Client,
}

impl Admin {
    /// A client of `master` (base URL) with an optional admin token.
    pub fn new(master: &str, token: Option<String>) -> Self {
        Self {
            base: master.trim_end_matches('/').to_owned(),
            token,
            http: http_client(Duration::from_secs(30), &[]),
        }
    }

    /// Also trusts these root certificates (masters with a private CA).
    pub fn with_ca(mut self, ca: &[Certificate]) -> Self {
        self.http = http_client(Duration::from_secs(30), ca);
        self
    }

    /// Sends a request (with the admin token, if any); a successful answer, or its error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<vdb_fetch::Response, AdminError> {
        let mut req = self
            .http
            .request(method, &format!("{}{path}", self.base))
            .bearer(self.token.as_deref());
        if let Some(b) = body {
            req = req.json_body(b);
        }
        Ok(req.send().await?)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Option<T>, AdminError> {
        let resp = self.send(method, path, body).await?;
        let url = resp.url().clone();
        let bytes = resp.bytes(&Expect::at_most(MAX_JSON)).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| vdb_fetch::Error::Decode { url, source }.into())
    }

    async fn must<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, AdminError> {
        self.call(method, path, body)
            .await?
            .ok_or_else(|| AdminError::Transport("empty answer".into()))
    }

    /// Registers a mirror.
    pub async fn add(&self, r: &MirrorRecord) -> Result<MirrorRecord, AdminError> {
        self.must(Method::POST, vdb_proto::paths::MIRRORS, Some(json(r)))
            .await
    }

    /// Lists the registry.
    pub async fn list(&self) -> Result<Vec<MirrorRecord>, AdminError> {
        self.must(Method::GET, vdb_proto::paths::MIRRORS, None)
            .await
    }

    /// One mirror.
    pub async fn show(&self, name: &str) -> Result<MirrorRecord, AdminError> {
        self.must(
            Method::GET,
            &format!("{}/{name}", vdb_proto::paths::MIRRORS),
            None,
        )
        .await
    }

    /// Replaces a mirror's record.
    pub async fn update(&self, r: &MirrorRecord) -> Result<MirrorRecord, AdminError> {
        self.must(
            Method::PUT,
            &format!("{}/{}", vdb_proto::paths::MIRRORS, r.name),
            Some(json(r)),
        )
        .await
    }

    /// Removes a mirror.
    pub async fn remove(&self, name: &str) -> Result<(), AdminError> {
        self.call::<serde_json::Value>(
            Method::DELETE,
            &format!("{}/{name}", vdb_proto::paths::MIRRORS),
            None,
        )
        .await
        .map(drop)
    }

    /// Drains a mirror (or puts it back).
    pub async fn drain(&self, name: &str, drained: bool) -> Result<MirrorRecord, AdminError> {
        self.must(
            Method::POST,
            &format!("{}/{name}/drain", vdb_proto::paths::MIRRORS),
            Some(json(&vdb_proto::Drain { drained })),
        )
        .await
    }

    /// The join requests (admin token): pending first, then decided ones until they expire.
    pub async fn pending(&self) -> Result<Vec<vdb_proto::JoinView>, AdminError> {
        self.must(Method::GET, vdb_proto::paths::JOIN, None).await
    }

    /// Approves mirror `name`'s join request (admin token): its record, key pinned.
    pub async fn approve(&self, name: &str) -> Result<MirrorRecord, AdminError> {
        self.must(
            Method::POST,
            &format!("{}/{name}/approve", vdb_proto::paths::JOIN),
            None,
        )
        .await
    }

    /// Rejects mirror `name`'s join request (admin token), saying why.
    pub async fn reject(&self, name: &str, reason: &str) -> Result<(), AdminError> {
        self.call::<serde_json::Value>(
            Method::POST,
            &format!("{}/{name}/reject", vdb_proto::paths::JOIN),
            Some(serde_json::json!({ "reason": reason }).to_string()),
        )
        .await
        .map(drop)
    }

    /// The registry's history of mirror `name`, newest first.
    pub async fn mirror_history(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<vdb_proto::RegistryEvent>, AdminError> {
        self.must(
            Method::GET,
            &format!("{}/{name}/history?limit={limit}", vdb_proto::paths::MIRRORS),
            None,
        )
        .await
    }

    /// Sends a mirror's signed join request; where it stands.
    pub async fn join(
        &self,
        request: &Signed<vdb_proto::MirrorRequest>,
    ) -> Result<vdb_proto::JoinStatus, AdminError> {
        self.must(
            Method::POST,
            vdb_proto::paths::JOIN,
            Some(request.to_json()),
        )
        .await
    }

    /// Where mirror `name`'s join request stands.
    pub async fn join_status(&self, name: &str) -> Result<vdb_proto::JoinStatus, AdminError> {
        self.must(
            Method::GET,
            &format!("{}/{name}", vdb_proto::paths::JOIN),
            None,
        )
        .await
    }

    /// Sends a registered mirror's signed change (update, maintenance, rotate-key, leave); the
    /// record after it (`None` after leaving).
    pub async fn mirror_request(
        &self,
        name: &str,
        request: &Signed<vdb_proto::MirrorRequest>,
    ) -> Result<Option<MirrorRecord>, AdminError> {
        self.call(
            Method::POST,
            &format!("{}/{name}/requests", vdb_proto::paths::MIRRORS),
            Some(request.to_json()),
        )
        .await
    }

    /// The master's current manifest, verified against `keys`.
    pub async fn manifest(&self, keys: &[PublicKey]) -> Result<Manifest, AdminError> {
        let v: serde_json::Value = self
            .must(Method::GET, vdb_proto::MANIFEST_PATH, None)
            .await?;
        let env = Signed::<Manifest>::from_json(v.to_string().as_bytes())?;
        Ok(env.verify(keys)?)
    }

    /// The recent history (accepted and refused releases), newest first.
    pub async fn history(&self, limit: u32) -> Result<Vec<vdb_proto::ReleaseRow>, AdminError> {
        self.must(Method::GET, &format!("/api/v1/history?limit={limit}"), None)
            .await
    }

    /// A release and its rollout timeline.
    pub async fn release(&self, id: &str) -> Result<vdb_proto::Timeline, AdminError> {
        self.must(
            Method::GET,
            &format!("{}/{id}", vdb_proto::paths::RELEASES),
            None,
        )
        .await
    }

    /// Raw bytes of an object.
    pub async fn object(&self, sha256: &str) -> Result<Vec<u8>, AdminError> {
        let path = format!("{}/{sha256}", vdb_proto::paths::OBJECTS);
        Ok(self
            .send(Method::GET, &path, None)
            .await?
            .bytes(&Expect::at_most(MAX_OBJECT))
            .await?)
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Reads the files named on a command line.
pub fn files_from_paths(paths: &[impl AsRef<Path>]) -> Result<Vec<ReleaseFile>, PublishError> {
    paths
        .iter()
        .map(|p| ReleaseFile::from_path(p.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Reads one HTTP/1.1 request (head and a Content-Length body).
    async fn read_request(s: &mut tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before sending a request");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    #[tokio::test]
    async fn a_statement_whose_connection_drops_unanswered_is_sent_once_more() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for n in 1.. {
                let (mut s, _) = l.accept().await.unwrap();
                read_request(&mut s).await;
                if n == 1 {
                    continue; // closes the connection without an answer
                }
                let body = serde_json::to_string(&ReleaseAccepted {
                    release_id: "r1".into(),
                    master: "a".into(),
                    db: "daily".into(),
                    version: 2,
                    serial: 7,
                })
                .unwrap();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
                return n;
            }
            unreachable!()
        });
        let key = SecretKey::from_seed([1; 32]);
        let st = ReleaseStatement {
            db: "daily".into(),
            version: 2,
            built_at: 1,
            issued_at: 1,
            files: Vec::new(),
            notes: String::new(),
        };
        let env = Signed::sign(&st, &key);
        let p = Publisher::new(vec![format!("http://{addr}")], key);
        let a = p.publish(&[], &st, &env, &|_| {}).await.unwrap();
        assert_eq!((a.release_id.as_str(), a.serial), ("r1", 7));
        assert_eq!(server.await.unwrap(), 2, "sent twice");
    }
}

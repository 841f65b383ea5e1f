//! Clients of the masters' HTTP API: publishing with failover (`vdb publish`) and registry
//! administration (`vdb mirror`); and of the sample intake ([`samples`], `vdb samples`).
//!
//! A crate of its own so that the `vdb` binary, which holds publishers' private keys, links no
//! server code; `vdbd dev` and the tests publish in-process through the same code.

pub mod samples;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vdb_format::container::Kind;
use vdb_proto::{
    ApiError, Clock, FileRef, Manifest, MirrorRecord, PublicKey, ReleaseAccepted, ReleaseStatement,
    SecretKey, Signed, SystemClock, UploadTicket,
};

/// A CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("CA file {}: {reason}", .path.display())]
pub struct CaError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads PEM root certificates (a private CA for masters' HTTPS).
pub fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, CaError> {
    let err = |reason: String| CaError {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))
}

fn http_client(timeout: Duration, ca: &[reqwest::Certificate]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(timeout);
    for c in ca {
        b = b.add_root_certificate(c.clone());
    }
    b.build().unwrap_or_default()
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
    #[error("no master reachable: {}", .0.join("; "))]
    Unreachable(Vec<String>),
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
}

/// Publishes releases to an ordered list of masters, failing over.
#[derive(Debug, Clone)]
pub struct Publisher {
    masters: Vec<String>,
    key: SecretKey,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

async fn api_error(r: reqwest::Response) -> ApiError {
    let status = r.status();
    let body = r.bytes().await.unwrap_or_default();
    serde_json::from_slice(&body).unwrap_or_else(|_| ApiError {
        code: format!("http_{}", status.as_u16()),
        message: String::from_utf8_lossy(&body).chars().take(500).collect(),
    })
}

enum Attempt {
    Refused(ApiError),
    Down(String),
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
    pub fn with_ca(mut self, ca: &[reqwest::Certificate]) -> Self {
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
                Err(Attempt::Down(why)) => down.push(format!("{m}: {why}")),
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
            let data = std::fs::read(&f.path).map_err(|e| Attempt::Down(chain(&e)))?;
            let ticket = Signed::sign(
                &UploadTicket {
                    sha256: r.sha256.clone(),
                    size: r.size,
                    issued_at: self.clock.now(),
                },
                &self.key,
            );
            let resp = self
                .http
                .put(format!("{base}{}/{}", vdb_proto::paths::OBJECTS, r.sha256))
                .header(vdb_proto::UPLOAD_HEADER, ticket.to_json())
                .body(data)
                .send()
                .await
                .map_err(|e| Attempt::Down(chain(&e)))?;
            classify(resp).await?;
            progress(Progress::Sent(r.size));
        }
        // Sent twice at most when the connection fails: a pooled keep-alive connection the
        // server closed at the moment of reuse fails without an answer. Sending the same signed
        // statement again is safe: a master answers a statement it already accepted with that
        // release instead of taking it twice.
        let post = || {
            self.http
                .post(format!("{base}{}", vdb_proto::paths::RELEASES))
                .header("content-type", "application/json")
                .body(env.to_json())
                .send()
        };
        let resp = match post().await {
            Ok(r) => r,
            Err(_) => post().await.map_err(|e| Attempt::Down(chain(&e)))?,
        };
        let resp = classify(resp).await?;
        resp.json().await.map_err(|e| Attempt::Down(chain(&e)))
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn classify(resp: reqwest::Response) -> Result<reqwest::Response, Attempt> {
    let s = resp.status();
    if s.is_success() {
        return Ok(resp);
    }
    let e = api_error(resp).await;
    if s.is_server_error() {
        Err(Attempt::Down(format!("{}: {}", e.code, e.message)))
    } else {
        Err(Attempt::Refused(e))
    }
}

/// Why an admin or read call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The master answered with an error.
    #[error("{} ({})", .0.message, .0.code)]
    Api(ApiError),
    /// The master could not be reached or answered nonsense.
    #[error("cannot talk to the master: {0}")]
    Transport(String),
}

/// A client of one master's read and admin API.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
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
    pub fn with_ca(mut self, ca: &[reqwest::Certificate]) -> Self {
        self.http = http_client(Duration::from_secs(30), ca);
        self
    }

    /// Sends a request (with the admin token, if any); a successful answer, or its error.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<reqwest::Response, AdminError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| AdminError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(AdminError::Api(api_error(resp).await));
        }
        Ok(resp)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Option<T>, AdminError> {
        let bytes = self
            .send(method, path, body)
            .await?
            .bytes()
            .await
            .map_err(|e| AdminError::Transport(e.to_string()))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AdminError::Transport(e.to_string()))
    }

    async fn must<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, AdminError> {
        self.call(method, path, body)
            .await?
            .ok_or_else(|| AdminError::Transport("empty answer".into()))
    }

    /// Registers a mirror.
    pub async fn add(&self, r: &MirrorRecord) -> Result<MirrorRecord, AdminError> {
        self.must(
            reqwest::Method::POST,
            vdb_proto::paths::MIRRORS,
            Some(json(r)),
        )
        .await
    }

    /// Lists the registry.
    pub async fn list(&self) -> Result<Vec<MirrorRecord>, AdminError> {
        self.must(reqwest::Method::GET, vdb_proto::paths::MIRRORS, None)
            .await
    }

    /// One mirror.
    pub async fn show(&self, name: &str) -> Result<MirrorRecord, AdminError> {
        self.must(
            reqwest::Method::GET,
            &format!("{}/{name}", vdb_proto::paths::MIRRORS),
            None,
        )
        .await
    }

    /// Replaces a mirror's record.
    pub async fn update(&self, r: &MirrorRecord) -> Result<MirrorRecord, AdminError> {
        self.must(
            reqwest::Method::PUT,
            &format!("{}/{}", vdb_proto::paths::MIRRORS, r.name),
            Some(json(r)),
        )
        .await
    }

    /// Removes a mirror.
    pub async fn remove(&self, name: &str) -> Result<(), AdminError> {
        self.call::<serde_json::Value>(
            reqwest::Method::DELETE,
            &format!("{}/{name}", vdb_proto::paths::MIRRORS),
            None,
        )
        .await
        .map(drop)
    }

    /// Drains a mirror (or puts it back).
    pub async fn drain(&self, name: &str, drained: bool) -> Result<MirrorRecord, AdminError> {
        self.must(
            reqwest::Method::POST,
            &format!("{}/{name}/drain", vdb_proto::paths::MIRRORS),
            Some(json(&vdb_proto::Drain { drained })),
        )
        .await
    }

    /// The master's current manifest, verified against `keys`.
    pub async fn manifest(&self, keys: &[PublicKey]) -> Result<Manifest, AdminError> {
        let v: serde_json::Value = self
            .must(reqwest::Method::GET, vdb_proto::MANIFEST_PATH, None)
            .await?;
        let env = Signed::<Manifest>::from_json(v.to_string().as_bytes())
            .map_err(|e| AdminError::Transport(e.to_string()))?;
        env.verify(keys)
            .map_err(|e| AdminError::Transport(e.to_string()))
    }

    /// The recent history (accepted and refused releases), newest first.
    pub async fn history(&self, limit: u32) -> Result<Vec<vdb_proto::ReleaseRow>, AdminError> {
        self.must(
            reqwest::Method::GET,
            &format!("/api/v1/history?limit={limit}"),
            None,
        )
        .await
    }

    /// A release and its rollout timeline.
    pub async fn release(&self, id: &str) -> Result<vdb_proto::Timeline, AdminError> {
        self.must(
            reqwest::Method::GET,
            &format!("{}/{id}", vdb_proto::paths::RELEASES),
            None,
        )
        .await
    }

    /// Raw bytes of an object.
    pub async fn object(&self, sha256: &str) -> Result<Vec<u8>, AdminError> {
        let path = format!("{}/{sha256}", vdb_proto::paths::OBJECTS);
        Ok(self
            .send(reqwest::Method::GET, &path, None)
            .await?
            .bytes()
            .await
            .map_err(|e| AdminError::Transport(e.to_string()))?
            .to_vec())
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

//! A client of the sample intake (`vdbd intake`): submitting a sample, a submitter's status,
//! and the team's calls (`vdb samples list|show|get|resolve`) with the admin token.

use std::path::Path;

use vdb_fetch::{Certificate, Expect, Method, multipart};
use vdb_proto::sample::{
    Resolve, SampleRecord, SampleState, SubmissionReceipt, SubmissionStatus, paths,
};

use crate::{Admin, AdminError, MAX_JSON, MAX_OBJECT, json};

/// A client of one intake.
#[derive(Debug, Clone)]
pub struct Samples(Admin);

/// What a submitter says about a sample.
#[derive(Debug, Clone, Default)]
pub struct SubmitInfo {
    /// The detection name another scanner gave it.
    pub detection: Option<String>,
    /// Where it came from.
    pub note: String,
    /// Where to send the answer.
    pub email: Option<String>,
}

fn transport(e: impl std::fmt::Display) -> AdminError {
    AdminError::Transport(e.to_string())
}

impl Samples {
    /// A client of `intake` (base URL) with an optional admin token.
    pub fn new(intake: &str, token: Option<String>) -> Self {
        Self(Admin::new(intake, token))
    }

    /// Also trusts these root certificates (an intake with a private CA).
    pub fn with_ca(self, ca: &[Certificate]) -> Self {
        Self(self.0.with_ca(ca))
    }

    /// Submits a file (streamed from disk) through the API.
    pub async fn submit(
        &self,
        file: &Path,
        info: &SubmitInfo,
    ) -> Result<SubmissionReceipt, AdminError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| transport(format!("{}: {e}", file.display())))?;
        let len = f.metadata().await.map_err(transport)?.len();
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sample")
            .to_owned();
        let part = multipart::Part::stream_with_length(vdb_fetch::Body::from(f), len)
            .file_name(name)
            .mime_str("application/octet-stream")
            .map_err(transport)?;
        let mut form = multipart::Form::new()
            .text("note", info.note.clone())
            .part("file", part);
        if let Some(d) = &info.detection {
            form = form.text("detection", d.clone());
        }
        if let Some(e) = &info.email {
            form = form.text("email", e.clone());
        }
        let resp = self
            .0
            .http
            .post(&format!("{}{}", self.0.base, paths::SAMPLES))
            .multipart(form)
            .send()
            .await?;
        Ok(resp.json(MAX_JSON).await?)
    }

    /// A submitter's status, by tracking id (no token needed).
    pub async fn status(&self, tracking_id: &str) -> Result<SubmissionStatus, AdminError> {
        self.0
            .must(
                Method::GET,
                &format!("{}/{tracking_id}", paths::SUBMISSIONS),
                None,
            )
            .await
    }

    /// Samples, newest first (admin).
    pub async fn list(
        &self,
        state: Option<SampleState>,
        limit: u32,
    ) -> Result<Vec<SampleRecord>, AdminError> {
        let mut path = format!("{}?limit={limit}", paths::SAMPLES);
        if let Some(s) = state {
            let v = serde_json::to_value(s).map_err(transport)?;
            path.push_str(&format!("&state={}", v.as_str().unwrap_or_default()));
        }
        self.0.must(Method::GET, &path, None).await
    }

    /// One sample with its submissions (admin).
    pub async fn show(&self, sha256: &str) -> Result<SampleRecord, AdminError> {
        self.0
            .must(Method::GET, &format!("{}/{sha256}", paths::SAMPLES), None)
            .await
    }

    /// Records the release that detects a sample (admin).
    pub async fn resolve(&self, sha256: &str, r: &Resolve) -> Result<SampleRecord, AdminError> {
        self.0
            .must(
                Method::POST,
                &format!("{}/{sha256}/resolve", paths::SAMPLES),
                Some(json(r)),
            )
            .await
    }

    /// Downloads a sample's quarantine ZIP (encrypted, password `infected`) to `dst`
    /// (temporary file, fsync, rename; streamed, never held in memory). Returns its size.
    pub async fn download(&self, sha256: &str, dst: &Path) -> Result<u64, AdminError> {
        let resp = self
            .0
            .send(
                Method::GET,
                &format!("{}/{sha256}/quarantine", paths::SAMPLES),
                None,
            )
            .await?;
        let dir = dst
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let temp = tempfile::Builder::new()
            .prefix(".vdb-sample-")
            .tempfile_in(dir)
            .map_err(|e| transport(format!("{}: {e}", dir.display())))?;
        let got = resp
            .to_file(temp.path(), &Expect::at_most(MAX_OBJECT))
            .await?;
        temp.persist(dst)
            .map_err(|e| transport(format!("{}: {e}", dst.display())))?;
        Ok(got.size)
    }
}

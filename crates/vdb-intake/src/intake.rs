//! The intake's state and operations, below the HTTP layer.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::task::TaskTracker;
use vdb_proto::Clock;
use vdb_proto::sample::{
    Publication, Resolve, SampleRecord, Submission, SubmissionReceipt, TrackingId, paths,
};

use crate::config::Config;
use crate::limit::Limiter;
use crate::notify::Notifier;
use crate::quarantine::{Quarantine, Staged};
use crate::store::Store;
use crate::triage::Triage;

/// A refusal: the API error every role answers with (status, stable code, a sentence).
pub(crate) type Refusal = vdb_service::ApiError;

pub(crate) use vdb_proto::ErrorCode;

/// A refusal with the HTTP `status`.
pub(crate) fn refusal(status: u16, code: ErrorCode, message: impl Into<String>) -> Refusal {
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    Refusal::status_code(status, code, message)
}

/// An internal failure: logged in full, answered with a sentence that reveals nothing.
pub(crate) fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "internal error");
    Refusal::internal(
        ErrorCode::Internal,
        "the intake failed to store the submission; try again later",
    )
}

/// A submitter's input that breaks the rules of `vdb_proto::sample`.
pub(crate) fn bad_input(e: vdb_proto::sample::SampleInputError) -> Refusal {
    Refusal::bad_request(e.code(), e.to_string())
}

/// What a submitter says about a sample.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meta {
    pub(crate) file_name: Option<String>,
    pub(crate) claimed: Option<String>,
    pub(crate) note: String,
    pub(crate) email: Option<String>,
}

/// The intake.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) store: Store,
    pub(crate) quarantine: Arc<Quarantine>,
    pub(crate) triage: Triage,
    pub(crate) limiter: Limiter,
    pub(crate) notifier: Notifier,
    pub(crate) tasks: TaskTracker,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) pending_scans: AtomicU64,
}

impl Intake {
    pub(crate) fn open(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context as _;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let quarantine =
            Arc::new(Quarantine::open(&config.data_dir).with_context(|| {
                format!("opening the quarantine in {}", config.data_dir.display())
            })?);
        let store = Store::open(&config.data_dir.join("intake.sqlite"))?;
        let triage = Triage::new(config.scanner.clone(), config.limits.max_sample_bytes);
        let limiter = Limiter::new(config.limits.clone());
        let notifier = Notifier::new(
            &config.notify,
            config.name.clone(),
            config.public_url.clone(),
        )
        .context("field `notify`")?;
        Ok(Arc::new(Self {
            config,
            clock,
            store,
            quarantine,
            triage,
            limiter,
            notifier,
            tasks: TaskTracker::new(),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            pending_scans: AtomicU64::new(0),
        }))
    }

    /// Refuses a new submission at once when the quarantine is full.
    pub(crate) fn check_quota(&self, extra: u64) -> Result<(), Refusal> {
        let held = self.store.quarantine_bytes().map_err(internal)?;
        if held.saturating_add(extra) > self.config.limits.quarantine_bytes {
            return Err(refusal(
                507,
                ErrorCode::QuarantineFull,
                "the intake's quarantine is full; the team has been told, try again later",
            ));
        }
        Ok(())
    }

    /// Files a whole upload: quarantine (unless known), record, and triage of a new sample.
    pub(crate) async fn accept(
        self: &Arc<Self>,
        staged: Staged,
        meta: Meta,
        client: IpAddr,
    ) -> Result<SubmissionReceipt, Refusal> {
        let (sha256, size) = (staged.sha256.clone(), staged.size);
        let known = self.store.has(&sha256).map_err(internal)?;
        if !known {
            self.check_quota(staged.zip_len())?;
        }
        let q = self.quarantine.clone();
        let zip_size = tokio::task::spawn_blocking(move || q.commit(staged))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let tracking = TrackingId::generate();
        let sub = Submission {
            at: self.clock.now(),
            client: client.to_string(),
            file_name: meta.file_name,
            claimed: meta.claimed,
            note: meta.note,
            email: meta.email,
        };
        let duplicate = self
            .store
            .add(&sha256, size, zip_size, &tracking, &sub)
            .map_err(internal)?;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%sha256, size, duplicate, %client, "sample received");
        if !duplicate {
            self.spawn_triage(sha256.clone());
        }
        Ok(SubmissionReceipt {
            status_path: format!("{}/{}", paths::STATUS_PAGE, tracking.as_str()),
            tracking_id: tracking.as_str().to_owned(),
            sha256,
            size,
            duplicate,
        })
    }

    /// Scans a new sample in the background, records the result and tells the team.
    pub(crate) fn spawn_triage(self: &Arc<Self>, sha256: String) {
        let me = self.clone();
        self.pending_scans.fetch_add(1, Ordering::SeqCst);
        self.tasks.spawn(async move {
            let scan = if me.triage.enabled() {
                let r = me
                    .triage
                    .scan(&me.quarantine, &sha256, me.clock.now())
                    .await;
                if let Err(e) = me.store.set_scan(&sha256, &r) {
                    tracing::error!(error = %e, "cannot record triage");
                }
                Some(r)
            } else {
                None
            };
            me.pending_scans.fetch_sub(1, Ordering::SeqCst);
            match me.store.show(&sha256) {
                Ok(Some(rec)) => me.notifier.new_sample(&rec, scan.as_ref()),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot read a sample record"),
            }
        });
    }

    /// Records the release that detects a sample and tells its submitters.
    pub(crate) fn resolve(&self, sha256: &str, r: Resolve) -> Result<SampleRecord, Refusal> {
        if !vdb_proto::is_safe_db_name(&r.db) {
            return Err(refusal(400, ErrorCode::BadDbName, "not a database name"));
        }
        if r.version == 0 {
            return Err(refusal(
                400,
                ErrorCode::BadVersion,
                "the version must be at least 1",
            ));
        }
        if let Some(d) = &r.detection {
            vdb_proto::sample::check_detection_name(d).map_err(bad_input)?;
        }
        let p = Publication {
            db: r.db,
            version: r.version,
            detection: r.detection,
            at: self.clock.now(),
        };
        if !self.store.set_published(sha256, &p).map_err(internal)? {
            return Err(refusal(
                404,
                ErrorCode::UnknownSample,
                "no sample with this SHA-256",
            ));
        }
        let rec =
            self.store.show(sha256).map_err(internal)?.ok_or_else(|| {
                refusal(404, ErrorCode::UnknownSample, "no sample with this SHA-256")
            })?;
        tracing::info!(%sha256, db = %p.db, version = p.version, "sample resolved");
        self.notifier.resolved(&rec, &p);
        Ok(rec)
    }
}

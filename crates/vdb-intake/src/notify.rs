//! Telling people: the team (webhook and e-mail) about each new sample and each resolution, and
//! a submitter who left an address about the release that detects their sample.
//!
//! Sending never blocks a submission: each message goes out on a task of its own, bounded in
//! time, and a failure is logged.

use std::sync::Arc;
use std::time::Duration;

use vdb_proto::sample::{Publication, SampleRecord, ScanResult};
use vdb_service::smtp::Mailer;

use crate::config::NotifyConfig;

/// The notification channels.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    webhook_url: Option<String>,
    mailer: Option<Arc<Mailer>>,
    intake: String,
    public_url: Option<String>,
    http: vdb_fetch::Client,
}

impl Notifier {
    /// Checks the channels (addresses, TLS and AUTH settings of the relay) and builds the one
    /// HTTP client the webhook goes through.
    pub(crate) fn new(
        config: &NotifyConfig,
        intake: String,
        public_url: Option<String>,
    ) -> anyhow::Result<Self> {
        let http =
            vdb_fetch::Client::builder(format!("vdbnet-intake/{}", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .build()?;
        let mailer = match &config.smtp {
            Some(smtp) => Some(Arc::new(Mailer::new(smtp, &intake)?)),
            None => None,
        };
        Ok(Self {
            webhook_url: config.webhook_url.clone(),
            mailer,
            intake,
            public_url,
            http,
        })
    }

    /// A new sample, after triage.
    pub(crate) fn new_sample(&self, rec: &SampleRecord, scan: Option<&ScanResult>) {
        let first = rec.submissions.first();
        let verdict = match scan {
            Some(s) if s.outcome == "found" => {
                format!("already detected as {}", s.detail.as_deref().unwrap_or("?"))
            }
            Some(s) if s.outcome == "clean" => "not detected by the current databases".into(),
            Some(s) => format!(
                "not fully scanned ({}: {})",
                s.outcome,
                s.detail.as_deref().unwrap_or("")
            ),
            None => "not scanned (no scanner configured)".into(),
        };
        let body = serde_json::json!({
            "event": "sample",
            "intake": self.intake,
            "sha256": rec.sha256,
            "size": rec.size,
            "scan": scan,
            "claimed": first.and_then(|s| s.claimed.clone()),
            "file_name": first.and_then(|s| s.file_name.clone()),
        });
        let subject = format!(
            "[vdbnet intake] new sample {}: {verdict}",
            &rec.sha256[..16]
        );
        let text = format!(
            "A new sample arrived at intake {}.\n\nSHA-256: {}\nSize: {} bytes\nTriage: {verdict}\n\
             Claimed detection: {}\nFile name: {}\nNote: {}\n\nGet it (ZIP, password infected): vdb samples get {}\n",
            self.intake,
            rec.sha256,
            rec.size,
            first.and_then(|s| s.claimed.as_deref()).unwrap_or("-"),
            first.and_then(|s| s.file_name.as_deref()).unwrap_or("-"),
            first.map_or("", |s| s.note.as_str()),
            rec.sha256,
        );
        self.team(body, subject, text);
    }

    /// A sample resolved by a release: the team, and each submitter who left an address.
    pub(crate) fn resolved(&self, rec: &SampleRecord, p: &Publication) {
        let body = serde_json::json!({
            "event": "sample_resolved",
            "intake": self.intake,
            "sha256": rec.sha256,
            "published": p,
        });
        let detection = p.detection.as_deref().unwrap_or("a new signature");
        let line = format!("{} version {} detects it as {detection}", p.db, p.version);
        self.team(
            body,
            format!("[vdbnet intake] sample {} resolved", &rec.sha256[..16]),
            format!("Sample {}: {line}.\n", rec.sha256),
        );
        let Some(mailer) = self.mailer.clone() else {
            return;
        };
        let mut to: Vec<String> = rec
            .submissions
            .iter()
            .filter_map(|s| s.email.clone())
            .collect();
        to.sort();
        to.dedup();
        let text = format!(
            "Thank you for the sample you sent (SHA-256 {}).\n\n{line}.\n\n\
             Update your databases (freshclam or vdb-update) to get it.{}\n",
            rec.sha256,
            self.public_url
                .as_deref()
                .map(|u| format!(
                    "\nThe status of your submission stays at {u}/status/<your tracking id>."
                ))
                .unwrap_or_default(),
        );
        for addr in to {
            let mailer = Arc::clone(&mailer);
            let text = text.clone();
            tokio::spawn(async move {
                let r = mailer
                    .send_to_addresses(&[&addr], "Your sample is now detected", &text)
                    .await;
                logged(r);
            });
        }
    }

    fn team(&self, body: serde_json::Value, subject: String, text: String) {
        if let Some(url) = self.webhook_url.clone() {
            let http = self.http.clone();
            tokio::spawn(async move {
                // The URL may carry a secret: errors name only its host.
                let r = http
                    .post(&url)
                    .secret_url()
                    .json_body(body.to_string())
                    .send()
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "webhook failed");
                }
            });
        }
        if let Some(mailer) = self.mailer.clone() {
            tokio::spawn(async move { logged(mailer.send(&subject, &text).await) });
        }
    }
}

/// Logs how sending one message went (the mailer bounds its time and the relay's replies).
fn logged(r: Result<(), vdb_service::smtp::SmtpError>) {
    match r {
        Ok(()) => tracing::info!("mail sent"),
        Err(e) => tracing::warn!(error = %e, "SMTP failed"),
    }
}

//! The notifier: release announcements and operator alerts, as a JSON webhook and e-mail over
//! SMTP. The webhook URL may carry a token: it is never logged.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use vdb_proto::ReleaseStatement;

use vdb_service::smtp::Mailer;

use crate::events::Event;
use crate::tasks::Tasks;

/// Announces releases and alerts.
#[derive(Debug)]
pub(crate) struct Notifier {
    name: String,
    network: String,
    webhook_url: Option<String>,
    mailer: Option<Mailer>,
    http: vdb_fetch::Client,
    tasks: Tasks,
}

impl Notifier {
    /// A notifier for the master of `config` (its `[smtp]` section checked now).
    pub(crate) fn new(
        config: &crate::config::Config,
        http: vdb_fetch::Client,
        tasks: Tasks,
    ) -> anyhow::Result<Self> {
        let mailer = match &config.smtp {
            Some(smtp) => Some(
                Mailer::new(smtp, &format!("vdbnet-master-{}", config.name))
                    .map_err(|e| anyhow::anyhow!("in section `smtp`: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            name: config.name.clone(),
            network: config.network.clone(),
            webhook_url: config.webhook_url.clone(),
            mailer,
            http,
            tasks,
        })
    }

    /// Announces first-hand releases and sends alerts, until cancelled.
    pub(crate) async fn run(self, mut events: UnboundedReceiver<Event>, cancel: CancellationToken) {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                None => return,
                Some(Event::ReleaseAccepted {
                    id,
                    statement,
                    origin,
                }) if origin.is_first_hand() => self.release(&statement, &id),
                Some(Event::Alert { kind, message }) => self.alert(kind, &message),
                Some(_) => {}
            }
        }
    }

    fn send(&self, body: serde_json::Value, subject: String, text: String) {
        if let Some(url) = self.webhook_url.clone() {
            let http = self.http.clone();
            self.tasks.spawn(async move {
                // The URL is the webhook's secret: errors show its scheme and host only. Nothing
                // of the answer is read but an error's first bytes.
                let r = http
                    .post(&url)
                    .secret_url()
                    .json_body(body.to_string())
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "webhook failed");
                }
            });
        }
        if let Some(mailer) = self.mailer.clone() {
            // The mailer bounds its own time (`timeout_secs`), replies and addresses, and turns
            // every line break of the text (release notes) into CR LF.
            self.tasks.spawn(async move {
                match mailer.send(&subject, &text).await {
                    Ok(()) => tracing::info!(%subject, "notification mailed"),
                    Err(e) => tracing::warn!(error = %e, "SMTP notification failed"),
                }
            });
        }
    }

    /// Sends an operator alert.
    fn alert(&self, kind: &str, message: &str) {
        self.send(
            serde_json::json!({"event": "alert", "kind": kind, "master": self.name, "message": message}),
            format!("[vdbnet {}] alert: {kind}", self.network),
            format!("Master {} reports {kind}:\r\n\r\n{message}\r\n", self.name),
        );
    }

    /// Announces an accepted release.
    fn release(&self, st: &ReleaseStatement, id: &str) {
        self.send(
            serde_json::json!({"event": "release", "master": self.name, "release_id": id,
                "db": st.db, "version": st.version, "notes": st.notes}),
            format!(
                "[vdbnet {}] {} version {} released",
                self.network, st.db, st.version
            ),
            format!(
                "{} version {} is published (release {id}, via master {}).\r\n\r\n{}\r\n",
                st.db, st.version, self.name, st.notes
            ),
        );
    }
}

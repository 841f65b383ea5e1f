//! Release notifications and operator alerts: a JSON webhook and e-mail (`vdb_service::smtp`).

use std::sync::Arc;
use std::time::Duration;

use vdb_proto::ReleaseStatement;

use crate::master::Master;

fn send(master: &Arc<Master>, body: serde_json::Value, subject: String, text: String) {
    if let Some(url) = master.config.webhook_url.clone() {
        let http = master.http.clone();
        let body = body.clone();
        master.tasks.spawn(async move {
            if let Err(e) = http
                .post(&url)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                tracing::warn!(error = %e, "webhook failed");
            }
        });
    }
    if let Some(smtp) = master.config.smtp.clone() {
        let hello = format!("vdbnet-master-{}", master.config.name);
        master.tasks.spawn(async move {
            let sent = match vdb_service::smtp::Mailer::new(&smtp, &hello) {
                Ok(m) => m.send(&subject, &text).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => tracing::info!(%subject, "notification mailed"),
                Err(e) => tracing::warn!(error = %e, "SMTP notification failed"),
            }
        });
    }
}

/// Sends an operator alert.
pub(crate) fn alert(master: &Arc<Master>, kind: &str, message: &str) {
    send(
        master,
        serde_json::json!({"event": "alert", "kind": kind, "master": master.config.name, "message": message}),
        format!("[vdbnet {}] alert: {kind}", master.config.network),
        format!(
            "Master {} reports {kind}:\r\n\r\n{message}\r\n",
            master.config.name
        ),
    );
}

/// Announces an accepted release.
pub(crate) fn release(master: &Arc<Master>, st: &ReleaseStatement, id: &str) {
    send(
        master,
        serde_json::json!({"event": "release", "master": master.config.name, "release_id": id,
            "db": st.db, "version": st.version, "notes": st.notes}),
        format!(
            "[vdbnet {}] {} version {} released",
            master.config.network, st.db, st.version
        ),
        format!(
            "{} version {} is published (release {id}, via master {}).\r\n\r\n{}\r\n",
            st.db, st.version, master.config.name, st.notes
        ),
    );
}

//! Alerts: what to say when a mirror turns old or out, stays so, or recovers; delivery by
//! webhook (JSON POST) and e-mail (`vdb_service::smtp`); each alert sent once.

use serde::{Deserialize, Serialize};
use vdb_proto::{MirrorRecord, MirrorState};

use crate::config::{AlertConfig, SmtpConfig};
use crate::judge::MirrorStatus;
use crate::store::PendingAlert;

/// The JSON body POSTed to the webhook (and the content of e-mails).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The monitor that sends it.
    pub monitor: String,
    /// The mirror concerned.
    pub mirror: String,
    /// `old`, `out` or `recovered`.
    pub kind: String,
    /// 0 for the first alert of an incident, 1, 2, … for each reminder while it lasts.
    pub level: i64,
    /// The mirror's published state.
    pub state: MirrorState,
    /// Its lag in seconds.
    pub lag_secs: i64,
    /// Why, in words.
    pub reason: String,
    /// When the incident began (Unix seconds).
    pub incident_since: i64,
    /// When this alert was made.
    pub at: i64,
    /// The mirror admin's address, if registered.
    #[serde(default)]
    pub admin_contact: Option<String>,
}

/// Decides which alerts a round calls for, updating the mirror's open incident.
pub(crate) fn plan(
    monitor: &str,
    rec: &MirrorRecord,
    status: &mut MirrorStatus,
    (published, reason): (MirrorState, &str),
    already_alerted: impl FnOnce(i64) -> bool,
    now: i64,
    cfg: &AlertConfig,
) -> Option<Alert> {
    let make = |kind: &str, level: i64, since: i64| Alert {
        monitor: monitor.to_owned(),
        mirror: rec.name.clone(),
        kind: kind.to_owned(),
        level,
        state: published,
        lag_secs: status.lag_secs,
        reason: reason.to_owned(),
        incident_since: since,
        at: now,
        admin_contact: rec.admin_contact.clone(),
    };
    match published {
        // No alerts in maintenance; an open incident stays open.
        MirrorState::Maintenance => None,
        MirrorState::Old | MirrorState::Out => {
            let since = *status.incident.get_or_insert(now);
            let kind = if published == MirrorState::Old {
                "old"
            } else {
                "out"
            };
            Some(make(kind, (now - since) / cfg.repeat_secs, since))
        }
        MirrorState::InService | MirrorState::Lagging => {
            let since = status.incident.take()?;
            already_alerted(since).then(|| make("recovered", 0, since))
        }
    }
}

/// The channels an alert goes to: the team's webhook and addresses, and the mirror's admin.
pub(crate) fn channels(cfg: &AlertConfig, alert: &Alert) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.webhook_url.is_some() {
        out.push("webhook".to_owned());
    }
    if let Some(smtp) = &cfg.smtp {
        for to in smtp.to.iter().chain(alert.admin_contact.as_ref()) {
            let c = format!("mail:{to}");
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// One queued alert per channel.
pub(crate) fn pending(cfg: &AlertConfig, alert: &Alert) -> Vec<PendingAlert> {
    let body = serde_json::to_string(alert).expect("alerts serialise");
    channels(cfg, alert)
        .into_iter()
        .map(|channel| PendingAlert {
            mirror: alert.mirror.clone(),
            incident: alert.incident_since,
            kind: alert.kind.clone(),
            level: alert.level,
            channel,
            body: body.clone(),
        })
        .collect()
}

/// The e-mail for an alert: subject and plain-text body.
pub(crate) fn mail_text(a: &Alert) -> (String, String) {
    let subject = match a.kind.as_str() {
        "recovered" => format!("[vdbnet] mirror {} is back in service", a.mirror),
        k if a.level > 0 => format!(
            "[vdbnet] mirror {} is still {k} (reminder {})",
            a.mirror, a.level
        ),
        k => format!("[vdbnet] mirror {} is {k}", a.mirror),
    };
    let body = format!(
        "Mirror: {}\nState: {:?}\nLag: {} s\nReason: {}\nIncident since (Unix time): {}\nMonitor: {}\n",
        a.mirror, a.state, a.lag_secs, a.reason, a.incident_since, a.monitor
    );
    (subject, body)
}

/// Sends one plain-text e-mail to `to` through the relay.
pub(crate) async fn send_mail(
    smtp: &SmtpConfig,
    helo: &str,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<(), String> {
    let mailer = vdb_service::smtp::Mailer::new(smtp, helo).map_err(|e| e.to_string())?;
    mailer
        .send_to_addresses(&[to], subject, body)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_incident_reminders_recovery() {
        let cfg = AlertConfig {
            repeat_secs: 100,
            ..AlertConfig::default()
        };
        let rec = MirrorRecord::new("m1", "http://x");
        let mut s = MirrorStatus::new(0);
        let p = |s: &mut MirrorStatus, st, now| {
            plan("mon", &rec, s, (st, "r"), |_| true, now, &cfg).map(|a| (a.kind, a.level))
        };
        assert_eq!(p(&mut s, MirrorState::InService, 10), None);
        assert_eq!(p(&mut s, MirrorState::Old, 20), Some(("old".into(), 0)));
        assert_eq!(p(&mut s, MirrorState::Old, 30), Some(("old".into(), 0)));
        assert_eq!(p(&mut s, MirrorState::Out, 130), Some(("out".into(), 1)));
        assert_eq!(p(&mut s, MirrorState::Maintenance, 140), None);
        assert_eq!(
            p(&mut s, MirrorState::Lagging, 150),
            Some(("recovered".into(), 0))
        );
        assert_eq!(p(&mut s, MirrorState::InService, 160), None);
    }
}

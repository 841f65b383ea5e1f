//! The versions DNS advertises: the `current.cvd` TXT record and the per-database records
//! (spec §4.2).

use vdb_format::dnstxt::{CurrentRecord, DbRecord};

use super::Updater;
use crate::notify;

/// Compares dotted version strings numerically (`1.4.10` > `1.4.9`).
fn version_newer(candidate: &str, own: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(['.', '-'])
            .map_while(|p| p.parse::<u64>().ok())
            .collect()
    };
    parse(candidate) > parse(own)
}

impl Updater<'_> {
    /// Reads the `current.cvd` record; `None` (HTTP mode) when it is missing, broken or stale.
    pub(super) async fn current_record(&self) -> Option<CurrentRecord> {
        let domain = self.settings.dns_domain.as_deref()?;
        let txt = match crate::dns::Txt::new(self.settings.dns_server) {
            Ok(t) => t,
            Err(e) => {
                self.log.warn(format!("{e}; falling back to HTTP mode"));
                return None;
            }
        };
        let text = match txt.first_string(domain).await {
            Ok(t) => t,
            Err(e) => {
                self.log.warn(format!(
                    "Invalid DNS reply ({e}). Falling back to HTTP mode."
                ));
                return None;
            }
        };
        self.log.debug(format!("TXT {domain}: {text}"));
        let rec = match CurrentRecord::parse(&text) {
            Ok(r) => r,
            Err(e) => {
                self.log.warn(format!("{e}. Falling back to HTTP mode."));
                return None;
            }
        };
        if !rec.is_fresh(self.now()) {
            self.log
                .warn("DNS record is older than 12 hours. Falling back to HTTP mode.");
            return None;
        }
        if rec.version_warning && version_newer(&rec.clamav_version, &self.settings.engine_version)
        {
            self.log.warn("Your ClamAV installation is OUTDATED!");
            self.log.warn(format!(
                "Local version: {} Recommended version: {}",
                self.settings.engine_version, rec.clamav_version
            ));
            if let Some(t) = &self.settings.on_outdated_execute
                && let Some(cmd) = notify::outdated_command(t, &rec.clamav_version)
            {
                let _ = self.hook("OnOutdatedExecute", &cmd).await;
            }
        }
        Some(rec)
    }

    /// The version DNS gives for `db`, if DNS is in use and has a fresh, valid value.
    pub(super) async fn dns_version(&self, db: &str) -> Option<u32> {
        let rec = self.dns.as_ref()?;
        if let Some(v) = rec.version_of(db) {
            return Some(v);
        }
        let name = format!("{db}.cvd.{}", self.settings.db_txt_zone);
        let txt = crate::dns::Txt::new(self.settings.dns_server).ok()?;
        let text = match txt.first_string(&name).await {
            Ok(t) => t,
            Err(e) => {
                self.log.debug(format!("{e}; using HTTP for {db}"));
                return None;
            }
        };
        match DbRecord::parse(&text) {
            Ok(r) if r.is_fresh(self.now()) => Some(r.version),
            Ok(_) => {
                self.log.warn(format!(
                    "DNS record for {db} is older than 12 hours. Falling back to HTTP mode."
                ));
                None
            }
            Err(_) => {
                self.log
                    .warn("Broken database version in TXT record. Falling back to HTTP mode.");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_newer("9.9.9", "1.4.6"));
        assert!(version_newer("1.4.10", "1.4.9"));
        assert!(!version_newer("1.4.6", "1.4.6"));
        assert!(!version_newer("1.3.0", "1.4.6"));
    }
}

//! `DatabaseCustomURL`: extra files fetched by URL (or copied from `file://`).

use vdb_format::Kind;

use super::{Code, MAX_CUSTOM, UpdateError, Updater};
use crate::fetch::Download;
use crate::local;

impl Updater<'_> {
    /// `DatabaseCustomURL`: `If-Modified-Since` = the local file's mtime; `file://` copies.
    pub(super) async fn update_custom(
        &mut self,
        url: &str,
    ) -> Result<Option<(String, u32)>, UpdateError> {
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        if !vdb_format::is_safe_member_name(&name) {
            return Err(UpdateError::new(
                Code::Config,
                format!("DatabaseCustomURL {url}: {name:?} is not a safe file name"),
            ));
        }
        let dest = self.dir.join(&name);
        let mtime = std::fs::metadata(&dest)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let bytes = if let Some(path) = url.strip_prefix("file://") {
            std::fs::read(path).map_err(|e| {
                UpdateError::new(Code::FailedGet, format!("DatabaseCustomURL {url}: {e}"))
            })?
        } else {
            match self.fetcher.download_since(url, mtime, MAX_CUSTOM).await {
                Ok(Download::Fetched(b)) => b,
                Ok(Download::NotModified) => {
                    self.log
                        .info(format!("{name} is up-to-date (304 Not Modified)"));
                    return Ok(None);
                }
                Err(e) => return Err(self.fetch_error(e, false)),
            }
        };
        if std::fs::read(&dest).is_ok_and(|old| old == bytes) {
            self.log.info(format!("{name} is up-to-date"));
            return Ok(None);
        }
        let mut version = 0;
        if let Some(kind) = Kind::from_file_name(&name) {
            let v = self.verify_container(&bytes[..], kind, url)?;
            version = v.header.version;
        }
        let stage = local::staging(&self.dir).map_err(|e| {
            UpdateError::new(
                Code::DbDirAccess,
                format!("cannot create a staging directory: {e}"),
            )
        })?;
        let staged = stage.path().join(&name);
        std::fs::write(&staged, &bytes)
            .map_err(|e| UpdateError::new(Code::File, format!("{}: {e}", staged.display())))?;
        self.test_load(&staged).await?;
        local::install(&staged, &self.dir, &name, &[])
            .map_err(|e| UpdateError::new(Code::File, format!("cannot install {name}: {e}")))?;
        self.log
            .info(format!("{name} updated from {url} ({} bytes)", bytes.len()));
        Ok(Some((name, version)))
    }
}
